"""Train a CIFAR ResNet/WRN with one minimizer (SGD, SAM, ASAM, Lookbehind-SAM, ...) and keep records.

    python example_cifar.py --minimizer Lookbehind_SAM --k 2 --alpha -1            # paper setting
    python example_cifar.py --minimizer Lookbehind_ASAM --rho 0.5
    python example_cifar.py --dataset CIFAR100 --model resnet50 --minimizer SAM
    python example_cifar.py --dataset CIFAR10_sample --model resnet20 --epochs 10   # offline, CPU
    python example_cifar.py --model vit_tiny_patch4 --optimizer adamw --lr 1e-3 --weight_decay 0.05 \
        --schedule cosine --warmup_epochs 5 --label_smoothing 0.1     # ViTs from timm (optional): docs/vit.md

One run = one model, one dataset, one minimizer; its flags are declared in training/settings.py
(CifarSettings), its run directory (--out) receives the records of training/records.py: config.json,
metrics.csv, summary.json, checkpoint.pt, curves.png. torchrun --nproc_per_node=N trains the run
data-parallel at the same global --batch_size (training/distributed.py). --resume continues the run
in --out from checkpoint.pt (on CPU bit for bit the uninterrupted run). Exit statuses: records.ENDINGS
(docs/cli.md).

Defaults are the authors' recipe: SGD(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128, 200 epochs,
lr x0.1 at epochs 50/100/150, random crop with 4 px zero padding + horizontal flip.
"""
import math
import os
import sys
import time

import torch

import data
import models
from training import distributed, lifecycle, records, trackers
from training.cli import autocast_factory, grad_scaler
from training.loop import alpha_columns, evaluate, lr_schedule, stop_signals, train_one_epoch
from training.plots import plot_curves
from training.records import UsageError
from training.settings import CifarSettings, build_parser

ENTRY = "example_cifar.py"


def parser():
    return build_parser(CifarSettings, "Train a CIFAR ResNet/WRN with one minimizer and write run records "
                                       "(config.json, metrics.csv, summary.json, checkpoint.pt, curves.png) to --out.")


