#!/usr/bin/env bash
# rho grid (the paper's sensitivity to the neighborhood size): every minimizer at every rho of its
# family (SAM-type: RHOS_SAM, ASAM-type: RHOS_ASAM), then python -m scripts.collect -> results/$SWEEP_NAME/.
# Figure: python -m scripts.figures rho results/$SWEEP_NAME
#
# Usage: bash scripts/sweep_rho.sh [VAR=value ...] [-- extra example_cifar.py flags]
# Variables (environment or VAR=value arguments):
#   SWEEP_NAME=rho  MINIMIZERS="SAM Multistep_SAM Lookbehind_SAM ASAM Multistep_ASAM Lookbehind_ASAM"
#   RHOS_SAM="0.01 0.02 0.05 0.1 0.2"  RHOS_ASAM="0.1 0.2 0.5 1.0 2.0"
#   LB_K=2 LB_ALPHA=-1  MS_K=2  LA_K=5 LA_ALPHA=0.5
#   DATASETS="CIFAR10 CIFAR100"  MODELS="resnet34"  PAIRS=""  SEEDS="0 1 2"  EPOCHS=200
#   DEVICES="auto"  DATA_DIR  EXTRA  DRY_RUN=1  RETRY_DIVERGED=1  COLLECT=0  RUNS_ROOT  RESULTS_ROOT  PYTHON
# Finished runs are skipped, so rerunning the same command resumes the sweep.
# Example (CPU scale):
#   DATASETS=CIFAR10 MODELS=resnet20 MINIMIZERS="SAM Lookbehind_SAM" RHOS_SAM="0.05 0.2" SEEDS="0 1" \
#     EPOCHS=2 DEVICES="cpu cpu" SWEEP_NAME=rho_cpu bash scripts/sweep_rho.sh -- --train_subset 2000
source "$(dirname "${BASH_SOURCE[0]}")/lib_sweep.sh"

: "${SWEEP_NAME:=rho}"
: "${MINIMIZERS:=SAM Multistep_SAM Lookbehind_SAM ASAM Multistep_ASAM Lookbehind_ASAM}"
: "${RHOS_SAM:=0.01 0.02 0.05 0.1 0.2}"
: "${RHOS_ASAM:=0.1 0.2 0.5 1.0 2.0}"
: "${LB_K:=2}"
: "${LB_ALPHA:=-1}"
: "${MS_K:=2}"
: "${LA_K:=5}"
: "${LA_ALPHA:=0.5}"
: "${DATASETS:=CIFAR10 CIFAR100}"
: "${MODELS:=resnet34}"
: "${SEEDS:=0 1 2}"
: "${EPOCHS:=200}"
sweep_init

while read -r dataset model; do
    for minimizer in $MINIMIZERS; do
        if ! minimizer_has_rho "$minimizer"; then
            echo "error: $minimizer has no rho; remove it from MINIMIZERS" >&2; exit 2
        fi
        rhos="$RHOS_SAM"; minimizer_is_asam "$minimizer" && rhos="$RHOS_ASAM"
        case "$minimizer" in
            Lookbehind_*) k="$LB_K"; alpha="$LB_ALPHA" ;;
            Multistep_*) k="$MS_K"; alpha="" ;;
            Lookahead_*) k="$LA_K"; alpha="$LA_ALPHA" ;;
            *) k=""; alpha="" ;;
        esac
        for rho in $rhos; do
            for seed in $SEEDS; do
                add_run "$dataset" "$model" "$minimizer" "$rho" "$k" "$alpha" "$seed" "$EPOCHS"
            done
        done
    done
done < <(sweep_pairs)

sweep_run
