#!/usr/bin/env bash
# k x alpha grid (the paper's sensitivity heatmaps): Lookbehind with k in K_VALUES and alpha in ALPHAS
# (alpha=-1: adaptive), plus the plain baseline of each family (SAM for Lookbehind_SAM, ASAM for
# Lookbehind_ASAM) at the same seeds, then python -m scripts.collect -> results/$SWEEP_NAME/.
# Figure: python -m scripts.figures kalpha results/$SWEEP_NAME
#
# Usage: bash scripts/sweep_kalpha.sh [VAR=value ...] [-- extra example_cifar.py flags]
# Variables (environment or VAR=value arguments):
#   SWEEP_NAME=kalpha  K_VALUES="2 5 10"  ALPHAS="0.2 0.5 0.8 -1"  MINIMIZERS="Lookbehind_SAM Lookbehind_ASAM"
#   BASELINES=auto (SAM/ASAM matching MINIMIZERS; "" for none, or a list)  RHO_SAM=0.05  RHO_ASAM=0.5
#   DATASETS="CIFAR10 CIFAR100"  MODELS="resnet34"  PAIRS=""  SEEDS="0 1 2"  EPOCHS=200
#   DEVICES="auto"  DATA_DIR  EXTRA  DRY_RUN=1  RETRY_DIVERGED=1  COLLECT=0  RUNS_ROOT  RESULTS_ROOT  PYTHON
# Finished runs are skipped, so rerunning the same command resumes the sweep.
# Example (CPU scale):
#   DATASETS=CIFAR10 MODELS=resnet20 MINIMIZERS=Lookbehind_SAM SEEDS="0 1 2" EPOCHS=2 DEVICES="cpu cpu" \
#     SWEEP_NAME=kalpha_cpu bash scripts/sweep_kalpha.sh -- --train_subset 2000
source "$(dirname "${BASH_SOURCE[0]}")/lib_sweep.sh"

: "${SWEEP_NAME:=kalpha}"
: "${K_VALUES:=2 5 10}"
: "${ALPHAS:=0.2 0.5 0.8 -1}"
: "${MINIMIZERS:=Lookbehind_SAM Lookbehind_ASAM}"
: "${BASELINES=auto}"
: "${RHO_SAM:=0.05}"
: "${RHO_ASAM:=0.5}"
: "${DATASETS:=CIFAR10 CIFAR100}"
: "${MODELS:=resnet34}"
: "${SEEDS:=0 1 2}"
: "${EPOCHS:=200}"
sweep_init

if [[ "$BASELINES" == auto ]]; then
    BASELINES=""
    for minimizer in $MINIMIZERS; do
        case "$minimizer" in Lookbehind_*) BASELINES+=" ${minimizer#Lookbehind_}" ;; esac
    done
fi

while read -r dataset model; do
    for minimizer in $MINIMIZERS; do
        rho="$(default_rho "$minimizer")"
        for k in $K_VALUES; do
            for alpha in $ALPHAS; do
                for seed in $SEEDS; do
                    add_run "$dataset" "$model" "$minimizer" "$rho" "$k" "$alpha" "$seed" "$EPOCHS"
                done
            done
        done
    done
    for minimizer in $BASELINES; do
        rho="$(default_rho "$minimizer")"
        for seed in $SEEDS; do
            add_run "$dataset" "$model" "$minimizer" "$rho" "" "" "$seed" "$EPOCHS"
        done
    done
done < <(sweep_pairs)

sweep_run
