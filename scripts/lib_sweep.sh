# shellcheck shell=bash
# Shared job queue for the sweep scripts (sweep_generalization.sh, sweep_kalpha.sh, sweep_rho.sh).
# Source it; do not run it.  A sweep script:
#   1. sources this file (it cd's to the repository root and parses VAR=value / -- extra args),
#   2. calls  sweep_add RUN_NAME ARG...  once per run (ARG... = example_cifar.py flags),
#   3. calls  sweep_run  (runs everything, one run per device at a time, then collects).
#
# Variables (environment or VAR=value arguments to the sweep script):
#   SWEEP_NAME      name of the sweep: runs go to $RUNS_ROOT/$SWEEP_NAME/<run_name>/
#   RUNS_ROOT       default <repo>/runs
#   RESULTS_ROOT    default <repo>/results  (collect writes $RESULTS_ROOT/$SWEEP_NAME/)
#   DEVICES         space-separated worker devices; one run per entry at a time (default "auto").
#                   "cuda:N" or "N" -> CUDA_VISIBLE_DEVICES=N --device cuda;  "cpu" -> --device cpu;
#                   "auto"/"cuda" -> --device auto/cuda;  "all-gpus" -> one worker per GPU from nvidia-smi.
#                   Repeat an entry for several concurrent runs on it (e.g. DEVICES="cpu cpu").
#   DATA_DIR        passed as --data_dir (omitted when empty: example_cifar.py's default)
#   EXTRA           extra flags for every run, word-split (e.g. EXTRA="--train_subset 5000 --lr 0.05");
#                   arguments after "--" on the sweep script's command line are appended to it.
#   DRY_RUN=1       print the commands (and which runs would be skipped); run nothing.
#   RETRY_DIVERGED=1  rerun diverged runs (the old run directory is moved to $SWEEP_DIR/.retired/).
#   COLLECT=0       do not run python -m scripts.collect at the end (default 1).
#   HPARAMS_<MINIMIZER>  extra flags for one minimizer's runs (not in the run name), e.g.
#                   HPARAMS_GSAM="--hparam rho_max=0.05";  RHO_<MINIMIZER> its rho (see default_rho).
#   PYTHON          python interpreter (default python).
#   TRAIN_SCRIPT    the training script (default <repo>/example_cifar.py; the tests use a stand-in).
# Files written per sweep: $SWEEP_DIR/sweep.log (human-readable), $SWEEP_DIR/status.tsv (one line per
# finished attempt: end_time run_name device exit_code status seconds); per run: train.log (stdout+stderr
# of every attempt), sweep_status.json (last attempt: status, exit_code, device, times), sweep_args.txt.
# Skipping: a run whose summary.json says "completed" is skipped; "diverged" too unless RETRY_DIVERGED=1;
# anything else (crashed, interrupted) is started again with --resume (continues from its checkpoint).

set -u

if [[ -z "${BASH_SOURCE[1]:-}" ]]; then
    echo "lib_sweep.sh is meant to be sourced by a sweep script" >&2
    exit 2
fi

SWEEP_CALLER_PWD="$PWD"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWEEP_SCRIPT_NAME="$(basename "${BASH_SOURCE[1]}")"

# ---------------------------------------------------------------- argument parsing
# Usage of every sweep script:  bash scripts/sweep_X.sh [VAR=value ...] [-- extra example_cifar.py flags]
sweep_usage() {
    # Prints the header comment of the calling sweep script (lines starting with '#', after the shebang).
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$REPO_ROOT/scripts/$SWEEP_SCRIPT_NAME"
}

