#!/usr/bin/env bash
# Analyses of the CPU-scale study's 18 checkpoints (run after run_study.sh), then the warm-up check.
#
#   bash results/cpu_study/run_analyses.sh RUNS_DIR OUT_DIR DATA_DIR
#
# Grids are kept small so that all 18 checkpoints fit in about 20 minutes of one busy CPU core.
set -u
runs_dir="$1"; out_dir="$2"; data_dir="$3"
: "${PYTHON:=python}" "${OMP_NUM_THREADS:=1}"
export OMP_NUM_THREADS
mkdir -p "$out_dir"
runs=()
for seed in 0 1 2; do
    for name in SGD SAM ASAM Lookbehind_SAM Lookbehind_ASAM Lookbehind_SAM_switching; do
        runs+=("$runs_dir/${name}_s$seed")
    done
done
# Robustness to weight noise: additive per-tensor noise eta * (max - min), 3 draws per level,
# on the run's 2,000 test images, bf16 autocast (2x faster on this CPU; the noise is far above bf16's rounding).
"$PYTHON" -m scripts.noisy_weights "${runs[@]}" --eta 0 0.02 0.05 0.1 --draws 3 --precision bf16 \
    --out "$out_dir/noisy_weights.csv" > "$out_dir/noisy_weights.log" 2>&1
# Sharpness on 256 fixed training images, fp32: worst-case increase (3 ascent evaluations) in the l2 ball
# (SAM's rho = 0.05 in the middle) and the ASAM ball (ASAM's rho = 0.5 in the middle); top eigenvalue by
# 6 power iterations with finite-difference Hessian-vector products.
"$PYTHON" -m scripts.sharpness "${runs[@]}" --radius 0.02 0.05 0.1 --asam_radius 0.2 0.5 1.0 --steps 3 \
    --images 256 --power_iterations 6 --hvp finite_difference \
    --out "$out_dir/sharpness.csv" > "$out_dir/sharpness.log" 2>&1
# Warm-up: does a linear warm-up cure Lookbehind's early collapse at lr 0.1 on ResNet-20?
# 2 epochs of 1,280 images (10 steps each); warm-up over the first epoch vs none.
for warmup in 0 1; do
    "$PYTHON" example_cifar.py --dataset CIFAR10 --data_dir "$data_dir" --no-download --model resnet20 \
        --train_subset 1280 --epochs 2 --lr 0.1 --minimizer Lookbehind_SAM --k 2 --alpha -1 --device cpu \
        --warmup_epochs "$warmup" --out "$runs_dir/warmup/resnet20_Lookbehind_SAM_warmup$warmup" --resume \
        > "$out_dir/warmup$warmup.log" 2>&1
done
echo "$(date -u +%FT%TZ) analyses done" >> "$out_dir/analyses.log"
