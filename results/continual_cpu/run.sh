#!/usr/bin/env bash
# The committed CPU-scale continual-learning result: split-CIFAR-10 (5 tasks x 2 classes, multi-head),
# reduced ResNet-18 (20 base filters), 7 minimizers x 5 seeds, one CPU core. Resumable: rerunning it
# skips finished runs and continues an interrupted one from its checkpoint (--resume).
#   OMP_NUM_THREADS=1 nohup bash results/continual_cpu/run.sh > runs/continual_cpu.log 2>&1 &
# then: python -m scripts.reports.continual_table runs/continual_cpu --out results/continual_cpu
# Needs CIFAR-10 in the official python layout under --data_dir (default ./data).
set -u
cd "$(dirname "$0")/../.."
SEEDS="${SEEDS:-0 1 2 3 4}"
COMMON=(--benchmark split_cifar10 --model reduced_resnet18 --train_per_task 500 --test_per_task 200
        --epochs_per_task 1 --batch_size 10 --lr 0.01 --momentum 0.9 --precision bf16 --device cpu --no-download)
for seed in $SEEDS; do  # seeds outer: every finished seed has all minimizers
    while read -r name flags; do
        out="runs/continual_cpu/${name}_s${seed}"
        mkdir -p "$out"
        # shellcheck disable=SC2086
        python example_continual.py "${COMMON[@]}" $flags --seed "$seed" --out "$out" --resume >> "$out/train.log" 2>&1
        echo "$(date -u +%FT%TZ) $name seed $seed exit $?"
    done <<'GRID'
SGD --minimizer SGD
SAM --minimizer SAM
ASAM --minimizer ASAM
Lookbehind_SAM --minimizer Lookbehind_SAM --k 2 --alpha -1
Lookbehind_ASAM --minimizer Lookbehind_ASAM --k 2 --alpha -1
Lookahead_SAM --minimizer Lookahead_SAM
Multistep_SAM --minimizer Multistep_SAM --k 2
GRID
done
