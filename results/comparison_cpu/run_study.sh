#!/usr/bin/env bash
# The full comparison in the positive control's setting (issue 18, part 2): SGD, SAM, ASAM, Multistep-SAM
# (k = 2), Lookahead-SAM (k = 5, alpha 0.5), Lookbehind-SAM and Lookbehind-ASAM (k = 2, adaptive alpha) and
# Lookbehind-SAM with alpha = 0.5, at the same 5 seeds (one seed = one initialisation and data order for every
# minimizer), through the sweep (resumable: rerun the same command; seed-major, so an interrupted study has
# whole seeds). The setting is results/positive_control's pick (SETTING below; none has passed yet: this is the
# closest); one rho per family, as the paper. Cost: about 95 SGD-run units x 6.3 core-minutes = 10 core-hours.
#
#   bash results/comparison_cpu/run_study.sh DATA_DIR RUNS_DIR
#
# Evaluation only after the last epoch (--eval_every = epochs): training and results are the same, the test
# passes of the other epochs are the cost they would add.
set -eu
data_dir="$1"; runs_dir="$2"
MODEL=resnet20; IMAGES=5000; EPOCHS=40; RHO_SAM=0.05; RHO_ASAM=0.5  # SETTING: r20_5k_noaug_e40, the closest (no pass yet)
export OMP_NUM_THREADS=1
common=(--name comparison_cpu --runs-root "$runs_dir" --results-root results --data-dir "$data_dir"
        --executor local --workers 2 --device cpu --pairs "CIFAR10:$MODEL" --epochs "$EPOCHS"
        --rho-sam "$RHO_SAM" --rho-asam "$RHO_ASAM" --lb-k 2 --ms-k 2 --la-k 5 --la-alpha 0.5)
train=(--train_subset "$IMAGES" --no-augment --schedule cosine --precision bf16 --eval_every "$EPOCHS" --no-download)
for seed in 0 1 2 3 4; do
    python -m scripts.launch.sweep generalization "${common[@]}" --seeds "$seed" --lb-alpha -1 \
        --minimizers SGD SAM ASAM Multistep_SAM Lookahead_SAM Lookbehind_SAM Lookbehind_ASAM -- "${train[@]}"
done
# Lookbehind-SAM with alpha = 0.5 (its own grid call: one --lb-alpha per call), all seeds at once to keep two workers busy
python -m scripts.launch.sweep generalization "${common[@]}" --seeds 0 1 2 3 4 --lb-alpha 0.5 \
    --minimizers Lookbehind_SAM -- "${train[@]}"
# The paper's claims as paired differences (final test accuracy):
python -m scripts.reports.paired results/comparison_cpu/runs.csv --out results/comparison_cpu/paired_accuracy.md \
    --pair 'Lookbehind_SAM*alpha-1:SAM*' --pair 'Lookbehind_ASAM*:ASAM*' --pair 'Lookbehind_SAM*alpha-1:Multistep_SAM*' \
    --pair 'Lookbehind_SAM*alpha-1:Lookahead_SAM*' --pair 'Lookbehind_SAM*alpha0.5:SAM*' --pair 'SAM*:SGD'
