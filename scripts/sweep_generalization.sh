#!/usr/bin/env bash
# Generalization grid (the paper's Table 1): dataset x model x minimizer x seed, one example_cifar.py run
# each, then python -m scripts.collect -> results/$SWEEP_NAME/{runs,grouped,curves}.csv.
#
# Usage: bash scripts/sweep_generalization.sh [VAR=value ...] [-- extra example_cifar.py flags]
# Variables (environment or VAR=value arguments; defaults = the paper's setting):
#   SWEEP_NAME=generalization   DATASETS="CIFAR10 CIFAR100"   MODELS="resnet34 wrn28_2 resnet50"
#   PAIRS=""            e.g. "CIFAR10:resnet34 CIFAR100:resnet50": explicit pairs instead of DATASETS x MODELS
#   MINIMIZERS="SGD SAM ASAM Multistep_SAM Multistep_ASAM Lookahead_SAM Lookahead_ASAM Lookbehind_SAM Lookbehind_ASAM"
#   SEEDS="0 1 2"  EPOCHS=200  RHO_SAM=0.05  RHO_ASAM=0.5
#   LB_K=2 LB_ALPHA=-1 (Lookbehind; -1 = adaptive alpha)   MS_K=2 (Multistep)   LA_K=5 LA_ALPHA=0.5 (Lookahead)
#   Other minimizers (GSAM, SAMPa, ...) may be added to MINIMIZERS: they keep their library defaults
#   unless RHO_<NAME>=... or HPARAMS_<NAME>="--hparam key=value ..." is set.
#   DEVICES="auto"  (e.g. "cuda:0 cuda:1", "cpu cpu")  DATA_DIR  EXTRA  DRY_RUN=1  RETRY_DIVERGED=1  COLLECT=0
#   RUNS_ROOT=<repo>/runs  RESULTS_ROOT=<repo>/results  PYTHON=python
# Finished runs are skipped, so rerunning the same command resumes the sweep.  Cost on one GPU: see
# scripts/README.md (all 2 x 3 x 9 x 3 = 162 runs of 200 epochs: weeks of GPU time; restrict the grid).
# Example (CPU scale):
#   DATASETS=CIFAR10 MODELS=resnet20 SEEDS="0 1 2" EPOCHS=3 DEVICES="cpu cpu" SWEEP_NAME=generalization_cpu \
#     bash scripts/sweep_generalization.sh -- --train_subset 5000
source "$(dirname "${BASH_SOURCE[0]}")/lib_sweep.sh"

: "${SWEEP_NAME:=generalization}"
: "${DATASETS:=CIFAR10 CIFAR100}"
: "${MODELS:=resnet34 wrn28_2 resnet50}"
: "${MINIMIZERS:=SGD SAM ASAM Multistep_SAM Multistep_ASAM Lookahead_SAM Lookahead_ASAM Lookbehind_SAM Lookbehind_ASAM}"
: "${SEEDS:=0 1 2}"
: "${EPOCHS:=200}"
: "${RHO_SAM:=0.05}"
: "${RHO_ASAM:=0.5}"
: "${LB_K:=2}"
: "${LB_ALPHA:=-1}"
: "${MS_K:=2}"
: "${LA_K:=5}"
: "${LA_ALPHA:=0.5}"
sweep_init

while read -r dataset model; do
    for minimizer in $MINIMIZERS; do
        rho="$(default_rho "$minimizer")"
        case "$minimizer" in
            Lookbehind_*) k="$LB_K"; alpha="$LB_ALPHA" ;;
            Multistep_*) k="$MS_K"; alpha="" ;;
            Lookahead_*) k="$LA_K"; alpha="$LA_ALPHA" ;;
            *) k=""; alpha="" ;;
        esac
        for seed in $SEEDS; do
            add_run "$dataset" "$model" "$minimizer" "$rho" "$k" "$alpha" "$seed" "$EPOCHS"
        done
    done
done < <(sweep_pairs)

sweep_run
