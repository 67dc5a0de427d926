"""Train a CIFAR ResNet/WRN with one minimizer (SGD, SAM, ASAM, Lookbehind-SAM, ...) and keep records.

    python example_cifar.py --minimizer Lookbehind_SAM --k 2 --alpha -1            # paper setting
    python example_cifar.py --minimizer Lookbehind_ASAM --rho 0.5
    python example_cifar.py --dataset CIFAR100 --model resnet50 --minimizer SAM
    python example_cifar.py --dataset CIFAR10_sample --model resnet20 --epochs 10   # offline, CPU

One run = one model, one dataset, one minimizer. The run directory (--out) receives
    config.json    every resolved setting (under its flag name), versions, git commit, command
    metrics.csv    one row per epoch: epoch,lr,train_loss,train_acc,test_loss,test_acc,
                   epoch_seconds,images_per_second (accuracies in percent),
                   alpha_mean,alpha_min,alpha_max (adaptive alpha per epoch; empty without --alpha -1)
    summary.json   status (running | completed | diverged | interrupted | failed), final/best test accuracy, wall time
    checkpoint.pt  model + minimizer + scheduler state after the last finished epoch
    curves.png     learning curves, at the end
torchrun --nproc_per_node=N example_cifar.py ... trains the run data-parallel on N GPUs (or CPU
processes) at the same global --batch_size (training/distributed.py, README "One run on several GPUs").
--resume continues the run in --out from checkpoint.pt; on CPU the continued run is bit-for-bit
the uninterrupted one. Exit status: 0 completed, 2 usage or data error (one line on stderr
starting with "error: ", also when another process is training --out), 3 diverged (non-finite
loss), 4 a record could not be written (disk full: one line naming the file and the errno; the
previous checkpoint is kept), 130 Ctrl-C, 143 SIGTERM/SIGUSR2 (Slurm preemption or time limit: the
run stops at the end of the current training step, keeps the checkpoint of its last finished epoch,
summary status "interrupted"; --resume continues); anything else is a crash.

Training follows the authors' recipe: SGD(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128,
200 epochs, lr x0.1 at epochs 50/100/150, random crop with 4 px zero padding + horizontal flip.
"""
import argparse
import math
import os
import sys
import time

import torch

import data
import minimizers
import models
from training import distributed, records, resume
from training.cli import (Parser, UsageError, add_minimizer_flags, add_runtime_flags, argv_flags,
                          autocast_factory, batch_count, finite_float, flag_adder, integer, lookup,
                          model_name, positive_int, resolve_minimizer_hparams, HPARAM_FLAGS)
from training import trackers
from training.loop import StopRequested, report_stop, alpha_columns, evaluate, lr_schedule, stop_signals, train_one_epoch
from training.plots import plot_curves
from training.records import (EXIT_COMPLETED, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE,
                              EXIT_WRITE_FAILED)

# Settings a resumed run may change; every other one must stay what the run started with.
RESUME_MAY_CHANGE = {"epochs", "device", "data_dir", "download", "out", "resume", "compile", "tensorboard", "wandb"}
# config.json entries that are records, not flags.
RECORD_KEYS = {"minimizer_hparams", "versions", "git_commit", "command", "resume_commands", "ignored_flags",
               "world_size"}


