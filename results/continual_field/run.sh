#!/usr/bin/env bash
# Continual learning at the field's task length (issue 18, part 3): split-CIFAR-10, 5 tasks of 2 classes,
# 2,500 training images per task (class-balanced), one epoch per task at batch 10 (250 steps per task),
# SGD lr 0.03 without momentum or weight decay (A-GEM's split-CIFAR setting; the example_continual.py
# defaults), the reduced ResNet-18, multi-head, the full 2,000 test images of each task, bf16 autocast, one
# CPU thread per run. 7 minimizers x 5 seeds through the sweep (resumable: rerun the same command).
#
#   bash results/continual_field/run.sh DATA_DIR RUNS_DIR [EPOCHS_PER_TASK]
#
# EPOCHS_PER_TASK (default 1) = 3 gives the longer setting, in its own sweep directory.
# Cost (measured 2026-12-05 on the shared 2-core machine): 35 runs in 70 minutes with two at a time (2.1 hours
# inside the runs; median seconds per run: SGD 131, SAM 200, Lookbehind-SAM 282); the 3-epoch setting about 3x.
# With RUNS_DIR and DATA_DIR inside the repository (e.g. runs/ and ./data, which git ignores) the CSVs name relative
# paths only.
set -eu
data_dir="$1"; runs_dir="$2"; epochs="${3:-1}"
name=continual_field; [[ "$epochs" == 1 ]] || name="continual_field_e$epochs"
export OMP_NUM_THREADS=1
for seed in 0 1 2 3 4; do   # seed-major: an interrupted study has whole seeds
    python -m scripts.launch.sweep continual --name "$name" --runs-root "$runs_dir" --results-root results \
        --data-dir "$data_dir" --executor local --workers 2 --device cpu --benchmark split_cifar10 \
        --model reduced_resnet18 --seeds "$seed" \
        --minimizers SGD SAM ASAM Lookbehind_SAM Lookbehind_ASAM Lookahead_SAM Multistep_SAM \
        -- --train_per_task 2500 --epochs_per_task "$epochs" --precision bf16 --no-download
done
# The table (A, F, LA) and the paired statistics of each claim, SAM - SGD being the positive control (SAM is
# known to forget less than SGD, Mirzadeh et al. 2020):
python -m scripts.reports.continual_table "results/$name" --paired SAM --paired ASAM
for metric in average_accuracy learning_accuracy; do
    python -m scripts.reports.paired "results/$name/runs.csv" --metric "$metric" \
        --pair 'Lookbehind_SAM*:SAM' --pair 'Lookbehind_ASAM*:ASAM' --pair 'Lookbehind_SAM*:Multistep_SAM*' \
        --pair 'Lookbehind_SAM*:Lookahead_SAM*' --pair SAM:SGD --out "results/$name/paired_$metric.md"
done
python -m scripts.reports.paired "results/$name/runs.csv" --metric forgetting --lower-is-better \
    --pair 'Lookbehind_SAM*:SAM' --pair 'Lookbehind_ASAM*:ASAM' --pair 'Lookbehind_SAM*:Multistep_SAM*' \
    --pair 'Lookbehind_SAM*:Lookahead_SAM*' --pair SAM:SGD --out "results/$name/paired_forgetting.md"