sweep_parse_args() {
    local extra_tail=()
    while (($#)); do
        case "$1" in
            -h|--help) sweep_usage; exit 0 ;;
            --) shift; extra_tail=("$@"); break ;;
            [A-Z_]*=*)
                local name="${1%%=*}"
                if [[ ! "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]]; then
                    echo "error: bad variable assignment '$1'" >&2; exit 2
                fi
                # shellcheck disable=SC2163  # "$1" is NAME=value
                export "$1" ;;
            *) echo "error: unexpected argument '$1' (use VAR=value, or '--' before example_cifar.py flags; -h for help)" >&2
               exit 2 ;;
        esac
        shift
    done
    if ((${#extra_tail[@]})); then
        EXTRA="${EXTRA:-} $(printf '%q ' "${extra_tail[@]}")"
        export EXTRA
    fi
}

sweep_abspath() {  # relative paths given by the user are relative to the caller's cwd
    case "$1" in
        "") printf '' ;;
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$SWEEP_CALLER_PWD" "$1" ;;
    esac
}

sweep_init() {  # call after the sweep script set its defaults (SWEEP_NAME at least)
    : "${PYTHON:=python}"
    : "${DEVICES:=auto}"
    : "${DRY_RUN:=0}"
    : "${RETRY_DIVERGED:=0}"
    : "${COLLECT:=1}"
    : "${EXTRA:=}"
    : "${DATA_DIR:=}"
    TRAIN_SCRIPT="$(sweep_abspath "${TRAIN_SCRIPT:-$REPO_ROOT/example_cifar.py}")"
    RUNS_ROOT="$(sweep_abspath "${RUNS_ROOT:-$REPO_ROOT/runs}")"
    RESULTS_ROOT="$(sweep_abspath "${RESULTS_ROOT:-$REPO_ROOT/results}")"
    DATA_DIR="$(sweep_abspath "$DATA_DIR")"
    if [[ ! "$SWEEP_NAME" =~ ^[A-Za-z0-9._-]+$ ]]; then
        echo "error: SWEEP_NAME='$SWEEP_NAME' must be letters, digits, '.', '_' or '-'" >&2; exit 2
    fi
    SWEEP_DIR="$RUNS_ROOT/$SWEEP_NAME"
    SWEEP_HOST="$(hostname 2>/dev/null || uname -n)"
    # EXTRA is word-split like a shell command line (quotes respected, no globbing/expansion).
    SWEEP_EXTRA=()
    if [[ -n "${EXTRA// /}" ]]; then
        if ! eval "SWEEP_EXTRA=($EXTRA)" 2>/dev/null; then
            echo "error: cannot parse EXTRA='$EXTRA'" >&2; exit 2
        fi
    fi
    if [[ "$DEVICES" == "all-gpus" ]]; then
        local n
        n="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
        if [[ -z "$n" || "$n" == 0 ]]; then
            echo "error: DEVICES=all-gpus but nvidia-smi lists no GPU" >&2; exit 2
        fi
        DEVICES="$(seq -s ' ' 0 $((n - 1)))"
    fi
    read -r -a SWEEP_DEVICES <<< "$DEVICES"
    if ((${#SWEEP_DEVICES[@]} == 0)); then
        echo "error: DEVICES is empty" >&2; exit 2
    fi
    SWEEP_JOB_NAMES=()
    SWEEP_JOB_ARGS=()
    cd "$REPO_ROOT" || exit 2
}

# ---------------------------------------------------------------- helpers for sweep scripts
# Which minimizers take --k / --alpha / --rho (others ignore them, so they are left out of the
# command and the run name).  GSAM / BilateralSAM have rho_max/rho_min instead of rho.
minimizer_has_k() { [[ "$1" == Lookbehind_* || "$1" == Multistep_* || "$1" == Lookahead_* ]]; }
minimizer_has_alpha() { [[ "$1" == Lookbehind_* || "$1" == Lookahead_* ]]; }
minimizer_has_rho() {
    case "$1" in SGD|Lookahead_SGD|GSAM|BilateralSAM|Lookbehind_GSAM) return 1 ;; esac
    return 0
}
minimizer_is_asam() { [[ "$1" == *ASAM* ]]; }
# The paper's SAM/ASAM family: these get RHO_SAM / RHO_ASAM; any other minimizer keeps its library
# default rho unless RHO_<MINIMIZER> is set (e.g. RHO_SAMPa=0.05).
minimizer_in_paper_family() {
    case "$1" in SAM|ASAM|Multistep_SAM|Multistep_ASAM|Lookahead_SAM|Lookahead_ASAM|Lookbehind_SAM|Lookbehind_ASAM) return 0 ;; esac
    return 1
}
default_rho() {  # MINIMIZER -> the rho to pass (may be empty = library default)
    local var="RHO_$1"
    if [[ -n "${!var:-}" ]]; then printf '%s' "${!var}"
    elif minimizer_in_paper_family "$1"; then
        if minimizer_is_asam "$1"; then printf '%s' "$RHO_ASAM"; else printf '%s' "$RHO_SAM"; fi
    fi
}

# run_name DATASET MODEL MINIMIZER RHO K ALPHA SEED  (empty RHO/K/ALPHA are left out)
run_name() {
    local name="$1_$2_$3"
    [[ -n "$5" ]] && name+="_k$5"
    [[ -n "$6" ]] && name+="_a$6"
    [[ -n "$4" ]] && name+="_rho$4"
    name+="_s$7"
    printf '%s' "$name"
}

# add_run DATASET MODEL MINIMIZER RHO K ALPHA SEED EPOCHS: the usual job; K/ALPHA/RHO dropped when the
# minimizer does not use them.  Any further arguments are extra flags for this run only.
add_run() {
    local dataset="$1" model="$2" minimizer="$3" rho="$4" k="$5" alpha="$6" seed="$7" epochs="$8"
    shift 8
    minimizer_has_rho "$minimizer" || rho=""
    minimizer_has_k "$minimizer" || k=""
    minimizer_has_alpha "$minimizer" || alpha=""
    local args=(--dataset "$dataset" --model "$model" --minimizer "$minimizer" --seed "$seed" --epochs "$epochs")
    [[ -n "$rho" ]] && args+=(--rho "$rho")
    [[ -n "$k" ]] && args+=(--k "$k")
    [[ -n "$alpha" ]] && args+=(--alpha "$alpha")
    # HPARAMS_<MINIMIZER>: extra flags for that minimizer only, e.g. HPARAMS_GSAM="--hparam rho_max=0.05"
    local hvar="HPARAMS_$minimizer" hextra=()
    if [[ -n "${!hvar:-}" ]]; then
        eval "hextra=(${!hvar})" || { echo "error: cannot parse $hvar" >&2; exit 2; }
        args+=("${hextra[@]}")
    fi
    sweep_add "$(run_name "$dataset" "$model" "$minimizer" "$rho" "$k" "$alpha" "$seed")" "${args[@]}" "$@"
}

# sweep_add RUN_NAME ARG...: queue one run; --data_dir, --device, --out, --resume and EXTRA are added.
sweep_add() {
    local name="$1"; shift
    if [[ ! "$name" =~ ^[A-Za-z0-9._+-]+$ ]]; then
        echo "error: bad run name '$name'" >&2; exit 2
    fi
    local i
    for i in "${!SWEEP_JOB_NAMES[@]}"; do
        if [[ "${SWEEP_JOB_NAMES[$i]}" == "$name" ]]; then
            echo "note: duplicate run $name queued once" >&2; return 0
        fi
    done
    local args=("$@")
    [[ -n "$DATA_DIR" ]] && args+=(--data_dir "$DATA_DIR")
    args+=("${SWEEP_EXTRA[@]}")
    SWEEP_JOB_NAMES+=("$name")
    SWEEP_JOB_ARGS+=("$(printf '%q ' "${args[@]}")")
}

# ---------------------------------------------------------------- the queue
sweep_log() {  # message -> stdout and sweep.log
    local line
    line="[$(date -u '+%Y-%m-%d %H:%M:%S')] $*"
    printf '%s\n' "$line"
    [[ "$DRY_RUN" == 1 ]] || printf '%s\n' "$line" >> "$SWEEP_DIR/sweep.log"
}

# summary_status RUN_DIR -> prints completed/diverged/running/"" from summary.json
summary_status() {
    local f="$1/summary.json"
    [[ -f "$f" ]] || return 0
    grep -o '"status"[[:space:]]*:[[:space:]]*"[a-z_]*"' "$f" | head -n 1 | sed 's/.*"\([a-z_]*\)"$/\1/'
}

# device_env DEVICE -> sets DEV_FLAG and DEV_CUDA (CUDA_VISIBLE_DEVICES value, or "-" to leave it alone)
device_env() {
    case "$1" in
        cpu) DEV_FLAG=cpu; DEV_CUDA="" ;;
        auto) DEV_FLAG=auto; DEV_CUDA="-" ;;
        cuda) DEV_FLAG=cuda; DEV_CUDA="-" ;;
        cuda:*) DEV_FLAG=cuda; DEV_CUDA="${1#cuda:}" ;;
        [0-9]*) DEV_FLAG=cuda; DEV_CUDA="$1" ;;
        *) echo "error: unknown device '$1' in DEVICES (use cpu, auto, cuda, cuda:N or N)" >&2; return 2 ;;
    esac
}

