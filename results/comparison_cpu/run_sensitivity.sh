#!/usr/bin/env bash
# The sensitivity studies in the comparison's setting (issue 18, part 2): Lookbehind-SAM's k x alpha heatmap
# (k in {2, 5}, alpha in {0.2, 0.5, 0.8, adaptive}) with SAM as the baseline, and a rho sweep of SAM and
# Lookbehind-SAM (k = 2, adaptive alpha), rho in {0.02, 0.05, 0.1, 0.2}, at seeds 0 and 1, through the sweep
# (resumable: rerun the same command).
#
#   bash results/comparison_cpu/run_sensitivity.sh DATA_DIR RUNS_DIR kalpha|rho [SETTING]
#
# SETTING (settings.sh): r8_5k_noaug_e30 (default). Cells the comparison (run_study.sh) has already run at these
# seeds -- SAM and Lookbehind-SAM (k 2, alpha adaptive / 0.5) at rho 0.05 -- are copied from
# RUNS_DIR/comparison_cpu_SETTING when their command is the one this sweep would run (apart from --out): training
# on CPU is deterministic, so rerunning them would give the same numbers. Cost in r8_5k_noaug_e30 on this 2-core
# machine (k + 1 forward-backward passes per Lookbehind step, 2 per SAM step, about 2.7 core-minutes per pass-epoch
# set, i.e. per SGD run): kalpha 60 SGD-run units without the copied cells (about 85 minutes on 2 cores),
# rho 30 units (about 45 minutes).
set -eu
data_dir="$1"; runs_dir="$2"; study="$3"; SETTING="${4:-r8_5k_noaug_e30}"
source "$(dirname "$0")/settings.sh"
common=(--runs-root "$runs_dir" --results-root results/comparison_cpu --data-dir "$data_dir" --executor local
        --workers 2 --device cpu --pairs "CIFAR10:$MODEL" --epochs "$EPOCHS" --seeds 0 1)
case "$study" in
    kalpha) grid=(kalpha --name "kalpha_$SETTING" "${common[@]}" --rho-sam "$RHO_SAM" --minimizers Lookbehind_SAM
                  --k-values 2 5 --alphas 0.2 0.5 0.8 -1 --baselines SAM) ;;
    rho)    grid=(rho --name "rho_$SETTING" "${common[@]}" --lb-k 2 --lb-alpha -1 --minimizers SAM Lookbehind_SAM
                  --rhos-sam 0.02 0.05 0.1 0.2) ;;
    *) echo "error: the study is kalpha or rho, got $study" >&2; exit 2 ;;
esac
sweep_dir="$runs_dir/${study}_$SETTING"
# The copy: every run the dry run plans that the comparison completed with the same command.
plan="$(mktemp)"; trap 'rm -f "$plan"' EXIT
python -m scripts.launch.sweep "${grid[@]}" --dry-run -- "${TRAIN[@]}" > "$plan"
python - "$runs_dir/comparison_cpu_$SETTING" "$sweep_dir" "$plan" <<'PY'
import json, os, re, shlex, shutil, sys
source, target, plan = sys.argv[1:4]
def without_out(command):
    command = list(command[2:])                  # the interpreter and the script's path may differ
    i = command.index("--out")
    return command[:i] + command[i + 2:]
for line in open(plan):
    match = re.match(r"RUN +(\S+) \(new\): (.*)$", line.rstrip("\n"))
    if not match:
        continue
    name, planned = match.group(1), shlex.split(match.group(2))
    done = os.path.join(source, name)
    try:
        record = json.load(open(os.path.join(done, "sweep_status.json")))
    except OSError:
        continue
    if record.get("status") == "completed" and without_out(record["command"]) == without_out(planned):
        shutil.copytree(done, os.path.join(target, name))
        print(f"copied from the comparison: {name}")
PY
python -m scripts.launch.sweep "${grid[@]}" -- "${TRAIN[@]}"
out="results/comparison_cpu/${study}_$SETTING"
python -m scripts.reports.figures "$study" "$out" --metric final --formats png
# Each Lookbehind-SAM cell minus SAM at the same seed (final test accuracy): at every (k, alpha), SAM at rho 0.05;
# at every rho, SAM at that rho.
pairs=()
case "$study" in
    kalpha) for k in 2 5; do for alpha in 0.2 0.5 0.8 -1; do
                pairs+=(--pair "Lookbehind_SAM_rho${RHO_SAM}_k${k}_alpha$alpha:SAM_rho$RHO_SAM"); done; done ;;
    rho)    for rho in 0.02 0.05 0.1 0.2; do pairs+=(--pair "Lookbehind_SAM_rho${rho}_k2_alpha-1:SAM_rho$rho"); done ;;
esac
python -m scripts.reports.paired "$out/runs.csv" "${pairs[@]}" --out "$out/paired_accuracy.md"