def run(argv, claim):
    argv = list(sys.argv[1:] if argv is None else argv)
    processes = distributed.processes_from_environment()
    opened = lifecycle.open_run(CifarSettings, parser(), argv, claim, take_claim=processes.is_main)
    if opened.finished_exit is not None:
        return opened.finished_exit
    settings, out, paths = opened.settings, opened.out, opened.paths
    distributed.check_batch_size(settings.batch_size, processes.world_size)
    device, parallel = distributed.start(settings.device, settings.ascent_gradient, settings.sync_bn)
    scaler = grad_scaler(device, settings.precision)  # --precision fp16 (UsageError where unsupported), else None
    notes = sys.stderr  # one voice under torchrun: rank 0 prints, the others train quietly
    if not parallel.is_main:
        sys.stdout = notes = open(os.devnull, "w")

    # ---- model and minimizer (before loading data, so that bad hyperparameters fail fast)
    torch.manual_seed(settings.seed)
    num_classes = data.num_classes(settings.dataset, settings.data_dir)  # ImageNet: the class folders of train/
    model = models.create_model(settings.model, num_classes).to(device)
    initial_weights = lifecycle.load_initial_weights(settings, model, paths)
    model = distributed.convert_sync_batchnorm(model, parallel, settings.sync_bn)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    minimizer = lifecycle.build_minimizer(settings, model)
    # fp16: the minimizer unscales every pass and skips a non-finite step; its state_dict (the checkpoint) holds
    # the scaler's. Ranks whose ascent passes are local (no_sync) agree on skipping through one all_reduce.
    minimizer.attach_scaler(scaler, all_reduce=parallel.all_reduce_sum if parallel.local_ascent else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(minimizer, lr_schedule(settings))  # the base optimizer's groups
    model_forward, train_forward = distributed.forwards(parallel, model, minimizer.optimizer, settings.compile)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels

    world = (f" x {parallel.world_size} processes (batch {settings.batch_size // parallel.world_size} each, "
             f"{settings.ascent_gradient} ascent gradient)" if parallel.world_size > 1 else "")
    print(f"{settings.minimizer} [{lifecycle.describe_hparams(settings)}] | {settings.model}{initial_weights} on "
          f"{settings.dataset} | "
          f"lr {settings.lr} bs {settings.batch_size} epochs {settings.epochs} {settings.schedule} | "
          f"device {device.type}{world} {settings.precision} | out {out}")
    lifecycle.announce(opened, notes)

    # ---- data (errors here leave no run directory behind)
    dataset = data.load_dataset(settings.dataset, settings.data_dir, device, settings.train_subset,
                                download=settings.download, workers=settings.workers)
    if dataset.train_labels.shape[0] < parallel.world_size:
        raise UsageError(f"{dataset.train_labels.shape[0]} training images cannot be shared by "
                         f"{parallel.world_size} processes")

    # ---- resume: everything is restored before anything is written
    start_epoch, rows, clock = lifecycle.resume_point(opened, device, model, minimizer, scheduler)
    if rows:
        print(f"resuming {out} after epoch {start_epoch - 1}")

    parallel.barrier()  # only rank 0 writes records, once every process has read the run directory as it was
    writes = parallel.is_main
    config = lifecycle.config_record(settings, opened, ENTRY, argv, world_size=parallel.world_size,
                                     num_classes=num_classes)
    if writes:
        records.atomic_write_json(paths[records.CONFIG_FILE], config)
    tracking = trackers.Trackers(out, config, settings.tensorboard and writes, settings.wandb and writes)

    def write_summary(status):
        records.atomic_write_json(paths[records.SUMMARY_FILE],
                                  records.summary_record(status, settings.summary_keys(), rows, clock.seconds()))

    def finish(status):
        if writes:
            write_summary(status)
            if rows:
                plot_curves(os.path.join(out, records.CURVES_FILE), rows,
                            f"{settings.minimizer} {settings.model} {settings.dataset} "
                            f"({', '.join(f'{k}={v}' for k, v in settings.minimizer_hparams.items())})")
                tracking.log_figure(os.path.join(out, records.CURVES_FILE), rows[-1]["epoch"])
            tracking.close()

    if writes:
        write_summary(records.STATUS_RUNNING)
    autocast = autocast_factory(device, settings.precision)
    for epoch in range(start_epoch, settings.epochs + 1):
        if parallel.world_size == 1:
            stop_signals.check()  # a stop signal during the last evaluation: stop before the next epoch
        epoch_start = time.perf_counter()
        lr = minimizer.param_groups[0]["lr"]
        train_loss, train_acc, train_seconds, finite = train_one_epoch(
            epoch, train_forward, minimizer, dataset, settings, device, autocast, parallel)
        alpha_row = alpha_columns(minimizer)   # per-epoch adaptive-alpha statistics (one host read)
        test_loss = test_acc = None            # evaluation reads the weights only: skipping it changes no result
        if finite and (epoch % settings.eval_every == 0 or epoch == settings.epochs):
            with minimizer.evaluation_weights():
                test_loss, test_acc = evaluate(model_forward, model, dataset, settings.channels_last, autocast,
                                               parallel)
            finite = math.isfinite(test_loss)
        if not finite:
            finish(records.STATUS_DIVERGED)
            print(f"diverged: non-finite loss in epoch {epoch} (lr {lr:g}); stopped, summary status 'diverged'",
                  file=notes)
            return records.EXIT_DIVERGED
        scheduler.step()
        rows.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc,
                     "epoch_seconds": round(time.perf_counter() - epoch_start, 3),
                     "images_per_second": round(dataset.train_labels.shape[0] / train_seconds, 1), **alpha_row})
        if writes:  # rank 0's model holds the weights and (after evaluate) the buffers every rank has
            # Checkpoint first: metrics.csv and summary.json are rebuilt from it on resume.
            records.save_checkpoint(paths[records.CHECKPOINT_FILE], lifecycle.checkpoint_state(
                epoch, model, minimizer, scheduler, rows, clock.seconds(), device, settings))
            records.write_metrics_csv(paths[records.METRICS_FILE], rows)
            tracking.log_epoch(rows[-1])
            write_summary(records.STATUS_RUNNING)
        tested = "not evaluated" if test_acc is None else f"test loss {test_loss:.4f} acc {test_acc:6.2f}%"
        print(f"epoch {epoch:3d}/{settings.epochs} lr {lr:.4g} | train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"{tested} | {rows[-1]['epoch_seconds']:.1f}s {rows[-1]['images_per_second']:.0f} img/s", flush=True)

    finish(records.STATUS_COMPLETED)
    best = max((r for r in rows if r["test_acc"] is not None), key=lambda r: r["test_acc"])
    print(f"done: final test acc {rows[-1]['test_acc']:.2f}%, best {best['test_acc']:.2f}% (epoch {best['epoch']}), "
          f"{clock.seconds():.0f}s; records in {out}")
    return records.EXIT_COMPLETED


def main(argv=None):
    return lifecycle.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
