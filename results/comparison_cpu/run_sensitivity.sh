#!/usr/bin/env bash
# The sensitivity studies in the positive control's setting (issue 18, part 2): Lookbehind-SAM's k x alpha
# heatmap (k in {2, 5}, alpha in {0.2, 0.5, 0.8, adaptive}) with SAM as the baseline, and a rho sweep of SAM
# and Lookbehind-SAM (k = 2, adaptive alpha), at 2 seeds, through the sweep (resumable).
#
#   bash results/comparison_cpu/run_sensitivity.sh DATA_DIR RUNS_DIR kalpha|rho
#
# Cost, from the positive control's SGD run of this setting (about 6.3 core-minutes without evaluation on an idle
# core): kalpha about 76 SGD-run units = 8 core-hours (4 hours on 2 cores); rho about 40 units (2 hours on 2 cores).
set -eu
data_dir="$1"; runs_dir="$2"; study="$3"
MODEL=resnet20; IMAGES=5000; EPOCHS=40; RHO_SAM=0.05   # SETTING: r20_5k_noaug_e40 (results/positive_control)
export OMP_NUM_THREADS=1
common=(--runs-root "$runs_dir" --results-root results --data-dir "$data_dir" --executor local --workers 2
        --device cpu --pairs "CIFAR10:$MODEL" --epochs "$EPOCHS" --seeds 0 1)
train=(--train_subset "$IMAGES" --no-augment --schedule cosine --precision bf16 --eval_every "$EPOCHS" --no-download)
case "$study" in
    kalpha) python -m scripts.launch.sweep kalpha --name kalpha_control "${common[@]}" --rho-sam "$RHO_SAM" \
                --minimizers Lookbehind_SAM --k-values 2 5 --alphas 0.2 0.5 0.8 -1 --baselines SAM -- "${train[@]}"
            python -m scripts.reports.figures kalpha results/kalpha_control --formats png ;;
    rho)    python -m scripts.launch.sweep rho --name rho_control "${common[@]}" --lb-k 2 --lb-alpha -1 \
                --minimizers SAM Lookbehind_SAM --rhos-sam 0.02 0.05 0.1 0.2 -- "${train[@]}"
            python -m scripts.reports.figures rho results/rho_control --formats png ;;
    *) echo "error: the study is kalpha or rho, got $study" >&2; exit 2 ;;
esac
