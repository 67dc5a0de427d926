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

The run directory (--out) receives the records of example_cifar.py (config.json, metrics.csv with
one row per epoch of the sequence and every task's accuracy, summary.json with A/F/LA,
checkpoint.pt), plus accuracy_matrix.csv and continual.png (heatmap of R, accuracy on each task
over the sequence). --resume continues at the task and epoch where the run stopped; on CPU the
continued run is bit-for-bit the uninterrupted one. Exit status: 0 completed, 2 usage or data
error (one line on stderr starting with "error: "), 3 diverged, 4 a record could not be written,
130 Ctrl-C, 143 SIGTERM/SIGUSR2 (Slurm preemption or time limit); a signal stops the run at the end
of its training step with summary status "interrupted", and --resume continues it.

Defaults follow the usual continual-learning setting (GEM / A-GEM / Mirzadeh et al. 2020): the
reduced ResNet-18 (20 base filters), one epoch per task, batch 10, SGD lr 0.03 without momentum or
weight decay. The paper's exact protocol is not published; these are our reading, all flags.
"""
import argparse
import math
import os
import sys
import time
from types import SimpleNamespace

import torch

import data
import minimizers
import models
from training import continual, records, resume, trackers
from training.cli import (Parser, UsageError, add_minimizer_flags, add_runtime_flags, argv_flags,
                          autocast_factory, batch_count, finite_float, flag_adder, integer, lookup,
                          model_name, positive_int, resolve_device, resolve_minimizer_hparams, HPARAM_FLAGS)
from training.loop import StopRequested, report_stop, evaluate, stop_signals, train_one_epoch
from training.plots import plot_continual
from training.records import EXIT_COMPLETED, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE

# Settings a resumed run may change; every other one must stay what the run started with.
RESUME_MAY_CHANGE = {"device", "data_dir", "download", "out", "resume", "compile"}
# config.json entries that are records, not flags.
RECORD_KEYS = {"minimizer_hparams", "versions", "git_commit", "command", "resume_commands", "ignored_flags",
               "task_classes", "epochs"}


def build_parser():
    parser = Parser(description="Train one model on a sequence of tasks (split-CIFAR) with one minimizer and "
                                "write run records, the accuracy matrix and A/F/LA to --out.",
                    allow_abbrev=False)
    flag = flag_adder(parser)
    flag("benchmark", default="split_cifar10", type=lookup(continual.benchmark_name),
         help=f"one of {', '.join(continual.BENCHMARKS)} (default %(default)s)")
    flag("dataset", default=None, type=lookup(data.canonical_dataset_name),
         help="base dataset: split_cifar10 takes CIFAR10 (default) or CIFAR10_sample (offline), split_cifar100 CIFAR100")
    flag("data_dir", default="./data", help="folder holding (or receiving) the CIFAR 'python version' folders (default %(default)s)")
    flag("download", default=True, action=argparse.BooleanOptionalAction,
         help="download CIFAR-10/100 when missing (default); --no-download fails with instructions instead")
    flag("num_tasks", default=None, type=positive_int,
         help="tasks in the sequence (default: all, 5 for split_cifar10, 20 for split_cifar100); fewer = the first ones")
    flag("classes_per_task", default=None, type=positive_int,
         help="classes in each task (default: 2 for split_cifar10, 5 for split_cifar100)")
    flag("task_seed", default=None, type=integer, help="seed of the class split and task order (default: --seed)")
    flag("single_head", default=False, action="store_true",
         help="class-incremental: one head over all classes, no task identity (default: multi-head)")
    flag("train_per_task", default=None, type=batch_count, help="train on N images of each task only (class-balanced, the first of each class)")
    flag("test_per_task", default=None, type=positive_int, help="test on N test images of each task only (class-balanced, the first of each class)")
    flag("model", default="reduced_resnet18", type=lookup(model_name),
         help=f"one of {', '.join(models.available_models())} (default %(default)s)")
    flag("width", default=None, type=positive_int,
         help="base filters of a ResNet (reduced_resnet18: 20, resnet18/34/50: 64 when not given)")
    flag("epochs_per_task", default=1, type=positive_int, help="training epochs on each task (default %(default)s)")
    flag("batch_size", default=10, type=batch_count, help="training batch size (default %(default)s)")
    flag("lr", default=0.03, type=finite_float(strictly_positive=True), help="learning rate (default %(default)s)")
    flag("momentum", default=0.0, type=finite_float(minimum=0.0), help="SGD momentum (default %(default)s)")
    flag("weight_decay", default=0.0, type=finite_float(minimum=0.0), help="SGD weight decay (default %(default)s)")
    flag("schedule", default="constant", choices=["constant", "cosine"],
         help="LR shape over each task (or the whole sequence with --no-lr_reset): constant (default) or cosine to 0")
    flag("lr_reset", default=True, action=argparse.BooleanOptionalAction,
         help="restart the LR schedule at every task (default); --no-lr_reset: one schedule over the whole sequence")
    flag("task_lr_decay", default=1.0, type=finite_float(strictly_positive=True),
         help="multiply task t's LR by this ** t (Mirzadeh et al.'s per-task decay; default 1 = none)")
    add_minimizer_flags(flag, default="SGD")
    flag("seed", default=0, type=integer, help="model init and data order (default %(default)s)")
    add_runtime_flags(flag)
    flag("out", default=None, help="run directory (default: runs/continual/<benchmark>_<model>_<minimizer>[_hparams]_s<seed>)")
    flag("resume", default=False, action="store_true", help="continue the run in --out from its checkpoint")
    trackers.add_tracker_flags(flag)
    return parser


def resolve_benchmark(args):
    """Fill in --dataset, --num_tasks, --task_seed from the benchmark; UsageError if they do not fit."""
    spec = continual.BENCHMARKS[args.benchmark]
    if args.dataset is None:
        args.dataset = spec["datasets"][0]
    if args.dataset not in spec["datasets"]:
        raise UsageError(f"--benchmark {args.benchmark} is built from {' or '.join(spec['datasets'])}, "
                         f"not --dataset {args.dataset}")
    if args.classes_per_task is None:
        args.classes_per_task = spec["classes_per_task"]
    if args.num_tasks is None:
        args.num_tasks = data.DATASETS[args.dataset]["num_classes"] // args.classes_per_task
    if args.task_seed is None:
        args.task_seed = args.seed
    try:
        return continual.task_classes(data.DATASETS[args.dataset]["num_classes"], args.classes_per_task,
                                      args.num_tasks, args.task_seed)
    except ValueError as exc:
        raise UsageError(f"--num_tasks {args.num_tasks} --classes_per_task {args.classes_per_task}: {exc}") from None


def matrix_rows_of(rows, epochs_per_task, num_tasks):
    """Rows of R so far: every task's accuracy at the last epoch of each finished task."""
    return [[row[records.task_accuracy_column(j)] for j in range(num_tasks)]
            for row in rows if row["task_epoch"] == epochs_per_task]


