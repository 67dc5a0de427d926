#!/usr/bin/env bash
# Does a linear lr warm-up cure Lookbehind's early collapse at lr 0.1 on ResNet-20?
# ResNet-20 on 5,000 real CIFAR-10 images (39 steps per epoch), lr 0.1 held for 4 epochs, batch 128,
# bf16 autocast: Lookbehind-SAM (k 2, adaptive alpha) without warm-up and with a 2-epoch (78-step)
# linear warm-up, SAM without warm-up as the reference; seeds 0-2, JOBS runs at a time (default 2).
#
#   bash results/cpu_study/run_warmup.sh DATA_DIR RUNS_DIR
set -u
data_dir="$1"; runs_dir="$2"
: "${PYTHON:=python}" "${JOBS:=2}"
export PYTHON OMP_NUM_THREADS=1 DATA_DIR="$data_dir" RUNS_DIR="$runs_dir"
mkdir -p "$runs_dir"
settings=(
    "Lookbehind_SAM_warmup0|--minimizer Lookbehind_SAM --k 2 --alpha -1"
    "Lookbehind_SAM_warmup2|--minimizer Lookbehind_SAM --k 2 --alpha -1 --warmup_epochs 2"
    "SAM_warmup0|--minimizer SAM"
)
one_run() {  # $1 = NAME|FLAGS, $2 = seed
    local name="${1%%|*}" flags
    read -r -a flags <<< "${1#*|}"
    "$PYTHON" example_cifar.py --dataset CIFAR10 --data_dir "$DATA_DIR" --no-download --model resnet20 \
        --train_subset 5000 --batch_size 128 --epochs 4 --lr 0.1 --precision bf16 --device cpu \
        "${flags[@]}" --seed "$2" --out "$RUNS_DIR/resnet20_${name}_s$2" --resume \
        >> "$RUNS_DIR/train_resnet20_${name}_s$2.log" 2>&1
    echo "$(date -u +%FT%TZ) exit $? resnet20_${name}_s$2" >> "$RUNS_DIR/warmup.log"
}
export -f one_run
for seed in 0 1 2; do
    for setting in "${settings[@]}"; do printf '%s\0%s\0' "$setting" "$seed"; done
done | xargs -0 -n 2 -P "$JOBS" bash -c 'one_run "$0" "$1"'
