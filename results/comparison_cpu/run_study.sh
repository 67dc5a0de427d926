#!/usr/bin/env bash
# The full comparison (issue 18, part 2): SGD, SAM, ASAM, Multistep-SAM (k = 2), Lookahead-SAM (k = 5,
# alpha 0.5), Lookbehind-SAM and Lookbehind-ASAM (k = 2, adaptive alpha) and Lookbehind-SAM with alpha = 0.5,
# at the same 5 seeds (one seed = one initialisation and data order for every minimizer), through the sweep
# (resumable: rerun the same command; seed-major, so an interrupted study has whole seeds). One rho per
# family, as the paper: 0.05 (SAM-type), 0.5 (ASAM-type).
#
#   bash results/comparison_cpu/run_study.sh DATA_DIR RUNS_DIR [SETTING] [WORKERS]
#
# SETTING: r8_5k_noaug_e30 (default) or r20_5k_noaug_e40, defined in settings.sh.
# WORKERS: runs at a time (default 2, one per core).
set -eu
data_dir="$1"; runs_dir="$2"; setting="${3:-r8_5k_noaug_e30}"; workers="${4:-2}"
SETTING="$setting"; source "$(dirname "$0")/settings.sh"
name="comparison_cpu_$setting"
common=(--name "$name" --runs-root "$runs_dir" --results-root results/comparison_cpu --data-dir "$data_dir"
        --executor local --workers "$workers" --device cpu --pairs "CIFAR10:$MODEL" --epochs "$EPOCHS"
        --rho-sam "$RHO_SAM" --rho-asam "$RHO_ASAM" --lb-k 2 --ms-k 2 --la-k 5 --la-alpha 0.5)
for seed in 0 1 2 3 4; do
    # Lookbehind-SAM with alpha = 0.5 needs its own grid call (one --lb-alpha per call): it runs beside the
    # seed's other seven runs, so that no core waits for it at the end of the seed; one collect at the end.
    python -m scripts.launch.sweep generalization "${common[@]}" --seeds "$seed" --lb-alpha 0.5 --no-collect \
        --workers 1 --minimizers Lookbehind_SAM -- "${TRAIN[@]}" &
    python -m scripts.launch.sweep generalization "${common[@]}" --seeds "$seed" --lb-alpha -1 --no-collect \
        --minimizers SGD SAM ASAM Multistep_SAM Lookahead_SAM Lookbehind_SAM Lookbehind_ASAM -- "${TRAIN[@]}"
    wait
done
python -m scripts.reports.collect "$runs_dir/$name" --out "results/comparison_cpu/$name" --quiet
bash results/comparison_cpu/report.sh "$setting"