def build_parser():
    parser = Parser(description="Train a CIFAR ResNet/WRN with one minimizer and write run records "
                                "(config.json, metrics.csv, summary.json, checkpoint.pt, curves.png) to --out.",
                    allow_abbrev=False)

    flag = flag_adder(parser)

    flag("dataset", default="CIFAR10", type=lookup(data.canonical_dataset_name),
         help=f"one of {', '.join(data.available_datasets())} (default %(default)s)")
    flag("data_dir", default="./data", help="folder holding (or receiving) the CIFAR 'python version' folders (default %(default)s)")
    flag("download", default=True, action=argparse.BooleanOptionalAction,
         help="download CIFAR-10/100 when missing (default); --no-download fails with instructions instead")
    flag("model", default="resnet34", type=lookup(model_name), help=f"one of {', '.join(models.available_models())} (default %(default)s)")
    flag("lr", default=0.1, type=finite_float(strictly_positive=True), help="initial learning rate (default %(default)s)")
    flag("momentum", default=0.9, type=finite_float(minimum=0.0), help="SGD momentum (default %(default)s)")
    flag("weight_decay", default=5e-4, type=finite_float(minimum=0.0), help="SGD weight decay (default %(default)s)")
    flag("batch_size", default=128, type=batch_count,
         help="training batch size (default %(default)s); under torchrun the global batch, split over the processes")
    flag("epochs", default=200, type=positive_int, help="training epochs (default %(default)s)")
    flag("schedule", default="multistep", choices=["multistep", "cosine"],
         help="multistep (default): lr x gamma at each milestone, as the authors; cosine: to 0 over --epochs")
    flag("milestones", default=[50, 100, 150], type=positive_int, nargs="+", help="multistep milestone epochs (default 50 100 150)")
    flag("warmup_epochs", default=0, type=finite_float(minimum=0.0),
         help="linear lr warm-up over the first W epochs, per step (default 0 = none, the authors' recipe)")
    flag("gamma", default=0.1, type=finite_float(strictly_positive=True), help="multistep decay factor (default %(default)s)")
    add_minimizer_flags(flag)
    flag("seed", default=0, type=integer, help="model init and data order (default %(default)s)")
    add_runtime_flags(flag)
    distributed.add_distributed_flags(flag)
    flag("augment", default=True, action=argparse.BooleanOptionalAction,
         help="random crop (4 px zero padding) + horizontal flip of the training images (default, the "
              "authors' recipe); --no-augment trains on the images as stored")
    flag("train_subset", default=None, type=batch_count, help="train on the first N training images only (quick runs)")
    flag("out", default=None, help="run directory (default: runs/<dataset>_<model>_<minimizer>[_hparams]_s<seed>)")
    flag("resume", default=False, action="store_true", help="continue the run in --out from its checkpoint")
    trackers.add_tracker_flags(flag)
    return parser


def default_run_dir(args):
    hparams = {key: getattr(args, key) for key in HPARAM_FLAGS}
    return os.path.join("runs", records.run_name(args.dataset, args.model, args.minimizer, hparams, args.seed))


