"""Run records: the one home of the run-directory contract.

A run directory holds
    config.json    every resolved setting (under its flag name), versions, git commit, command
    metrics.csv    one row per epoch, columns METRIC_COLUMNS (accuracies in percent)
    summary.json   status (one of STATUSES), final/best test accuracy, wall time, key settings
    checkpoint.pt  everything needed to continue the run after its last finished epoch
    curves.png     learning curves, at the end

Training scripts, the sweep runner, collect, the benchmark and the tests import names, file
formats, statuses and exit codes from here; nothing else defines them.
"""
import csv
import io
import json
import os
import platform
import subprocess
import tempfile

# ---- file names inside a run directory
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
CURVES_FILE = "curves.png"
# continual-learning runs (example_continual.py) add
ACCURACY_MATRIX_FILE = "accuracy_matrix.csv"  # R[i, j] = test acc (%) on task j after tasks 0..i
CONTINUAL_FIGURE_FILE = "continual.png"       # heatmap of R + accuracy on each task over the sequence

# ---- exit codes of a training run (documented in the README)
EXIT_COMPLETED = 0
EXIT_USAGE = 2        # bad flags, missing data, unusable run directory: one line on stderr
EXIT_DIVERGED = 3     # a non-finite loss: the run stopped cleanly, summary status "diverged"
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): the last checkpoint is intact; --resume continues

# ---- statuses in summary.json (written by the training script itself)
STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"
STATUSES = (STATUS_RUNNING, STATUS_COMPLETED, STATUS_DIVERGED)

# Adaptive alpha (Lookbehind with alpha = -1): mean/min/max over the epoch's slow-weight updates of
# the per-tensor alphas; empty for every other run.
ALPHA_COLUMNS = ["alpha_mean", "alpha_min", "alpha_max"]
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_seconds", "images_per_second"] + ALPHA_COLUMNS
CHECKPOINT_FORMAT = 1
# summary.json keys of a continual run (training/continual.py defines them)
CONTINUAL_METRICS = ("average_accuracy", "forgetting", "learning_accuracy")


def continual_metric_columns(num_tasks):
    """metrics.csv of a continual run: one row per epoch of the sequence (epoch counts over all
    tasks), test_loss/test_acc averaged over the tasks trained so far, then every task's accuracy."""
    return (["epoch", "task", "task_epoch"] + METRIC_COLUMNS[1:]
            + [task_accuracy_column(j) for j in range(num_tasks)])


def task_accuracy_column(task):
    return f"acc_task{task}"


def accuracy_matrix_text(matrix_rows, num_tasks):
    """accuracy_matrix.csv: header after_task,task0..task{T-1}; row i = R[i, :] (finished tasks only)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["after_task"] + [f"task{j}" for j in range(num_tasks)])
    for i, row in enumerate(matrix_rows):
        writer.writerow([i] + [f"{value:.4f}" for value in row])
    return text.getvalue()


def read_accuracy_matrix(path):
    """The rows of an accuracy_matrix.csv as lists of floats; RecordError if unreadable."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        return [[float(value) for value in row[1:]] for row in rows[1:]]
    except (OSError, ValueError, IndexError) as exc:
        raise RecordError(f"cannot read accuracy matrix {path} ({exc})") from None


class RecordError(Exception):
    """A record that cannot be read (missing, corrupt): reported as one line."""


# ----------------------------------------------------------------------------------- writing

def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, payload):
    """Write `payload` (bytes, or str as UTF-8) to `path` atomically.

    The bytes go to a uniquely named temporary file in the same directory, are fsync'd and the
    file is renamed over `path`: a reader (or a crash) never sees a half-written file, and the
    previous version survives until the new one is complete. The file gets the mode a plain
    open(path, "w") would give (0o666 & ~umask; mkstemp's is 0o600). On any error the temporary
    file is removed and the exception propagates (the previous version of `path` is untouched)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def metrics_csv_text(rows, columns=METRIC_COLUMNS):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def write_metrics_csv(path, rows, columns=METRIC_COLUMNS):
    atomic_write(path, metrics_csv_text(rows, columns))


def save_checkpoint(path, state):
    import torch
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write(path, buffer.getvalue())


# ----------------------------------------------------------------------------------- reading

def read_json(path, what="record"):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise RecordError(f"cannot read {what} {path} ({exc})") from None


def load_checkpoint(path, map_location):
    """The checkpoint dict at `path`; RecordError (file untouched) if it is unreadable."""
    import torch
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle/zip errors: all mean "unusable"
        raise RecordError(f"cannot read checkpoint {path}: {one_line(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RecordError(f"cannot read checkpoint {path}: not a checkpoint of this project")
    return state


def one_line(exc):
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


# ----------------------------------------------------------------------------------- contents

def summary_record(status, config, rows, wall_seconds, extra=None):
    """summary.json's contents from the per-epoch rows and the run's resolved settings."""
    best = max(rows, key=lambda r: r["test_acc"]) if rows else None
    record = {
        "status": status,
        "epochs_completed": len(rows),
        "epochs": config.get("epochs"),
        "final_test_acc": rows[-1]["test_acc"] if rows else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "final_test_loss": rows[-1]["test_loss"] if rows else None,
        "wall_seconds": round(wall_seconds, 3),
    }
    record.update({key: config.get(key) for key in ("dataset", "model", "minimizer", "rho", "k", "alpha", "seed")})
    record.update(extra or {})
    return record


def run_name(dataset, model, minimizer, hparams, seed, keys=("rho", "k", "alpha")):
    """Default run directory name: <dataset>_<model>_<minimizer>[_rho..][_k..][_alpha..]_s<seed>."""
    name = f"{dataset}_{model}_{minimizer}"
    for key in keys:
        if hparams.get(key) is not None:
            name += f"_{key}{hparams[key]:g}"
    return f"{name}_s{seed}"


def git_commit():
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, text=True, timeout=10)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions():
    import numpy
    import torch
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__}
