"""Lifelong (continual) learning: train one model on a sequence of tasks with one minimizer.

    python example_continual.py --benchmark split_cifar100 --minimizer Lookbehind_SAM --k 2 --alpha -1
    python example_continual.py --benchmark split_cifar10 --minimizer SAM               # 5 tasks x 2 classes
    python example_continual.py --benchmark split_cifar10 --dataset CIFAR10_sample \\
        --model reduced_resnet18 --minimizer SGD --num_tasks 2                           # offline, CPU

A benchmark cuts a dataset into tasks of disjoint classes (split_cifar10: 5 x 2, split_cifar100:
20 x 5); the class split and task order come from --task_seed (default: --seed). Each task is
trained for --epochs_per_task epochs, in order, with no replay. Multi-head by default (one output
head per task, task identity known at train and test time: a task's logits only); --single_head is
class-incremental (all classes' logits, no task identity). After every epoch the model is tested
on every task, which gives the accuracy matrix R[i, j] (accuracy on task j after training on tasks
0..i) and the metrics A (average accuracy), F (forgetting) and LA (learning accuracy), see
training/continual.py.

The flags are declared in training/settings.py (ContinualSettings); the run directory receives the
records of example_cifar.py (metrics.csv with one row per epoch of the sequence and every task's
accuracy, summary.json with A/F/LA), plus accuracy_matrix.csv and continual.png. --resume continues
at the task and epoch where the run stopped (on CPU bit for bit); the exit statuses are example_cifar.py's.

Defaults follow the usual continual-learning setting (GEM / A-GEM / Mirzadeh et al. 2020): the
reduced ResNet-18 (20 base filters), one epoch per task, batch 10, SGD lr 0.03 without momentum or
weight decay. The paper's exact protocol is not published; these are our reading, all flags.
"""
import math
import os
import sys
import time

import torch

import data
import models
from training import continual, lifecycle, records, trackers
from training.cli import autocast_factory, grad_scaler, resolve_device
from training.loop import evaluate, stop_signals, train_one_epoch
from training.plots import plot_continual
from training.records import UsageError
from training.settings import ContinualSettings, build_parser

ENTRY = "example_continual.py"


def parser():
    return build_parser(ContinualSettings, "Train one model on a sequence of tasks (split-CIFAR) with one minimizer "
                                           "and write run records, the accuracy matrix and A/F/LA to --out.")