def run(argv, claim):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    # ---- run directory: refuse to overwrite a finished run; on --resume take its saved settings
    out = args.out
    if out is None:
        probe = argparse.Namespace(**vars(args))
        resolve_minimizer_hparams(probe)
        out = default_run_dir(probe)
    try:
        if distributed.processes_from_environment().is_main:  # under torchrun rank 0 owns the directory
            claim.take(out)  # one process (group) per run directory, from here to the end
    except (records.RunDirBusy, records.RecordError) as exc:
        raise UsageError(str(exc)) from None
    summary_path, config_path, checkpoint_path = resume.run_paths(out)
    args, saved_config = resume.saved_settings(parser, argv, args, out, RECORD_KEYS,
                                               RESUME_MAY_CHANGE - {"epochs", "data_dir", "compile"})
    args.out = out

    minimizer_hparams, ignored_flags = resolve_minimizer_hparams(args)
    # Under torchrun: this process's device and the process group (a single process otherwise).
    distributed.check_batch_size(args.batch_size, distributed.processes_from_environment().world_size)
    device, parallel = distributed.start(args.device, args.ascent_gradient, args.sync_bn)
    notes = sys.stderr  # notes and warnings; one voice under torchrun: rank 0 prints, the others train quietly
    if not parallel.is_main:
        sys.stdout = notes = open(os.devnull, "w")
    if args.channels_last is None:  # a memory format changes speed, not the model: default to the faster one
        args.channels_last = device.type == "cpu" or (device.type == "cuda" and args.precision == "bf16")
    if saved_config is not None:
        resume.check_unchanged(args, saved_config, RECORD_KEYS, RESUME_MAY_CHANGE)
        summary = resume.read_record(summary_path, "run summary")
        if summary.get("status") == records.STATUS_COMPLETED and summary.get("epochs_completed") == args.epochs:
            print(f"{out}: run already completed ({args.epochs} epochs); nothing to do")
            return EXIT_COMPLETED
        if summary.get("status") == records.STATUS_DIVERGED:
            print(f"{out}: run diverged after {summary.get('epochs_completed')} epochs; not resuming", file=notes)
            return EXIT_DIVERGED

    # ---- model and minimizer (before loading data, so that bad hyperparameters fail fast)
    num_classes = data.DATASETS[args.dataset]["num_classes"]
    torch.manual_seed(args.seed)
    model = models.create_model(args.model, num_classes).to(device)
    model = distributed.convert_sync_batchnorm(model, parallel, args.sync_bn)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    try:
        minimizer = minimizers.create(args.minimizer, model, optimizer, **minimizer_hparams)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    scheduler = torch.optim.lr_scheduler.LambdaLR(minimizer, lr_schedule(args))  # param_groups are the base optimizer's
    # The minimizer holds the plain model (its parameters); the compiled module only runs forwards.
    # In a data-parallel run the training closures call the DDP module around the same model (every
    # backward averages the gradients over the processes) and evaluation calls the plain one.
    model_forward = torch.compile(model) if args.compile else model
    train_forward = parallel.wrap(model)
    if train_forward is not model:
        train_forward = torch.compile(train_forward) if args.compile else train_forward
        parallel.average_gradients_before_step(minimizer.optimizer)  # --ascent_gradient local only
    else:
        train_forward = model_forward
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels

    typed = argv_flags(argv) | {entry.partition("=")[0].strip() for entry in args.hparam}
    described = ", ".join(f"{key}={value}" + ("" if key in typed else " (default)")
                          for key, value in minimizer_hparams.items())
    processes = (f" x {parallel.world_size} processes (batch {args.batch_size // parallel.world_size} each, "
                 f"{args.ascent_gradient} ascent gradient)" if parallel.world_size > 1 else "")
    print(f"{args.minimizer} [{described}] | {args.model} on {args.dataset} | lr {args.lr} bs {args.batch_size} "
          f"epochs {args.epochs} {args.schedule} | device {device.type}{processes} {args.precision} | out {out}")
    for name in ignored_flags:
        print(f"note: --{name} does not apply to {args.minimizer}; ignored", file=notes)

    trackers.require(args.tensorboard, args.wandb)

    # ---- data (errors here leave no run directory behind)
    dataset = data.load_dataset(args.dataset, args.data_dir, device, args.train_subset, download=args.download)
    if dataset.train_labels.shape[0] < parallel.world_size:
        raise UsageError(f"{dataset.train_labels.shape[0]} training images cannot be shared by "
                         f"{parallel.world_size} processes")

    # ---- resume: everything is restored before anything is written
    start_epoch, rows, wall_before = 1, [], 0.0
    if args.resume and os.path.exists(checkpoint_path):
        last_epoch, rows, wall_before = resume.restore_checkpoint(checkpoint_path, device, model, minimizer, scheduler)
        if last_epoch > args.epochs:
            raise UsageError(f"--epochs {args.epochs} is less than the {last_epoch} epochs the run has done")
        start_epoch = last_epoch + 1
        print(f"resuming {out} after epoch {last_epoch}")
    elif args.resume:
        print(f"note: no checkpoint in {out}; starting the run from scratch", file=notes)

    # Only rank 0 writes records, once every process has read the run directory as it was.
    parallel.barrier()
    writes = parallel.is_main
    config = {key: value for key, value in vars(args).items()}
    config["device"] = device.type
    config["world_size"] = parallel.world_size
    config["minimizer_hparams"] = minimizer_hparams
    config["ignored_flags"] = ignored_flags
    config["versions"] = records.versions()
    config["git_commit"] = records.git_commit()
    config["command"] = saved_config["command"] if saved_config else ["example_cifar.py"] + argv
    if saved_config is not None:
        config["resume_commands"] = saved_config.get("resume_commands", []) + [["example_cifar.py"] + argv]
    if writes:
        records.atomic_write_json(config_path, config)
    tracking = trackers.Trackers(out, config, args.tensorboard and writes, args.wandb and writes)  # rank 0 only
    session_start = time.time()

    def wall_seconds():
        return wall_before + time.time() - session_start

    if writes:
        records.atomic_write_json(summary_path, records.summary_record(records.STATUS_RUNNING, vars(args), rows, wall_seconds()))
    autocast = autocast_factory(device, args.precision)
    title = f"{args.minimizer} {args.model} {args.dataset} ({', '.join(f'{k}={v}' for k, v in minimizer_hparams.items())})"

    def finish(status):
        if not writes:
            return
        records.atomic_write_json(summary_path, records.summary_record(status, vars(args), rows, wall_seconds()))
        if rows:
            plot_curves(os.path.join(out, records.CURVES_FILE), rows, title)
            tracking.log_figure(os.path.join(out, records.CURVES_FILE), rows[-1]["epoch"])
        tracking.close()

    for epoch in range(start_epoch, args.epochs + 1):
        if parallel.world_size == 1:
            stop_signals.check()  # a stop signal during the last evaluation: stop before the next epoch
        epoch_start = time.perf_counter()
        lr = minimizer.param_groups[0]["lr"]
        train_loss, train_acc, train_seconds, finite = train_one_epoch(
            epoch, train_forward, minimizer, dataset, args, device, autocast, parallel)
        alpha_row = alpha_columns(minimizer)   # per-epoch adaptive-alpha statistics (one host read)
        if finite:
            with minimizer.evaluation_weights():
                test_loss, test_acc = evaluate(model_forward, model, dataset, args, device, autocast, parallel)
            finite = math.isfinite(test_loss)
        if not finite:
            finish(records.STATUS_DIVERGED)
            print(f"diverged: non-finite loss in epoch {epoch} (lr {lr:g}); stopped, summary status 'diverged'",
                  file=notes)
            return EXIT_DIVERGED
        scheduler.step()
        rows.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc,
                     "epoch_seconds": round(time.perf_counter() - epoch_start, 3),
                     "images_per_second": round(dataset.train_labels.shape[0] / train_seconds, 1), **alpha_row})
        if writes:  # rank 0's model holds the weights and (after evaluate) the buffers every rank has
            # Checkpoint first: metrics.csv and summary.json are rebuilt from it on resume.
            records.save_checkpoint(checkpoint_path, {
                "epoch": epoch, "model": model.state_dict(),
                "minimizer": minimizer.state_dict(), "scheduler": scheduler.state_dict(), "metrics": rows,
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
                "wall_seconds": wall_seconds()})
            records.write_metrics_csv(os.path.join(out, records.METRICS_FILE), rows)
            tracking.log_epoch(rows[-1])
            records.atomic_write_json(summary_path, records.summary_record(records.STATUS_RUNNING, vars(args), rows, wall_seconds()))
        print(f"epoch {epoch:3d}/{args.epochs} lr {lr:.4g} | train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"test loss {test_loss:.4f} acc {test_acc:6.2f}% | {rows[-1]['epoch_seconds']:.1f}s "
              f"{rows[-1]['images_per_second']:.0f} img/s", flush=True)

    finish(records.STATUS_COMPLETED)
    best = max(rows, key=lambda r: r["test_acc"])
    print(f"done: final test acc {rows[-1]['test_acc']:.2f}%, best {best['test_acc']:.2f}% (epoch {best['epoch']}), "
          f"{wall_seconds():.0f}s; records in {out}")
    return EXIT_COMPLETED


def main(argv=None):
    claim = records.RunDirClaim()
    stop_signals.install()
    try:
        exit_code = run(argv, claim)
        distributed.close(synchronize=True)  # every rank got here: they leave the process group together
        return exit_code
    except (UsageError, data.DataError) as exc:
        claim.abandon_if_unused()
        message = " ".join(str(exc).split())  # one line
        if distributed.processes_from_environment().is_main:  # under torchrun every rank has the same error
            print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except StopRequested as stop:
        return report_stop(claim, stop)
    except records.WriteFailed as exc:
        # atomic_write removed its temporary file; the previous version of the file is untouched.
        claim.mark_summary(records.STATUS_FAILED)
        print(f"error: {records.write_failure_text(exc)}; the previous checkpoint is kept; free space, then "
              f"continue with --resume (same --out)", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        # A second Ctrl-C: the last checkpoint is intact (atomic writes), the summary still says "running".
        print("interrupted; continue with --resume (same --out)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        distributed.close()
        stop_signals.restore()
        claim.release()


if __name__ == "__main__":
    sys.exit(main())
