"""Train a CIFAR ResNet/WRN with one minimizer (SGD, SAM, ASAM, Lookbehind-SAM, ...) and keep records.

    python example_cifar.py --minimizer Lookbehind_SAM --k 2 --alpha -1            # paper setting
    python example_cifar.py --minimizer Lookbehind_ASAM --rho 0.5
    python example_cifar.py --dataset CIFAR100 --model resnet50 --minimizer SAM
    python example_cifar.py --dataset CIFAR10_sample --model resnet20 --epochs 10   # offline, CPU

One run = one model, one dataset, one minimizer. The run directory (--out) receives
    config.json    every resolved setting (under its flag name), versions, git commit, command
    metrics.csv    one row per epoch: epoch,lr,train_loss,train_acc,test_loss,test_acc,
                   epoch_seconds,images_per_second (accuracies in percent)
    summary.json   status (running | completed | diverged), final/best test accuracy, wall time
    checkpoint.pt  model + minimizer + scheduler state after the last finished epoch
    curves.png     learning curves, at the end
--resume continues the run in --out from checkpoint.pt; on CPU the continued run is bit-for-bit
the uninterrupted one. Exit status: 0 completed, 2 usage or data error (one line on stderr
starting with "error: "), 3 diverged (non-finite loss), anything else is a crash.

Training follows the authors' recipe: SGD(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128,
200 epochs, lr x0.1 at epochs 50/100/150, random crop with 4 px zero padding + horizontal flip.
"""
import argparse
import bisect
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

import data
import minimizers
import models

EXIT_COMPLETED, EXIT_USAGE, EXIT_DIVERGED = 0, 2, 3
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_seconds", "images_per_second"]
LOG_EVERY = 20          # batches between reads of the loss (the only host syncs while training)
EVAL_BATCH_SIZE = 512   # evaluation batch size only changes speed, not results
CHECKPOINT_FORMAT = 1

# Minimizer hyperparameters that have their own flag; each is passed to minimizers.create only
# if the chosen minimizer accepts it (minimizers.hparams(name)), else it is ignored with a note.
HPARAM_FLAGS = ("rho", "eta", "k", "alpha", "bn_policy", "passes", "minibatch_switching",
                "descent_gradient", "split_rho")
# Settings a resumed run may change; every other one must stay what the run started with.
RESUME_MAY_CHANGE = {"epochs", "device", "data_dir", "download", "out", "resume", "compile"}
# config.json entries that are records, not flags.
RECORD_KEYS = {"minimizer_hparams", "versions", "git_commit", "command", "resume_commands", "ignored_flags"}


class UsageError(Exception):
    """Bad command-line input or run-directory state: reported as one line, exit status 2."""


# ----------------------------------------------------------------------------------- command line

class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage block; we want one line
        raise UsageError(message)