sweep_pid_is_runner() {  # PID -> true if it is alive and (where /proc tells) a bash sweep process
    kill -0 "$1" 2>/dev/null || return 1
    [[ -r "/proc/$1/cmdline" ]] || return 0
    tr '\0' ' ' < "/proc/$1/cmdline" | grep -q 'bash.*sweep'
}

write_json_status() {  # run_dir status exit_code device started ended seconds
    local tmp="$1/.sweep_status.json.tmp.$$"
    printf '{"run_name": "%s", "sweep": "%s", "status": "%s", "exit_code": %s, "device": "%s", "started_at": "%s", "ended_at": "%s", "wall_seconds": %s, "runner_pid": %s, "host": "%s"}\n' \
        "$(basename "$1")" "$SWEEP_NAME" "$2" "${3:-null}" "$4" "$5" "${6:-}" "${7:-null}" "$BASHPID" "$SWEEP_HOST" > "$tmp" \
        && mv -f "$tmp" "$1/sweep_status.json"
}

# run_one INDEX DEVICE WORKER_THREADS
run_one() {
    local idx="$1" dev="$2" threads="$3"
    local name="${SWEEP_JOB_NAMES[$idx]}"
    local run_dir="$SWEEP_DIR/$name"
    local -a args
    eval "args=(${SWEEP_JOB_ARGS[$idx]})"
    device_env "$dev" || return 2
    local -a cmd=("$PYTHON" "$TRAIN_SCRIPT" "${args[@]}" --device "$DEV_FLAG" --out "$run_dir" --resume)
    local envdesc=""
    [[ "$DEV_CUDA" != "-" ]] && envdesc="CUDA_VISIBLE_DEVICES=$DEV_CUDA "
    [[ -n "$threads" ]] && envdesc+="OMP_NUM_THREADS=$threads "

    local st
    st="$(summary_status "$run_dir")"
    if [[ "$st" == completed || ( "$st" == diverged && "$RETRY_DIVERGED" != 1 ) ]]; then
        if [[ -f "$run_dir/sweep_args.txt" && "$(cat "$run_dir/sweep_args.txt")" != "${SWEEP_JOB_ARGS[$idx]}" ]]; then
            sweep_log "WARNING $name is $st but was run with other arguments than now (see $run_dir/sweep_args.txt);" \
                "it is NOT rerun: use another SWEEP_NAME for a different setting"
        fi
        sweep_log "SKIP $name (already $st)"
        return 0
    fi
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '%s%s > %q 2>&1\n' "$envdesc" "$(printf '%q ' "${cmd[@]}")" "$run_dir/train.log"
        return 0
    fi
    if [[ "$st" == diverged ]]; then  # RETRY_DIVERGED=1: keep the old attempt out of the way
        mkdir -p "$SWEEP_DIR/.retired"
        mv "$run_dir" "$SWEEP_DIR/.retired/$name.$(date -u +%Y%m%dT%H%M%S)"
        sweep_log "RETIRE $name (diverged; moved to .retired/)"
    fi
    mkdir -p "$run_dir"
    # A per-run lock so that two sweep processes never train the same run at once.
    if ! mkdir "$run_dir/.lock" 2>/dev/null; then
        local other
        other="$(cat "$run_dir/.lock/pid" 2>/dev/null || true)"
        if [[ -n "$other" ]] && sweep_pid_is_runner "$other"; then
            sweep_log "SKIP $name (being run by process $other)"
            return 0
        fi
        rm -rf "$run_dir/.lock"
        mkdir "$run_dir/.lock" 2>/dev/null || { sweep_log "SKIP $name (lock race)"; return 0; }
    fi
    echo "$BASHPID" > "$run_dir/.lock/pid"
    printf '%s' "${SWEEP_JOB_ARGS[$idx]}" > "$run_dir/sweep_args.txt"

    local started t0 t1 rc status secs
    started="$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    t0="$(date +%s.%N)"
    write_json_status "$run_dir" running null "$dev" "$started" "" null
    SWEEP_CUR_DIR="$run_dir"; SWEEP_CUR_DEV="$dev"; SWEEP_CUR_STARTED="$started"
    sweep_log "START $name on $dev"
    {
        printf '\n===== %s attempt started %s on %s\n===== %s%s\n' "$name" "$started" "$dev" "$envdesc" "$(printf '%q ' "${cmd[@]}")"
    } >> "$run_dir/train.log"
    (
        [[ "$DEV_CUDA" != "-" ]] && export CUDA_VISIBLE_DEVICES="$DEV_CUDA"
        [[ -n "$threads" ]] && export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
        exec "${cmd[@]}" < /dev/null >> "$run_dir/train.log" 2>&1
    ) &
    SWEEP_CHILD=$!
    wait "$SWEEP_CHILD"
    rc=$?
    SWEEP_CHILD=""
    t1="$(date +%s.%N)"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    case "$rc" in
        0) status=completed
           [[ "$(summary_status "$run_dir")" == completed ]] || status=crashed ;;  # exit 0 but no completed summary
        3) status=diverged ;;
        130|143) status=interrupted ;;
        *) status=crashed ;;
    esac
    write_json_status "$run_dir" "$status" "$rc" "$dev" "$started" "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$secs"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$name" "$dev" "$rc" "$status" "$secs" >> "$SWEEP_DIR/status.tsv"
    rm -rf "$run_dir/.lock"
    SWEEP_CUR_DIR=""
    if [[ "$status" == crashed ]]; then
        sweep_log "DONE $name status=crashed exit=$rc ${secs}s  -- last lines of $run_dir/train.log:"
        tail -n 5 "$run_dir/train.log" | sed 's/^/    | /'
    else
        sweep_log "DONE $name status=$status exit=$rc ${secs}s"
    fi
    return 0
}

