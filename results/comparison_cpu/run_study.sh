#!/usr/bin/env bash
# The full comparison (issue 18, part 2): SGD, SAM, ASAM, Multistep-SAM (k = 2), Lookahead-SAM (k = 5,
# alpha 0.5), Lookbehind-SAM and Lookbehind-ASAM (k = 2, adaptive alpha) and Lookbehind-SAM with alpha = 0.5,
# at the same 5 seeds (one seed = one initialisation and data order for every minimizer), through the sweep
# (resumable: rerun the same command; seed-major, so an interrupted study has whole seeds). One rho per
# family, as the paper: 0.05 (SAM-type), 0.5 (ASAM-type).
#
#   bash results/comparison_cpu/run_study.sh DATA_DIR RUNS_DIR [SETTING] [WORKERS]
#
# SETTING (results/positive_control/pilot.md; none has passed the control yet):
#   r8_5k_noaug_e30  (default) ResNet-8, first 5,000 training images, no augmentation, 30 epochs: the setting
#                    whose 5-seed study fits one session (about 19 SGD-run units x 2.5 core-minutes per seed,
#                    4 core-hours for 5 seeds); its SGD and SAM runs are also the control's 5-seed check there.
#   r20_5k_noaug_e40 ResNet-20, 5,000 images, no augmentation, 40 epochs: the closest to passing, about
#                    14 core-hours for 5 seeds (three sessions).
# WORKERS: runs at a time (default 2, one per core). Every run: full 10,000-image test set evaluated after the
# last epoch only (--eval_every = epochs: training and results are the same, the other epochs' test passes
# are the cost they would add), batch 128, SGD lr 0.1 / momentum 0.9 / weight decay 5e-4, cosine, bf16, one
# CPU thread.
set -eu
data_dir="$1"; runs_dir="$2"; setting="${3:-r8_5k_noaug_e30}"; workers="${4:-2}"
case "$setting" in
    r8_5k_noaug_e30)  MODEL=resnet8;  IMAGES=5000; EPOCHS=30 ;;
    r20_5k_noaug_e40) MODEL=resnet20; IMAGES=5000; EPOCHS=40 ;;
    *) echo "error: unknown setting $setting (r8_5k_noaug_e30 or r20_5k_noaug_e40)" >&2; exit 2 ;;
esac
RHO_SAM=0.05; RHO_ASAM=0.5
name="comparison_cpu_$setting"
export OMP_NUM_THREADS=1
common=(--name "$name" --runs-root "$runs_dir" --results-root results/comparison_cpu --data-dir "$data_dir"
        --executor local --workers "$workers" --device cpu --pairs "CIFAR10:$MODEL" --epochs "$EPOCHS"
        --rho-sam "$RHO_SAM" --rho-asam "$RHO_ASAM" --lb-k 2 --ms-k 2 --la-k 5 --la-alpha 0.5)
train=(--train_subset "$IMAGES" --no-augment --schedule cosine --precision bf16 --eval_every "$EPOCHS" --no-download)
for seed in 0 1 2 3 4; do
    # Lookbehind-SAM with alpha = 0.5 needs its own grid call (one --lb-alpha per call): it runs beside the
    # seed's other seven runs, so that no core waits for it at the end of the seed; one collect at the end.
    python -m scripts.launch.sweep generalization "${common[@]}" --seeds "$seed" --lb-alpha 0.5 --no-collect \
        --workers 1 --minimizers Lookbehind_SAM -- "${train[@]}" &
    python -m scripts.launch.sweep generalization "${common[@]}" --seeds "$seed" --lb-alpha -1 --no-collect \
        --minimizers SGD SAM ASAM Multistep_SAM Lookahead_SAM Lookbehind_SAM Lookbehind_ASAM -- "${train[@]}"
    wait
done
python -m scripts.reports.collect "$runs_dir/$name" --out "results/comparison_cpu/$name" --quiet
bash results/comparison_cpu/report.sh "$setting"