def finite_float(minimum=None, strictly_positive=False):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if strictly_positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    return parse


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def batch_count(text):
    """An image count for a training batch or subset: BatchNorm needs 2+ images per batch."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (BatchNorm needs two images per batch), got {text}")
    return value


def integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def lookup(function):
    """argparse type from a name lookup that raises ValueError (dataset, model, minimizer)."""
    def parse(text):
        try:
            return function(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def model_name(text):
    key = text.lower().replace("-", "_")
    if key not in models.available_models():
        raise ValueError(f"unknown model {text!r}; available: {', '.join(models.available_models())}")
    return key


def build_parser():
    parser = Parser(description="Train a CIFAR ResNet/WRN with one minimizer and write run records "
                                "(config.json, metrics.csv, summary.json, checkpoint.pt, curves.png) to --out.",
                    allow_abbrev=False)

    def flag(name, **kwargs):
        # The authors' underscore names, plus dash aliases (--weight-decay == --weight_decay).
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*names, dest=name, **kwargs)

    flag("dataset", default="CIFAR10", type=lookup(data.canonical_dataset_name),
         help=f"one of {', '.join(data.available_datasets())} (default %(default)s)")
    flag("data_dir", default="./data", help="folder holding (or receiving) the CIFAR 'python version' folders (default %(default)s)")
    flag("download", default=True, action=argparse.BooleanOptionalAction,
         help="download CIFAR-10/100 when missing (default); --no-download fails with instructions instead")
    flag("model", default="resnet34", type=lookup(model_name), help=f"one of {', '.join(models.available_models())} (default %(default)s)")
    flag("minimizer", default="Lookbehind_SAM", type=lookup(minimizers.canonical_name),
         help=f"one of {', '.join(minimizers.available())} (case-insensitive; default %(default)s)")
    flag("lr", default=0.1, type=finite_float(strictly_positive=True), help="initial learning rate (default %(default)s)")
    flag("momentum", default=0.9, type=finite_float(minimum=0.0), help="SGD momentum (default %(default)s)")
    flag("weight_decay", default=5e-4, type=finite_float(minimum=0.0), help="SGD weight decay (default %(default)s)")
    flag("batch_size", default=128, type=batch_count, help="training batch size (default %(default)s)")
    flag("epochs", default=200, type=positive_int, help="training epochs (default %(default)s)")
    flag("schedule", default="multistep", choices=["multistep", "cosine"],
         help="multistep (default): lr x gamma at each milestone, as the authors; cosine: to 0 over --epochs")
    flag("milestones", default=[50, 100, 150], type=positive_int, nargs="+", help="multistep milestone epochs (default 50 100 150)")
    flag("gamma", default=0.1, type=finite_float(strictly_positive=True), help="multistep decay factor (default %(default)s)")
    flag("rho", default=None, type=finite_float(),
         help="perturbation radius (default: the library's, 0.05 for SAM-type, 0.5 for ASAM-type)")
    flag("eta", default=None, type=finite_float(), help="ASAM's eta (library default 0.01)")
    flag("k", default=None, type=integer,
         help="steps per outer step (library default: 2 Lookbehind/Multistep, 5 Lookahead)")
    flag("alpha", default=None, type=finite_float(),
         help="slow-weight step size in (0, 1], -1 = adaptive (library default 0.5)")
    flag("bn_policy", default=None, choices=list(minimizers.BN_POLICIES),
         help="BatchNorm statistics from every pass or the clean pass only (library default: every)")
    flag("passes", default=None, choices=list(minimizers.PASSES),
         help="Lookbehind: k+1 shared gradient evaluations or the authors' literal 2k (default: shared)")
    flag("minibatch_switching", default=None, action=argparse.BooleanOptionalAction,
         help="Lookbehind: a new minibatch for every inner step (default: off)")
    flag("descent_gradient", default=None, choices=list(minimizers.DESCENT_GRADIENTS),
         help="Multistep: descend with the last or the mean of the k ascent gradients (default: last)")
    flag("split_rho", default=None, action=argparse.BooleanOptionalAction,
         help="Multistep: split rho over the k ascent steps (default: off)")
    flag("hparam", default=[], action="append", metavar="KEY=VALUE",
         help="any other hyperparameter of the minimizer (repeatable), typed like its default")
    flag("seed", default=0, type=integer, help="model init and data order (default %(default)s)")
    flag("device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
         help="auto (default): cuda, else mps, else cpu")
    flag("precision", default="fp32", choices=["fp32", "bf16"], help="fp32 (default), or bf16 autocast around the forward pass")
    flag("channels_last", default=None, action=argparse.BooleanOptionalAction,
         help="model and inputs in channels_last memory format (default: on where it is faster: on the CPU "
              "(measured 1.2-1.3x for a forward+backward, results/benchmarks.md) and on CUDA with bf16)")
    flag("compile", default=False, action="store_true", help="torch.compile the model")
    flag("train_subset", default=None, type=batch_count, help="train on the first N training images only (quick runs)")
    flag("out", default=None, help="run directory (default: runs/<dataset>_<model>_<minimizer>[_hparams]_s<seed>)")
    flag("resume", default=False, action="store_true", help="continue the run in --out from its checkpoint")
    return parser


def parse_hparam_overrides(entries, defaults):
    """--hparam KEY=VALUE entries, each converted to the type of the library default (no eval)."""
    out = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--hparam expects KEY=VALUE, got {entry!r}")
        if key in HPARAM_FLAGS:
            raise UsageError(f"use --{key} instead of --hparam {key}=...")
        if key not in defaults:
            raise UsageError(f"--hparam {key}: not a hyperparameter of this minimizer "
                             f"(accepts: {', '.join(defaults) or 'none'})")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = text.lower() in ("true", "1")
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            elif isinstance(default, str):
                value = text
            else:  # default None: the most specific of int, float, string
                value = text
                for convert in (int, float):
                    try:
                        value = convert(text)
                        break
                    except ValueError:
                        pass
        except ValueError:
            raise UsageError(f"--hparam {key}: expected a value like {default!r}, got {text!r}") from None
        out[key] = value
    return out


def resolve_minimizer_hparams(args):
    """Merge the library defaults with the flags the minimizer accepts.

    Returns (hparams for minimizers.create, flags given but not accepted). Afterwards each
    hyperparameter flag in args holds the value used, or None if the minimizer has no such
    hyperparameter, so config.json records exactly what ran."""
    defaults = minimizers.hparams(args.minimizer)
    given = {name: getattr(args, name) for name in HPARAM_FLAGS if getattr(args, name) is not None}
    ignored = sorted(name for name in given if name not in defaults)
    resolved = dict(defaults)
    resolved.update({name: value for name, value in given.items() if name in defaults})
    resolved.update(parse_hparam_overrides(args.hparam, defaults))
    for name in HPARAM_FLAGS:
        setattr(args, name, resolved.get(name))
    return resolved, ignored


def resolve_device(requested):
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: MPS is not available on this machine")
    return torch.device(requested)


def default_run_dir(args):
    name = f"{args.dataset}_{args.model}_{args.minimizer}"
    for key in ("rho", "k", "alpha"):
        if getattr(args, key) is not None:
            name += f"_{key}{getattr(args, key):g}"
    return os.path.join("runs", f"{name}_s{args.seed}")


# ----------------------------------------------------------------------------------- run records

def atomic_write_bytes(path, payload):
    """Write to a temporary file next to `path`, then rename: a reader (or a crash) never sees a
    half-written file, and the previous version survives until the new one is complete."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_metrics_csv(path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode())


