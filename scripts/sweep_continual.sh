#!/usr/bin/env bash
# Continual-learning grid (the paper's lifelong-learning claim): minimizer x seed, one example_continual.py
# run each, then python -m scripts.collect -> results/$SWEEP_NAME/; table and figures:
#   python -m scripts.continual_table results/$SWEEP_NAME --paired SAM --paired ASAM
#
# Usage: bash scripts/sweep_continual.sh [VAR=value ...] [-- extra example_continual.py flags]
# Variables (environment or VAR=value arguments):
#   SWEEP_NAME=continual   BENCHMARK=split_cifar100   MODEL=reduced_resnet18
#   MINIMIZERS="SGD SAM ASAM Lookbehind_SAM Lookbehind_ASAM Lookahead_SAM Multistep_SAM"   SEEDS="0 1 2 3 4"
#   LB_K=2 LB_ALPHA=-1 (Lookbehind; -1 = adaptive alpha)   MS_K=2 (Multistep); Lookahead and the others keep
#   their library defaults unless HPARAMS_<NAME>="--k 5 --alpha 0.5 ..." is set.
#   DEVICES="auto"  DATA_DIR  EXTRA  DRY_RUN=1  RETRY_DIVERGED=1  COLLECT=0  RUNS_ROOT  RESULTS_ROOT  PYTHON
# Each seed gives every minimizer the same class split, task order and initialisation (--task_seed follows
# --seed), which is what scripts.continual_table --paired compares. Finished runs are skipped, so rerunning
# the same command resumes the sweep.  Cost: README.md, "Lifelong learning".
# Example (the committed CPU-scale result, results/continual_cpu/README.md):
#   BENCHMARK=split_cifar10 SWEEP_NAME=continual_cpu DEVICES=cpu bash scripts/sweep_continual.sh -- \
#     --train_per_task 500 --test_per_task 200 --batch_size 10 --lr 0.01 --momentum 0.9 --precision bf16
source "$(dirname "${BASH_SOURCE[0]}")/lib_sweep.sh"

: "${SWEEP_NAME:=continual}"
: "${BENCHMARK:=split_cifar100}"
: "${MODEL:=reduced_resnet18}"
: "${MINIMIZERS:=SGD SAM ASAM Lookbehind_SAM Lookbehind_ASAM Lookahead_SAM Multistep_SAM}"
: "${SEEDS:=0 1 2 3 4}"
: "${LB_K:=2}"
: "${LB_ALPHA:=-1}"
: "${MS_K:=2}"
: "${TRAIN_SCRIPT:=$REPO_ROOT/example_continual.py}"
sweep_init

for seed in $SEEDS; do  # seeds outer: a partly finished sweep has whole seeds for every minimizer
    for minimizer in $MINIMIZERS; do
        args=(--benchmark "$BENCHMARK" --model "$MODEL" --minimizer "$minimizer" --seed "$seed")
        case "$minimizer" in
            Lookbehind_*) args+=(--k "$LB_K" --alpha "$LB_ALPHA") ;;
            Multistep_*) args+=(--k "$MS_K") ;;
        esac
        hvar="HPARAMS_$minimizer"
        if [[ -n "${!hvar:-}" ]]; then
            read -r -a hextra <<< "${!hvar}"
            args+=("${hextra[@]}")
        fi
        sweep_add "${BENCHMARK}_${MODEL}_${minimizer}_s${seed}" "${args[@]}"
    done
done

sweep_run
