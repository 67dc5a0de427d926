#!/usr/bin/env bash
# The CPU-scale study: 6 minimizer settings x 3 seeds of ResNet-8 on 5,000 real CIFAR-10 training
# images (a stratified 2,000-image test subset, 200 per class), 40 epochs of the authors' recipe
# scaled down (lr 0.1, x0.1 at epochs 10, 20 and 30, as their 50/100/150 of 200), batch 128,
# bf16 autocast, one CPU thread per run, JOBS runs at a time (default 2).
# Resumable: rerun the same command; finished runs are skipped, interrupted ones continue (--resume).
#
#   bash results/cpu_study/run_study.sh DATA_DIR RUNS_DIR
#
# DATA_DIR holds cifar-10-batches-py (make_test_subset.py's output); RUNS_DIR receives one run
# directory per run. Seed-major order, so that complete seeds are available early.
set -u
data_dir="$1"; runs_dir="$2"
: "${PYTHON:=python}" "${JOBS:=2}"
export PYTHON OMP_NUM_THREADS=1 DATA_DIR="$data_dir" RUNS_DIR="$runs_dir"
mkdir -p "$runs_dir"
settings=(
    "SGD|--minimizer SGD"
    "SAM|--minimizer SAM --rho 0.05"
    "ASAM|--minimizer ASAM --rho 0.5"
    "Lookbehind_SAM|--minimizer Lookbehind_SAM --rho 0.05 --k 2 --alpha -1"
    "Lookbehind_ASAM|--minimizer Lookbehind_ASAM --rho 0.5 --k 2 --alpha -1"
    "Lookbehind_SAM_switching|--minimizer Lookbehind_SAM --rho 0.05 --k 2 --alpha -1 --minibatch_switching"
)
one_run() {  # $1 = NAME|FLAGS, $2 = seed
    local name="${1%%|*}" flags out
    read -r -a flags <<< "${1#*|}"
    out="$RUNS_DIR/${name}_s$2"
    echo "$(date -u +%FT%TZ) start $out" >> "$RUNS_DIR/study.log"
    "$PYTHON" example_cifar.py --dataset CIFAR10 --data_dir "$DATA_DIR" --no-download --model resnet8 \
        --train_subset 5000 --batch_size 128 --epochs 40 --schedule multistep --milestones 10 20 30 \
        --lr 0.1 --precision bf16 --device cpu "${flags[@]}" --seed "$2" --out "$out" --resume \
        >> "$RUNS_DIR/train_${name}_s$2.log" 2>&1
    echo "$(date -u +%FT%TZ) exit $? $out" >> "$RUNS_DIR/study.log"
}
export -f one_run
for seed in 0 1 2; do
    for setting in "${settings[@]}"; do printf '%s\0%s\0' "$setting" "$seed"; done
done | xargs -0 -n 2 -P "$JOBS" bash -c 'one_run "$0" "$1"'
echo "$(date -u +%FT%TZ) study done" >> "$runs_dir/study.log"