def save_checkpoint(path, state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(path, rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train (clean pass)")
    ax_loss.plot(epochs, [r["test_loss"] for r in rows], label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], label="train (clean pass)")
    ax_acc.plot(epochs, [r["test_acc"] for r in rows], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_loss.set_yscale("log")  # early losses can be orders of magnitude above the final ones
    ax_loss.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax_loss.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
        for line in ax.lines:
            line.set_marker("o" if len(rows) <= 30 else "")
            line.set_markersize(3)
        ax.grid(alpha=0.3)
        ax.legend()
    if rows:
        best = max(rows, key=lambda r: r["test_acc"])
        ax_acc.annotate(f"best {best['test_acc']:.2f}%", (best["epoch"], best["test_acc"]),
                        textcoords="offset points", xytext=(0, -15), ha="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def git_commit():
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, text=True, timeout=10)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def summary_record(status, args, rows, wall_seconds):
    best = max(rows, key=lambda r: r["test_acc"]) if rows else None
    return {
        "status": status,
        "epochs_completed": len(rows),
        "epochs": args.epochs,
        "final_test_acc": rows[-1]["test_acc"] if rows else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "final_test_loss": rows[-1]["test_loss"] if rows else None,
        "wall_seconds": round(wall_seconds, 3),
        "dataset": args.dataset, "model": args.model, "minimizer": args.minimizer,
        "rho": args.rho, "k": args.k, "alpha": args.alpha, "seed": args.seed,
    }


def read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} {path} ({exc})") from None


# ----------------------------------------------------------------------------------- training

def train_one_epoch(epoch, model_forward, minimizer, dataset, args, device, autocast):
    """One epoch, one minimizer.step per batch. Returns (loss, acc %, seconds, finite).

    Loss sum and correct count accumulate on the device; they are read (one host sync)
    every LOG_EVERY batches and at the end, which is also where a non-finite loss is caught."""
    minimizer.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = logged = 0
    num_batches = data.num_train_batches(dataset, args.batch_size)
    bar = tqdm(total=num_batches * args.batch_size if num_batches else 0, unit="img", unit_scale=True,
               leave=False, dynamic_ncols=True, disable=None, desc=f"epoch {epoch}/{args.epochs}")
    start = time.perf_counter()
    batches = data.train_batches(dataset, args.batch_size, args.seed, epoch, args.channels_last)
    for index, (inputs, targets) in enumerate(batches, start=1):
        clean_outputs = []

        def closure(objective=None):
            with autocast():
                outputs = model_forward(inputs)
            outputs = outputs.float()  # loss (and any objective) in fp32
            loss = F.cross_entropy(outputs, targets)
            (loss if objective is None else objective(outputs, targets)).backward()
            if not clean_outputs:  # the first call is the clean pass: it gives train accuracy
                clean_outputs.append(outputs.detach())
            return loss.detach()

        loss = minimizer.step(closure)  # the clean-pass loss
        loss_sum += loss * targets.shape[0]
        correct += (clean_outputs[0].argmax(dim=1) == targets).sum()
        seen += targets.shape[0]
        if index % LOG_EVERY == 0 or index == num_batches:
            loss_total, correct_total = torch.stack([loss_sum, correct.float()]).tolist()
            if not math.isfinite(loss_total):
                bar.close()
                return loss_total / seen, 100.0 * correct_total / seen, time.perf_counter() - start, False
            elapsed = time.perf_counter() - start
            bar.update(seen - logged)
            logged = seen
            bar.set_postfix(loss=f"{loss_total / seen:.4f}", acc=f"{100.0 * correct_total / seen:.2f}%",
                            img_s=f"{seen / elapsed:.0f}")
    bar.close()
    return loss_total / seen, 100.0 * correct_total / seen, time.perf_counter() - start, True


@torch.no_grad()
def evaluate(model_forward, model, dataset, args, device, autocast):
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for inputs, targets in data.test_batches(dataset, EVAL_BATCH_SIZE, args.channels_last):
        with autocast():
            outputs = model_forward(inputs)
        outputs = outputs.float()
        loss_sum += F.cross_entropy(outputs, targets, reduction="sum")
        correct += (outputs.argmax(dim=1) == targets).sum()
    model.train()
    count = dataset.test_labels.shape[0]
    loss_total, correct_total = torch.stack([loss_sum, correct.float()]).tolist()
    return loss_total / count, 100.0 * correct_total / count


def lr_schedule(args):
    """LR factor after `epochs_done` epochs (LambdaLR's last_epoch), as a closed form so that a
    resumed run gets the same rates: multistep = MultiStepLR, cosine = CosineAnnealingLR(eta_min=0)."""
    milestones = sorted(args.milestones)
    if args.schedule == "multistep":
        return lambda epochs_done: args.gamma ** bisect.bisect_right(milestones, epochs_done)
    return lambda epochs_done: 0.5 * (1.0 + math.cos(math.pi * min(epochs_done, args.epochs) / args.epochs))


def load_checkpoint(path, device, model, minimizer, scheduler):
    """Restore state from checkpoint.pt; UsageError (file untouched) if it is unreadable."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a checkpoint of this script")
        model.load_state_dict(state["model"])
        minimizer.load_state_dict(state["minimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        rows = [dict(row) for row in state["metrics"]]
        return int(state["epoch"]), rows, float(state["wall_seconds"])
    except Exception as exc:  # pickle/zip errors, missing keys, shape mismatches: all mean "unusable"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"cannot resume from {path}: {type(exc).__name__}: {reason} "
                         f"(the file is left as it is; use a new --out to start over)") from None


def run(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)

    # ---- run directory: refuse to overwrite a finished run; on --resume take its saved settings
    out = args.out
    saved_config = None
    if out is None:
        probe = argparse.Namespace(**vars(args))
        resolve_minimizer_hparams(probe)
        out = default_run_dir(probe)
    summary_path, config_path = os.path.join(out, "summary.json"), os.path.join(out, "config.json")
    checkpoint_path = os.path.join(out, "checkpoint.pt")
    if os.path.exists(summary_path):
        if not args.resume:
            status = read_json(summary_path, "run summary").get("status")
            raise UsageError(f"{out} already holds a run (status {status}); pass --resume to continue it "
                             f"or choose another --out")
        saved_config = read_json(config_path, "run config")
        flags = {key: value for key, value in saved_config.items()
                 if key not in RECORD_KEYS and key not in RESUME_MAY_CHANGE - {"epochs", "data_dir", "compile"}}
        # argparse only fills in defaults for attributes the namespace lacks, so this gives the saved
        # settings overridden by whatever was typed now.
        typed_hparams = args.hparam
        flags["hparam"] = list(flags.get("hparam") or [])
        args = parser.parse_args(argv, namespace=argparse.Namespace(**flags))
        # --hparam appends: typed entries replace the saved list instead of being added to it.
        args.hparam = typed_hparams or flags["hparam"]
    args.out = out

    minimizer_hparams, ignored_flags = resolve_minimizer_hparams(args)
    device = resolve_device(args.device)
    if args.channels_last is None:  # a memory format changes speed, not the model: default to the faster one
        args.channels_last = device.type == "cpu" or (device.type == "cuda" and args.precision == "bf16")
    if saved_config is not None:
        changed = [key for key, value in saved_config.items()
                   if key not in RECORD_KEYS and key not in RESUME_MAY_CHANGE and getattr(args, key, value) != value]
        if changed:
            key = changed[0]
            raise UsageError(f"--{key} {getattr(args, key)} differs from the run's {saved_config[key]}; a resumed run "
                             f"keeps its settings (only {', '.join(sorted(RESUME_MAY_CHANGE - {'out', 'resume'}))} "
                             f"may change)")
        summary = read_json(summary_path, "run summary")
        if summary.get("status") == "completed" and summary.get("epochs_completed") == args.epochs:
            print(f"{out}: run already completed ({args.epochs} epochs); nothing to do")
            return EXIT_COMPLETED
        if summary.get("status") == "diverged":
            print(f"{out}: run diverged after {summary.get('epochs_completed')} epochs; not resuming", file=sys.stderr)
            return EXIT_DIVERGED

    # ---- model and minimizer (before loading data, so that bad hyperparameters fail fast)
    num_classes = data.DATASETS[args.dataset]["num_classes"]
    torch.manual_seed(args.seed)
    model = models.create_model(args.model, num_classes).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    try:
        minimizer = minimizers.create(args.minimizer, model, optimizer, **minimizer_hparams)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    scheduler = torch.optim.lr_scheduler.LambdaLR(minimizer.optimizer, lr_schedule(args))
    # The minimizer holds the plain model (its parameters); the compiled module only runs forwards.
    model_forward = torch.compile(model) if args.compile else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels

    typed = argv_flags(argv) | {entry.partition("=")[0].strip() for entry in args.hparam}
    described = ", ".join(f"{key}={value}" + ("" if key in typed else " (default)")
                          for key, value in minimizer_hparams.items())
    print(f"{args.minimizer} [{described}] | {args.model} on {args.dataset} | lr {args.lr} bs {args.batch_size} "
          f"epochs {args.epochs} {args.schedule} | device {device.type} {args.precision} | out {out}")
    for name in ignored_flags:
        print(f"note: --{name} does not apply to {args.minimizer}; ignored", file=sys.stderr)

    # ---- data (errors here leave no run directory behind)
    dataset = data.load_dataset(args.dataset, args.data_dir, device, args.train_subset, download=args.download)

    # ---- resume: everything is restored before anything is written
    start_epoch, rows, wall_before = 1, [], 0.0
    if args.resume and os.path.exists(checkpoint_path):
        last_epoch, rows, wall_before = load_checkpoint(checkpoint_path, device, model, minimizer, scheduler)
        if last_epoch > args.epochs:
            raise UsageError(f"--epochs {args.epochs} is less than the {last_epoch} epochs the run has done")
        start_epoch = last_epoch + 1
        print(f"resuming {out} after epoch {last_epoch}")
    elif args.resume:
        print(f"note: no checkpoint in {out}; starting the run from scratch", file=sys.stderr)

    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the run directory {out}: {exc.strerror or exc}") from None
    config = {key: value for key, value in vars(args).items()}
    config["device"] = device.type
    config["minimizer_hparams"] = minimizer_hparams
    config["ignored_flags"] = ignored_flags
    config["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "torchvision": torchvision.__version__, "numpy": np.__version__}
    config["git_commit"] = git_commit()
    config["command"] = saved_config["command"] if saved_config else ["example_cifar.py"] + argv
    if saved_config is not None:
        config["resume_commands"] = saved_config.get("resume_commands", []) + [["example_cifar.py"] + argv]
    atomic_write_json(config_path, config)
    session_start = time.time()

    def wall_seconds():
        return wall_before + time.time() - session_start

    atomic_write_json(summary_path, summary_record("running", args, rows, wall_seconds()))
    autocast = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.precision == "bf16"
                else nullcontext)
    title = f"{args.minimizer} {args.model} {args.dataset} ({', '.join(f'{k}={v}' for k, v in minimizer_hparams.items())})"

    def finish(status):
        atomic_write_json(summary_path, summary_record(status, args, rows, wall_seconds()))
        if rows:
            plot_curves(os.path.join(out, "curves.png"), rows, title)

    for epoch in range(start_epoch, args.epochs + 1):
        epoch_start = time.perf_counter()
        lr = minimizer.optimizer.param_groups[0]["lr"]
        train_loss, train_acc, train_seconds, finite = train_one_epoch(
            epoch, model_forward, minimizer, dataset, args, device, autocast)
        if finite:
            with minimizer.evaluation_weights():
                test_loss, test_acc = evaluate(model_forward, model, dataset, args, device, autocast)
            finite = math.isfinite(test_loss)
        if not finite:
            finish("diverged")
            print(f"diverged: non-finite loss in epoch {epoch} (lr {lr:g}); stopped, summary status 'diverged'",
                  file=sys.stderr)
            return EXIT_DIVERGED
        scheduler.step()
        rows.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc,
                     "epoch_seconds": round(time.perf_counter() - epoch_start, 3),
                     "images_per_second": round(dataset.train_labels.shape[0] / train_seconds, 1)})
        # Checkpoint first: metrics.csv and summary.json are rebuilt from it on resume.
        save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "model": model.state_dict(),
            "minimizer": minimizer.state_dict(), "scheduler": scheduler.state_dict(), "metrics": rows,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "wall_seconds": wall_seconds()})
        write_metrics_csv(os.path.join(out, "metrics.csv"), rows)
        atomic_write_json(summary_path, summary_record("running", args, rows, wall_seconds()))
        print(f"epoch {epoch:3d}/{args.epochs} lr {lr:.4g} | train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"test loss {test_loss:.4f} acc {test_acc:6.2f}% | {rows[-1]['epoch_seconds']:.1f}s "
              f"{rows[-1]['images_per_second']:.0f} img/s", flush=True)

    finish("completed")
    best = max(rows, key=lambda r: r["test_acc"])
    print(f"done: final test acc {rows[-1]['test_acc']:.2f}%, best {best['test_acc']:.2f}% (epoch {best['epoch']}), "
          f"{wall_seconds():.0f}s; records in {out}")
    return EXIT_COMPLETED


def argv_flags(argv):
    """Flag names (underscore form) typed on the command line."""
    return {arg.split("=")[0].lstrip("-").replace("-", "_").removeprefix("no_") for arg in argv if arg.startswith("--")}


def main(argv=None):
    try:
        return run(argv)
    except (UsageError, data.DataError) as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # The last checkpoint is intact (atomic writes) and the summary still says "running".
        print("interrupted; continue with --resume (same --out)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
