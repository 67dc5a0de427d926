"""Trained models out of run directories, for the post-training analyses (noisy weights, sharpness).

A run directory (example_cifar.py's records) gives the model at its evaluation weights: the model
and minimizer are rebuilt from config.json, checkpoint.pt is loaded into both, and the weights are
taken inside ``minimizer.evaluation_weights()`` (Lookbehind's slow weights even when the checkpoint
was written in the middle of an outer step, as with minibatch switching). Everything a user can get
wrong (no checkpoint, a checkpoint of another model, missing data) is a training.records.UsageError.

Only trained runs are analysed: a run whose status (records.resolve_status, the status collect reports:
summary.json, the run directory's lock, sweep_status.json) is not records.STATUS_COMPLETED -- diverged,
interrupted, crashed, running, ... -- is refused with one line naming it and its status, unless
include_incomplete (the analyses' --include-incomplete), which analyses its last checkpoint. Either way
TrainedRun.status and .epochs_completed (the checkpoint's epochs) go into every row of the analyses' CSVs.
"""
import argparse
import math
import os
from dataclasses import dataclass

import torch

import data
import models
from scripts.common import display_minimizer
from training import lifecycle, records
from training.records import UsageError
from training.settings import CifarSettings


@dataclass
class TrainedRun:
    run_dir: str
    config: dict
    model: torch.nn.Module      # evaluation weights, eval mode, on the requested device
    label: str                  # the minimizer setting, for tables and legends
    seed: int
    epochs_completed: int       # epochs finished when the checkpoint was written
    status: str                 # records.STATUS_COMPLETED unless include_incomplete let another through


# Lookbehind's settings in the paper's headline runs (k = 2, adaptive alpha): other values go into the label.
PAPER_LOOKBEHIND = {"k": 2, "alpha": -1}


def run_label(config):
    """'Lookbehind-SAM', 'Lookbehind-SAM alpha=0.5', 'Lookbehind-SAM k=5 + switching', ... from a run's
    config.json: a Lookbehind run whose k or alpha is not the paper's (2, adaptive) says which, so that the
    analyses of a study with several of them keep them apart."""
    label = display_minimizer(config.get("minimizer"))
    hparams = config.get("minimizer_hparams") or {}
    if str(config.get("minimizer", "")).startswith("Lookbehind"):
        for key, paper in PAPER_LOOKBEHIND.items():
            if key in hparams and float(hparams[key]) != paper:
                label += f" {key}={float(hparams[key]):g}"
    if hparams.get("minibatch_switching"):
        label += " + switching"
    return label


def run_status(run_dir):
    """The run's status as collect reports it (records.resolve_status); records.STATUS_INVALID if its
    summary.json or sweep_status.json cannot be read."""
    found = {}
    for name in (records.SUMMARY_FILE, records.SWEEP_RECORD_FILE):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            try:
                found[name] = records.read_json(path).get("status")
            except (records.RecordError, AttributeError):   # unreadable, or not a JSON object
                return records.STATUS_INVALID
    return records.resolve_status(found.get(records.SUMMARY_FILE), records.run_dir_locked(run_dir),
                                  found.get(records.SWEEP_RECORD_FILE))


