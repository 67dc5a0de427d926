#!/usr/bin/env bash
# The positive-control search (issue 18): settings in which SGD and SAM both fit their training set and
# SAM's test accuracy may beat SGD's. Each setting is one sweep directory RUNS_DIR/pc_<setting>; every run
# goes through the project's sweep (resumable: rerun the same command, finished runs are skipped).
#
#   bash results/positive_control/run_pilot.sh DATA_DIR RUNS_DIR SETTING SEEDS RHOS
#     e.g. ... data/full runs/pilot r8_5k_noaug_e30 "0" "0.05 0.1 0.2"
#
# SETTING names its model, training images, augmentation and epochs (the table below); SEEDS and RHOS
# are space-separated lists. SGD runs at every seed, SAM at every seed x rho. Every run: full 10,000-image
# test set (after the last epoch only where the setting says --eval_every; the result is the same), batch 128,
# SGD lr 0.1 / momentum 0.9 / weight decay 5e-4 (the authors'), cosine schedule,
# bf16 autocast, one CPU thread.
set -eu
data_dir="$1"; runs_dir="$2"; setting="$3"; seeds="$4"; rhos="$5"
case "$setting" in
    r8_5k_noaug_e30)   flags=(--models resnet8  --epochs 30 -- --train_subset 5000 --no-augment) ;;
    r8_10k_noaug_e20)  flags=(--models resnet8  --epochs 20 -- --train_subset 10000 --no-augment) ;;
    r20_5k_noaug_e20)  flags=(--models resnet20 --epochs 20 -- --train_subset 5000 --no-augment) ;;
    r20_5k_aug_e40)    flags=(--models resnet20 --epochs 40 -- --train_subset 5000) ;;
    r20_10k_noaug_e15) flags=(--models resnet20 --epochs 15 -- --train_subset 10000 --no-augment) ;;
    r8_5k_noaug_e60)   flags=(--models resnet8  --epochs 60 -- --train_subset 5000 --no-augment) ;;
    r8_5k_noaug_e45)   flags=(--models resnet8  --epochs 45 -- --train_subset 5000 --no-augment --eval_every 45) ;;
    r20_5k_noaug_e40)  flags=(--models resnet20 --epochs 40 -- --train_subset 5000 --no-augment) ;;
    r20_2500_noaug_e40) flags=(--models resnet20 --epochs 40 -- --train_subset 2500 --no-augment) ;;
    *) echo "error: unknown setting $setting" >&2; exit 2 ;;
esac
# split "flags" into the grid's options and the training script's (after --)
for i in "${!flags[@]}"; do [[ "${flags[$i]}" == "--" ]] && cut=$i; done
grid=("${flags[@]:0:$cut}"); train=("${flags[@]:$((cut + 1))}")
common=(--name "pc_$setting" --runs-root "$runs_dir" --results-root results/positive_control
        --data-dir "$data_dir" --executor local --workers 1 --device cpu --datasets CIFAR10)
export OMP_NUM_THREADS=1
read -r -a seed_list <<< "$seeds"; read -r -a rho_list <<< "$rhos"
python -m scripts.launch.sweep generalization "${common[@]}" "${grid[@]}" --minimizers SGD --seeds "${seed_list[@]}" \
    -- "${train[@]}" --schedule cosine --precision bf16 --no-download
for rho in "${rho_list[@]}"; do   # one sweep directory per setting: the same grid, one rho at a time
    python -m scripts.launch.sweep generalization "${common[@]}" "${grid[@]}" --minimizers SAM --rho-sam "$rho" \
        --seeds "${seed_list[@]}" -- "${train[@]}" --schedule cosine --precision bf16 --no-download
done
