#!/usr/bin/env bash
# The CPU-scale study: 6 minimizer settings x 3 seeds of ResNet-8 on 2,000 real CIFAR-10 training
# images (a stratified 2,000-image test subset, 200 per class), 10 epochs, cosine lr from 0.1, bf16 autocast, one CPU thread.
# Resumable: rerun the same command; finished runs are skipped, interrupted ones continue (--resume).
#
#   bash results/cpu_study/run_study.sh DATA_DIR RUNS_DIR
#
# DATA_DIR holds cifar-10-batches-py (a local copy of CIFAR-10); RUNS_DIR receives one run directory
# per run. Seed-major order, so that complete seeds are available early.
set -u
data_dir="$1"; runs_dir="$2"
: "${PYTHON:=python}" "${OMP_NUM_THREADS:=1}"
export OMP_NUM_THREADS
common=(--dataset CIFAR10 --data_dir "$data_dir" --no-download --model resnet8 --train_subset 2000
        --epochs 10 --schedule cosine --lr 0.1 --precision bf16 --device cpu)
settings=(
    "SGD|--minimizer SGD"
    "SAM|--minimizer SAM --rho 0.05"
    "ASAM|--minimizer ASAM --rho 0.5"
    "Lookbehind_SAM|--minimizer Lookbehind_SAM --rho 0.05 --k 2 --alpha -1"
    "Lookbehind_ASAM|--minimizer Lookbehind_ASAM --rho 0.5 --k 2 --alpha -1"
    "Lookbehind_SAM_switching|--minimizer Lookbehind_SAM --rho 0.05 --k 2 --alpha -1 --minibatch_switching"
)
mkdir -p "$runs_dir"
for seed in 0 1 2; do
    for setting in "${settings[@]}"; do
        name="${setting%%|*}"; read -r -a flags <<< "${setting#*|}"
        out="$runs_dir/${name}_s$seed"
        echo "$(date -u +%FT%TZ) start $out" >> "$runs_dir/study.log"
        "$PYTHON" example_cifar.py "${common[@]}" "${flags[@]}" --seed "$seed" --out "$out" --resume \
            >> "$runs_dir/train_${name}_s$seed.log" 2>&1
        echo "$(date -u +%FT%TZ) exit $? $out" >> "$runs_dir/study.log"
    done
done
echo "$(date -u +%FT%TZ) study done" >> "$runs_dir/study.log"