sweep_worker_stop() {  # TERM/INT in a worker: stop its run, record it as interrupted, leave
    if [[ -n "${SWEEP_CHILD:-}" ]]; then
        kill -TERM "$SWEEP_CHILD" 2>/dev/null
        wait "$SWEEP_CHILD" 2>/dev/null
    fi
    if [[ -n "${SWEEP_CUR_DIR:-}" && -d "$SWEEP_CUR_DIR" ]]; then
        write_json_status "$SWEEP_CUR_DIR" interrupted 143 "$SWEEP_CUR_DEV" "$SWEEP_CUR_STARTED" \
            "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" null
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$(basename "$SWEEP_CUR_DIR")" \
            "$SWEEP_CUR_DEV" 143 interrupted "" >> "$SWEEP_DIR/status.tsv"
        rm -rf "$SWEEP_CUR_DIR/.lock"
    fi
    exit 143
}

# worker DEVICE THREADS: claims jobs one at a time (mkdir is atomic) until none is left.
sweep_worker() {
    local dev="$1" threads="$2" idx
    SWEEP_CHILD=""
    SWEEP_CUR_DIR=""
    trap 'sweep_worker_stop' TERM INT
    for idx in "${!SWEEP_JOB_NAMES[@]}"; do
        mkdir "$SWEEP_CLAIMS/$idx" 2>/dev/null || continue
        run_one "$idx" "$dev" "$threads"
    done
}

