# The CPU comparison's settings (results/positive_control/pilot.md), one home for run_study.sh and
# run_sensitivity.sh: source it with SETTING set; it sets MODEL, IMAGES, EPOCHS, the family rhos and TRAIN
# (the training flags every run of the setting shares).
#   r8_5k_noaug_e30  ResNet-8, first 5,000 training images, no augmentation, 30 epochs: the setting whose
#                    5-seed study fits one session (about 4 core-hours for 8 minimizers x 5 seeds).
#   r20_5k_noaug_e40 ResNet-20, 5,000 images, no augmentation, 40 epochs: the closest to passing the
#                    control, about 14 core-hours for 5 seeds (three sessions).
# Every run: full 10,000-image test set evaluated after the last epoch only (--eval_every = epochs: training
# and results are the same, the other epochs' test passes are the cost they would add), batch 128, SGD lr 0.1
# / momentum 0.9 / weight decay 5e-4, cosine, bf16, one CPU thread.
case "$SETTING" in
    r8_5k_noaug_e30)  MODEL=resnet8;  IMAGES=5000; EPOCHS=30 ;;
    r20_5k_noaug_e40) MODEL=resnet20; IMAGES=5000; EPOCHS=40 ;;
    *) echo "error: unknown setting $SETTING (r8_5k_noaug_e30 or r20_5k_noaug_e40)" >&2; exit 2 ;;
esac
RHO_SAM=0.05; RHO_ASAM=0.5   # one rho per family, as the paper
TRAIN=(--train_subset "$IMAGES" --no-augment --schedule cosine --precision bf16 --eval_every "$EPOCHS" --no-download)
export OMP_NUM_THREADS=1
