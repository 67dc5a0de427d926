#!/usr/bin/env bash
# Analyses of the CPU-scale study's 18 checkpoints (run after run_study.sh): robustness to weight
# noise and sharpness, side by side (one CPU thread each): about 5 and 30 minutes on 2 cores.
#
#   bash results/cpu_study/run_analyses.sh RUNS_DIR OUT_DIR
set -u
runs_dir="$1"; out_dir="$2"
: "${PYTHON:=python}"
export OMP_NUM_THREADS=1
mkdir -p "$out_dir"
runs=()
for seed in 0 1 2; do
    for name in SGD SAM ASAM Lookbehind_SAM Lookbehind_ASAM Lookbehind_SAM_switching; do
        runs+=("$runs_dir/${name}_s$seed")
    done
done
# Robustness to weight noise: additive per-tensor noise eta * (max - min) in conv/linear weights,
# 5 draws per level (the same draws for every run), on the run's 2,000 test images, bf16 autocast
# (2x faster on this CPU; the noise is far above bf16's rounding).
"$PYTHON" -m scripts.analyses.noisy_weights "${runs[@]}" --eta 0 0.01 0.02 0.05 0.1 0.15 --draws 5 --precision bf16 \
    --out "$out_dir/noisy_weights.csv" > "$out_dir/noisy_weights.log" 2>&1 &
# Sharpness on 512 fixed training images, fp32: worst-case increase (5 ascent evaluations per radius)
# in the l2 ball (SAM's rho = 0.05) and the ASAM ball (ASAM's rho = 0.5); top Hessian eigenvalue by
# 20 power iterations and the Hessian trace by 10 Hutchinson probes, finite-difference
# Hessian-vector products.
"$PYTHON" -m scripts.analyses.sharpness "${runs[@]}" --radius 0.02 0.05 0.1 0.2 --asam_radius 0.2 0.5 1.0 2.0 --steps 5 \
    --images 512 --power_iterations 20 --trace_samples 10 --hvp finite_difference \
    --out "$out_dir/sharpness.csv" > "$out_dir/sharpness.log" 2>&1 &
wait
echo "$(date -u +%FT%TZ) analyses done" >> "$out_dir/analyses.log"