def run(argv, claim):
    argv = list(sys.argv[1:] if argv is None else argv)
    opened = lifecycle.open_run(ContinualSettings, parser(), argv, claim)
    if opened.finished_exit is not None:
        return opened.finished_exit
    settings, out, paths = opened.settings, opened.out, opened.paths
    device = resolve_device(settings.device)
    scaler = grad_scaler(device, settings.precision)  # --precision fp16 (UsageError where unsupported), else None
    task_classes = settings.task_classes()

    # ---- model and minimizer (before loading data, so that bad hyperparameters fail fast)
    torch.manual_seed(settings.seed)
    try:
        model = models.create_model(settings.model, data.DATASETS[settings.dataset]["num_classes"],
                                    **({} if settings.width is None else {"width": settings.width}))
    except TypeError:
        raise UsageError(f"--width does not apply to --model {settings.model}") from None
    model = model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    minimizer = lifecycle.build_minimizer(settings, model)
    minimizer.attach_scaler(scaler)  # fp16: unscales every pass, skips a non-finite step; saved in its state_dict
    scheduler = torch.optim.lr_scheduler.LambdaLR(minimizer, continual.sequence_lr_factor(
        settings.epochs_per_task, settings.num_tasks, settings.schedule, settings.lr_reset, settings.task_lr_decay))
    model_forward = torch.compile(model) if settings.compile else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    heads_kind = "single" if settings.single_head else "multi"
    print(f"{settings.minimizer} [{lifecycle.describe_hparams(settings)}] | {settings.model} on {settings.benchmark} "
          f"({settings.dataset}, {settings.num_tasks} tasks, {heads_kind}-head) | lr {settings.lr} "
          f"bs {settings.batch_size} {settings.epochs_per_task} epoch(s)/task | device {device.type} "
          f"{settings.precision} | out {out}")
    lifecycle.announce(opened)

    # ---- data (errors here leave no run directory behind)
    dataset = data.load_dataset(settings.dataset, settings.data_dir, device, download=settings.download)
    tasks = continual.split_dataset(dataset, task_classes, not settings.single_head,
                                    settings.train_per_task, settings.test_per_task)
    del dataset
    heads = [model_forward if settings.single_head else continual.TaskHead(model_forward, task.classes, device)
             for task in tasks]

    # ---- resume: everything is restored before anything is written
    start_epoch, rows, clock = lifecycle.resume_point(opened, device, model, minimizer, scheduler)
    if rows:
        done = start_epoch - 1
        print(f"resuming {out} after epoch {done} (task {(done - 1) // settings.epochs_per_task + 1}, "
              f"epoch {(done - 1) % settings.epochs_per_task + 1} of it)")

    config = lifecycle.config_record(settings, opened, ENTRY, argv, epochs=settings.epochs, task_classes=task_classes)
    records.atomic_write_json(paths[records.CONFIG_FILE], config)
    columns = records.continual_metric_columns(settings.num_tasks)
    tracking = trackers.Trackers(out, config, settings.tensorboard, settings.wandb, columns)
    autocast = autocast_factory(device, settings.precision)
    title = (f"{settings.minimizer} {settings.model} {settings.benchmark} {heads_kind}-head "
             f"({', '.join(f'{k}={v}' for k, v in settings.minimizer_hparams.items())}) seed {settings.seed}")

    def write_records(status):
        matrix_rows = continual.matrix_rows_of(rows, settings.epochs_per_task, settings.num_tasks)
        records.atomic_write(os.path.join(out, records.ACCURACY_MATRIX_FILE),
                             records.accuracy_matrix_text(matrix_rows, settings.num_tasks))
        records.write_metrics_csv(paths[records.METRICS_FILE], rows, columns)
        extra = {"num_tasks": settings.num_tasks, "tasks_completed": len(matrix_rows),
                 "single_head": settings.single_head, **continual.sequence_metrics(matrix_rows)}
        records.atomic_write_json(paths[records.SUMMARY_FILE], records.summary_record(
            status, settings.summary_keys(), rows, clock.seconds(), extra))
        return matrix_rows

    def finish(status):
        matrix_rows = write_records(status)
        if rows:
            figure = os.path.join(out, records.CONTINUAL_FIGURE_FILE)
            plot_continual(figure, matrix_rows, rows, settings.num_tasks, settings.epochs_per_task, title)
            tracking.log_figure(figure, rows[-1]["epoch"], "continual")
        tracking.close()
        return matrix_rows

    write_records(records.STATUS_RUNNING)
    for epoch in range(start_epoch, settings.epochs + 1):
        task = tasks[(epoch - 1) // settings.epochs_per_task]
        task_epoch = (epoch - 1) % settings.epochs_per_task + 1
        epoch_start = time.perf_counter()
        lr = minimizer.param_groups[0]["lr"]
        # the data order is drawn from (seed, epoch of the sequence): a resumed run sees the same batches
        train_loss, train_acc, train_seconds, finite = train_one_epoch(
            epoch, heads[task.index], minimizer, task.dataset, settings, device, autocast)
        results = []
        if finite:
            with minimizer.evaluation_weights():
                results = [evaluate(heads[t.index], model, t.dataset, settings.channels_last, autocast) for t in tasks]
            finite = all(math.isfinite(loss) for loss, _ in results)
            stop_signals.check()  # a stop signal during the evaluation: stop before this epoch's checkpoint
        if not finite:
            finish(records.STATUS_DIVERGED)
            print(f"diverged: non-finite loss in task {task.index + 1} epoch {task_epoch} (lr {lr:g}); stopped, "
                  f"summary status 'diverged'", file=sys.stderr)
            return records.EXIT_DIVERGED
        scheduler.step()
        seen = results[:task.index + 1]  # test loss / accuracy: mean over the tasks trained so far
        row = {"epoch": epoch, "task": task.index, "task_epoch": task_epoch, "lr": lr,
               "train_loss": train_loss, "train_acc": train_acc,
               "test_loss": sum(loss for loss, _ in seen) / len(seen), "test_acc": sum(acc for _, acc in seen) / len(seen),
               "epoch_seconds": round(time.perf_counter() - epoch_start, 3),
               "images_per_second": round(task.dataset.train_labels.shape[0] / train_seconds, 1)}
        row.update({records.task_accuracy_column(t.index): acc for t, (_, acc) in zip(tasks, results)})
        rows.append(row)
        # Checkpoint first: the other records are rebuilt from its rows on resume.
        records.save_checkpoint(paths[records.CHECKPOINT_FILE], lifecycle.checkpoint_state(
            epoch, model, minimizer, scheduler, rows, clock.seconds(), device, settings))
        write_records(records.STATUS_RUNNING)
        tracking.log_epoch(row)
        accuracies = " ".join(f"{acc:5.1f}" for _, acc in results)
        print(f"task {task.index + 1}/{settings.num_tasks} epoch {task_epoch}/{settings.epochs_per_task} lr {lr:.4g} | "
              f"train loss {train_loss:.4f} acc {train_acc:6.2f}% | test acc per task [{accuracies}] | "
              f"{row['epoch_seconds']:.1f}s {row['images_per_second']:.0f} img/s", flush=True)

    metrics = continual.sequence_metrics(finish(records.STATUS_COMPLETED))
    print(f"done: A {metrics['average_accuracy']:.2f}%  F {metrics['forgetting'] or 0:.2f}%  "
          f"LA {metrics['learning_accuracy']:.2f}%  ({clock.seconds():.0f}s); records in {out}")
    return records.EXIT_COMPLETED


def main(argv=None):
    return lifecycle.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