def load_run(run_dir, device, channels_last=False, include_incomplete=False):
    config_path = os.path.join(run_dir, records.CONFIG_FILE)
    checkpoint_path = os.path.join(run_dir, records.CHECKPOINT_FILE)
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such run directory")
    if not os.path.isfile(checkpoint_path):
        raise UsageError(f"{run_dir}: no {records.CHECKPOINT_FILE} (not a run directory, or no epoch finished yet)")
    status = run_status(run_dir)
    if status != records.STATUS_COMPLETED and not include_incomplete:
        raise UsageError(f"{run_dir}: the run is {status}, not {records.STATUS_COMPLETED}: its checkpoint is not "
                         f"a trained model (--include-incomplete analyses it anyway)")
    try:
        config = records.read_json(config_path, "run config")
        state = records.load_checkpoint(checkpoint_path, device)
    except records.RecordError as exc:
        raise UsageError(str(exc)) from None
    # The run's settings, checked as a resumed run checks them, and its base optimizer and minimizer as it built them.
    settings = lifecycle.settings_from_config(CifarSettings, config, config_path)
    # Recorded since ImageNet (its classes are folders); older CIFAR runs: the dataset's.
    num_classes = config.get("num_classes") or data.DATASETS[settings.dataset]["num_classes"]
    model = models.create_model(settings.model, num_classes).to(device)
    minimizer = lifecycle.build_minimizer(settings, model)
    try:
        model.load_state_dict(state["model"])
        minimizer.load_state_dict(state["minimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UsageError(f"{checkpoint_path} does not hold a {config['model']} trained with {config['minimizer']} "
                         f"as config.json says ({records.one_line(exc)})") from None
    with minimizer.evaluation_weights():
        weights = {key: value.clone() for key, value in model.state_dict().items()}
    trained = models.create_model(config["model"], num_classes).to(device)
    trained.load_state_dict(weights)
    if channels_last:
        trained = trained.to(memory_format=torch.channels_last)
    trained.eval()
    return TrainedRun(run_dir, config, trained, run_label(config), config.get("seed"), int(state["epoch"]), status)


def run_note(trained):
    """' (diverged, 3 epochs)' for a run analysed with --include-incomplete; '' for a completed one."""
    if trained.status == records.STATUS_COMPLETED:
        return ""
    return f" ({trained.status}, {trained.epochs_completed} epoch{'s' * (trained.epochs_completed != 1)})"


def load_data(config, device, data_dir=None):
    """The run's dataset (same training subset) on `device`; data_dir overrides the run's."""
    try:
        return data.load_dataset(config["dataset"], data_dir or config.get("data_dir", "./data"), device,
                                 config.get("train_subset"), download=False)
    except data.DataError as exc:
        raise UsageError(f"{exc} (pass --data_dir to point at the run's data)") from None


def nonnegative_grid(name):
    """argparse type: a finite number >= 0 (noise levels, radii)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{name}: must be a finite number >= 0, got {text}")
        return value
    return parse


def load_runs(run_dirs, device, channels_last, data_dir=None, include_incomplete=False):
    """Every run, checked before any work starts (so bad input fails fast, before any output).
    Runs sharing a dataset configuration share one loaded dataset. Returns [(TrainedRun, Dataset)]."""
    runs = [load_run(run_dir, device, channels_last, include_incomplete) for run_dir in run_dirs]
    cache, out = {}, []
    for run in runs:
        key = (run.config["dataset"], data_dir or run.config.get("data_dir"), run.config.get("train_subset"))
        if key not in cache:
            cache[key] = load_data(run.config, device, data_dir)
        out.append((run, cache[key]))
    return out


# ------------------------------------------------------------------------ command-line pieces
def add_common_flags(parser, default_out):
    """Flags both analysis scripts take: run directories, data, device/precision, outputs."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of example_cifar.py")
    parser.add_argument("--data_dir", default=None, help="dataset folder (default: the one each run trained on)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="default auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="forward passes in fp32 (default) or under bf16 autocast")
    parser.add_argument("--channels_last", default=None, action=argparse.BooleanOptionalAction,
                        help="channels_last memory format (default: on on the CPU, as in training)")
    parser.add_argument("--out", default=default_out, help="CSV to write (default %(default)s); the figure "
                        "goes next to it with the extension .png")
    parser.add_argument("--include-incomplete", "--include_incomplete", dest="include_incomplete", action="store_true",
                        help="also analyse runs that did not complete (diverged, interrupted, crashed, running: "
                             "their last checkpoint); by default they are refused. Every CSV row records the run's "
                             "status and epoch (epochs finished at its checkpoint) either way")


def figure_path(csv_path):
    return os.path.splitext(csv_path)[0] + ".png"
