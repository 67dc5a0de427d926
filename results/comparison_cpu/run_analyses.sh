#!/usr/bin/env bash
# The paper's flatness and noisy-weights analyses on the comparison's checkpoints (issue 18, part 2), then the
# same paired statistics as the accuracy (Lookbehind vs each baseline, per seed):
#
#   bash results/comparison_cpu/run_analyses.sh RUNS_DIR SETTING "SEEDS"
#
# RUNS_DIR/comparison_cpu_SETTING holds run_study.sh's runs; SEEDS (e.g. "0 1 2") the finished seeds. Two
# processes side by side, one CPU thread each. Noise: additive per-tensor Gaussian noise eta * (max - min) in
# conv/linear weights, eta in {0, 0.02, 0.05, 0.1}, the same 5 draws for every checkpoint, the full 10,000-image
# test set, bf16. Sharpness: 512 fixed training images, fp32, worst-case loss increase (5 ascent evaluations) in
# the l2 ball (r 0.05, 0.1) and the ASAM ball (r 0.5), top Hessian eigenvalue (20 power iterations,
# finite-difference Hessian-vector products); no trace (10 Hutchinson probes were too noisy to rank neighbours in
# results/cpu_study). Cost on this 2-core machine: about 1 minute per checkpoint for each analysis.
set -eu
runs_dir="$1"; setting="$2"; seeds="$3"
dir="results/comparison_cpu/comparison_cpu_$setting"
sweep="$runs_dir/comparison_cpu_$setting"
export OMP_NUM_THREADS=1
runs=()
for seed in $seeds; do
    for run in "$sweep"/CIFAR10_*_s"$seed"; do runs+=("$run"); done
done
python -m scripts.analyses.noisy_weights "${runs[@]}" --eta 0 0.02 0.05 0.1 --draws 5 --precision bf16 \
    --out "$dir/noisy_weights.csv" > "$dir/noisy_weights.log" 2>&1 &
python -m scripts.analyses.sharpness "${runs[@]}" --radius 0.05 0.1 --asam_radius 0.5 --steps 5 --images 512 \
    --power_iterations 20 --trace_samples 0 --hvp finite_difference \
    --out "$dir/sharpness.csv" > "$dir/sharpness.log" 2>&1 &
wait
python -m scripts.reports.analysis_table --noisy "$dir/noisy_weights.csv" --sharpness "$dir/sharpness.csv" \
    --out "$dir/analyses.md"
pairs=(--pair Lookbehind-SAM:SAM --pair Lookbehind-ASAM:ASAM --pair Lookbehind-SAM:Multistep-SAM
       --pair Lookbehind-SAM:Lookahead-SAM --pair "Lookbehind-SAM alpha=0.5:SAM" --pair SAM:SGD)
python -m scripts.reports.paired "$dir/noisy_weights.csv" "${pairs[@]}" --out "$dir/paired_noisy.md"
python -m scripts.reports.paired "$dir/sharpness.csv" "${pairs[@]}" --lower-is-better --out "$dir/paired_sharpness.md"