def run(argv, claim):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    # ---- run directory: refuse to overwrite a finished run; on --resume take its saved settings
    out = args.out
    if out is None:
        probe = argparse.Namespace(**vars(args))
        resolve_minimizer_hparams(probe)
        hparams = {key: getattr(probe, key) for key in HPARAM_FLAGS}
        out = os.path.join("runs", "continual", records.run_name(args.benchmark, args.model, args.minimizer,
                                                                  hparams, args.seed))
    try:
        claim.take(out)  # one process per run directory, from here to the end
    except (records.RunDirBusy, records.RecordError) as exc:
        raise UsageError(str(exc)) from None
    summary_path, config_path, checkpoint_path = resume.run_paths(out)
    args, saved_config = resume.saved_settings(parser, argv, args, out, RECORD_KEYS,
                                               RESUME_MAY_CHANGE - {"data_dir", "compile"})
    args.out = out

    task_classes = resolve_benchmark(args)
    minimizer_hparams, ignored_flags = resolve_minimizer_hparams(args)
    device = resolve_device(args.device)
    if args.channels_last is None:  # a memory format changes speed, not the model: default to the faster one
        args.channels_last = device.type == "cpu" or (device.type == "cuda" and args.precision == "bf16")
    total_epochs = args.num_tasks * args.epochs_per_task
    if saved_config is not None:
        resume.check_unchanged(args, saved_config, RECORD_KEYS, RESUME_MAY_CHANGE)
        summary = resume.read_record(summary_path, "run summary")
        if summary.get("status") == records.STATUS_COMPLETED:
            print(f"{out}: run already completed ({total_epochs} epochs); nothing to do")
            return EXIT_COMPLETED
        if summary.get("status") == records.STATUS_DIVERGED:
            print(f"{out}: run diverged after {summary.get('epochs_completed')} epochs; not resuming", file=sys.stderr)
            return EXIT_DIVERGED

    # ---- model and minimizer (before loading data, so that bad hyperparameters fail fast)
    num_classes = data.DATASETS[args.dataset]["num_classes"]
    torch.manual_seed(args.seed)
    try:
        model = models.create_model(args.model, num_classes, **({} if args.width is None else {"width": args.width}))
    except TypeError:
        raise UsageError(f"--width does not apply to --model {args.model}") from None
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    try:
        minimizer = minimizers.create(args.minimizer, model, optimizer, **minimizer_hparams)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    scheduler = torch.optim.lr_scheduler.LambdaLR(minimizer, continual.sequence_lr_factor(
        args.epochs_per_task, args.num_tasks, args.schedule, args.lr_reset, args.task_lr_decay))
    model_forward = torch.compile(model) if args.compile else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    typed = argv_flags(argv) | {entry.partition("=")[0].strip() for entry in args.hparam}
    described = ", ".join(f"{key}={value}" + ("" if key in typed else " (default)")
                          for key, value in minimizer_hparams.items())
    print(f"{args.minimizer} [{described}] | {args.model} on {args.benchmark} ({args.dataset}, {args.num_tasks} tasks, "
          f"{'single' if args.single_head else 'multi'}-head) | lr {args.lr} bs {args.batch_size} "
          f"{args.epochs_per_task} epoch(s)/task | device {device.type} {args.precision} | out {out}")
    for name in ignored_flags:
        print(f"note: --{name} does not apply to {args.minimizer}; ignored", file=sys.stderr)

    trackers.require(args.tensorboard, args.wandb)

    # ---- data (errors here leave no run directory behind)
    dataset = data.load_dataset(args.dataset, args.data_dir, device, download=args.download)
    tasks = continual.split_dataset(dataset, task_classes, not args.single_head,
                                    args.train_per_task, args.test_per_task)
    del dataset
    heads = [model_forward if args.single_head else continual.TaskHead(model_forward, task.classes, device)
             for task in tasks]

    # ---- resume: everything is restored before anything is written
    start_epoch, rows, wall_before = 1, [], 0.0
    if args.resume and os.path.exists(checkpoint_path):
        last_epoch, rows, wall_before = resume.restore_checkpoint(checkpoint_path, device, model, minimizer, scheduler)
        start_epoch = last_epoch + 1
        print(f"resuming {out} after epoch {last_epoch} (task {(last_epoch - 1) // args.epochs_per_task}, "
              f"epoch {(last_epoch - 1) % args.epochs_per_task + 1} of it)")
    elif args.resume:
        print(f"note: no checkpoint in {out}; starting the run from scratch", file=sys.stderr)

    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the run directory {out}: {exc.strerror or exc}") from None
    config = dict(vars(args))
    config.update(device=device.type, epochs=total_epochs, task_classes=task_classes,
                  minimizer_hparams=minimizer_hparams, ignored_flags=ignored_flags,
                  versions=records.versions(), git_commit=records.git_commit(),
                  command=saved_config["command"] if saved_config else ["example_continual.py"] + argv)
    if saved_config is not None:
        config["resume_commands"] = saved_config.get("resume_commands", []) + [["example_continual.py"] + argv]
    records.atomic_write_json(config_path, config)
    columns = records.continual_metric_columns(args.num_tasks)
    tracking = trackers.Trackers(out, config, args.tensorboard, args.wandb, columns)
    session_start = time.time()
    autocast = autocast_factory(device, args.precision)
    # train_one_epoch reads batch_size, seed, channels_last, and epochs (for its progress bar)
    loop_args = SimpleNamespace(batch_size=args.batch_size, seed=args.seed, channels_last=args.channels_last,
                                epochs=total_epochs)
    matrix_path = os.path.join(out, records.ACCURACY_MATRIX_FILE)
    title = (f"{args.minimizer} {args.model} {args.benchmark} {'single' if args.single_head else 'multi'}-head "
             f"({', '.join(f'{k}={v}' for k, v in minimizer_hparams.items())}) seed {args.seed}")

    def write_records(status):
        matrix_rows = matrix_rows_of(rows, args.epochs_per_task, args.num_tasks)
        records.atomic_write(matrix_path, records.accuracy_matrix_text(matrix_rows, args.num_tasks))
        records.write_metrics_csv(os.path.join(out, records.METRICS_FILE), rows, columns)
        extra = {"benchmark": args.benchmark, "num_tasks": args.num_tasks, "tasks_completed": len(matrix_rows),
                 "single_head": args.single_head, **continual.sequence_metrics(matrix_rows)}
        records.atomic_write_json(summary_path, records.summary_record(
            status, config, rows, wall_before + time.time() - session_start, extra))
        return matrix_rows

    write_records(records.STATUS_RUNNING)

    def finish(status):
        matrix_rows = write_records(status)
        if rows:
            figure = os.path.join(out, records.CONTINUAL_FIGURE_FILE)
            plot_continual(figure, matrix_rows, rows, args.num_tasks, args.epochs_per_task, title)
            tracking.log_figure(figure, rows[-1]["epoch"], "continual")
        tracking.close()
        return matrix_rows

    for epoch in range(start_epoch, total_epochs + 1):
        task = tasks[(epoch - 1) // args.epochs_per_task]
        task_epoch = (epoch - 1) % args.epochs_per_task + 1
        epoch_start = time.perf_counter()
        lr = minimizer.param_groups[0]["lr"]
        # the data order is drawn from (seed, epoch of the sequence): a resumed run sees the same batches
        train_loss, train_acc, train_seconds, finite = train_one_epoch(
            epoch, heads[task.index], minimizer, task.dataset, loop_args, device, autocast)
        results = []
        if finite:
            with minimizer.evaluation_weights():
                results = [evaluate(heads[t.index], model, t.dataset, loop_args, device, autocast) for t in tasks]
            finite = all(math.isfinite(loss) for loss, _ in results)
            stop_signals.check()  # a stop signal during the evaluation: stop before this epoch's checkpoint
        if not finite:
            finish(records.STATUS_DIVERGED)
            print(f"diverged: non-finite loss in task {task.index} epoch {task_epoch} (lr {lr:g}); stopped, "
                  f"summary status 'diverged'", file=sys.stderr)
            return EXIT_DIVERGED
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
        records.save_checkpoint(checkpoint_path, {
            "epoch": epoch, "model": model.state_dict(),
            "minimizer": minimizer.state_dict(), "scheduler": scheduler.state_dict(), "metrics": rows,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "wall_seconds": wall_before + time.time() - session_start})
        write_records(records.STATUS_RUNNING)
        tracking.log_epoch(row)
        accuracies = " ".join(f"{acc:5.1f}" for _, acc in results)
        print(f"task {task.index}/{args.num_tasks - 1} epoch {task_epoch}/{args.epochs_per_task} lr {lr:.4g} | "
              f"train loss {train_loss:.4f} acc {train_acc:6.2f}% | test acc per task [{accuracies}] | "
              f"{row['epoch_seconds']:.1f}s {row['images_per_second']:.0f} img/s", flush=True)

    matrix_rows = finish(records.STATUS_COMPLETED)
    metrics = continual.sequence_metrics(matrix_rows)
    print(f"done: A {metrics['average_accuracy']:.2f}%  F {metrics['forgetting'] or 0:.2f}%  "
          f"LA {metrics['learning_accuracy']:.2f}%  ({wall_before + time.time() - session_start:.0f}s); records in {out}")
    return EXIT_COMPLETED


def main(argv=None):
    claim = records.RunDirClaim()
    stop_signals.install()
    try:
        return run(argv, claim)
    except (UsageError, data.DataError) as exc:
        claim.abandon_if_unused()
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except StopRequested as stop:
        return report_stop(claim, stop)
    except records.WriteFailed as exc:
        # atomic_write removed its temporary file; the previous version of the file is untouched.
        claim.mark_summary(records.STATUS_FAILED)
        print(f"error: {records.write_failure_text(exc)}; the previous checkpoint is kept; free space, then "
              f"continue with --resume (same --out)", file=sys.stderr)
        return records.EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print("interrupted; continue with --resume (same --out)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop_signals.restore()
        claim.release()


if __name__ == "__main__":
    sys.exit(main())