sweep_run() {
    local njobs=${#SWEEP_JOB_NAMES[@]} nworkers=${#SWEEP_DEVICES[@]}
    if ((njobs == 0)); then
        echo "error: the sweep has no runs (check the grid variables)" >&2; exit 2
    fi
    if [[ "$DRY_RUN" != 1 && ! -f "$TRAIN_SCRIPT" ]]; then
        echo "error: training script $TRAIN_SCRIPT not found" >&2; exit 2
    fi
    local d
    for d in "${SWEEP_DEVICES[@]}"; do device_env "$d" || exit 2; done
    # CPU workers share the cores: give each an equal share of threads unless OMP_NUM_THREADS is set.
    local ncpu_workers=0 threads=""
    for d in "${SWEEP_DEVICES[@]}"; do [[ "$d" == cpu ]] && ncpu_workers=$((ncpu_workers + 1)); done
    if ((ncpu_workers > 1)) && [[ -z "${OMP_NUM_THREADS:-}" ]]; then
        local ncores
        ncores="$(nproc 2>/dev/null || echo 1)"
        threads=$((ncores / ncpu_workers)); ((threads < 1)) && threads=1
    fi

    if [[ "$DRY_RUN" != 1 ]]; then
        mkdir -p "$SWEEP_DIR"
        [[ -f "$SWEEP_DIR/status.tsv" ]] || printf 'end_time\trun_name\tdevice\texit_code\tstatus\tseconds\n' > "$SWEEP_DIR/status.tsv"
    fi
    sweep_log "SWEEP $SWEEP_NAME: $njobs runs in $SWEEP_DIR on ${nworkers} worker(s): ${SWEEP_DEVICES[*]}${threads:+ ($threads threads each)}"
    [[ -n "$EXTRA" ]] && sweep_log "EXTRA flags: $EXTRA"

    if [[ "$DRY_RUN" == 1 ]]; then  # sequential, devices dealt round-robin
        local i
        for i in "${!SWEEP_JOB_NAMES[@]}"; do
            d="${SWEEP_DEVICES[$((i % nworkers))]}"
            if [[ "$d" == cpu ]]; then run_one "$i" "$d" "$threads"; else run_one "$i" "$d" ""; fi
        done
        return 0
    fi
    SWEEP_CLAIMS="$(mktemp -d "${TMPDIR:-/tmp}/sweep_claims.XXXXXX")"
    local pids=() w
    trap 'for w in "${pids[@]}"; do kill -TERM "$w" 2>/dev/null; done; wait; rm -rf "$SWEEP_CLAIMS"; echo "sweep interrupted" >&2; exit 130' INT TERM
    for d in "${SWEEP_DEVICES[@]}"; do
        if [[ "$d" == cpu ]]; then sweep_worker "$d" "$threads" & else sweep_worker "$d" "" & fi
        pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w"; done
    trap - INT TERM
    rm -rf "$SWEEP_CLAIMS"

    # Final tally from the run directories (this includes runs skipped now).
    local n_completed=0 n_diverged=0 n_other=0 name st
    for name in "${SWEEP_JOB_NAMES[@]}"; do
        st="$(summary_status "$SWEEP_DIR/$name")"
        case "$st" in
            completed) n_completed=$((n_completed + 1)) ;;
            diverged) n_diverged=$((n_diverged + 1)) ;;
            *) n_other=$((n_other + 1)) ;;
        esac
    done
    sweep_log "END $SWEEP_NAME: $n_completed completed, $n_diverged diverged, $n_other crashed/unfinished of $njobs"
    if [[ "$COLLECT" == 1 ]]; then
        # A module run from the repository root (the scripts import scripts.common).
        (cd "$REPO_ROOT" && "$PYTHON" -m scripts.collect "$SWEEP_DIR" --sweep "$SWEEP_NAME" \
            --out "$RESULTS_ROOT/$SWEEP_NAME") || sweep_log "WARNING scripts.collect failed"
    fi
    ((n_other == 0))
}

sweep_parse_args "$@"

# dataset/model pairs: PAIRS="CIFAR10:resnet34 CIFAR100:resnet50" if set, else DATASETS x MODELS.
sweep_pairs() {
    local p d m
    if [[ -n "${PAIRS:-}" ]]; then
        for p in $PAIRS; do
            if [[ "$p" != *:* ]]; then echo "error: PAIRS entry '$p' is not DATASET:MODEL" >&2; exit 2; fi
            printf '%s %s\n' "${p%%:*}" "${p#*:}"
        done
    else
        for d in $DATASETS; do for m in $MODELS; do printf '%s %s\n' "$d" "$m"; done; done
    fi
}
