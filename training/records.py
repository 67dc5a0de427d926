"""Run records: the one home of the run-directory contract.

A run directory holds
    config.json    every resolved setting (under its flag name), versions, git commit, command
    metrics.csv    one row per epoch, columns METRIC_COLUMNS (accuracies in percent)
    summary.json   status (one of STATUSES), final/best test accuracy, wall time, key settings
    checkpoint.pt  everything needed to continue the run after its last finished epoch
    curves.png     learning curves, at the end
    run.lock       the OS lock (fcntl.flock) of the process training the run: one process per run
                   directory; the kernel drops it when that process ends, however it ends
    sweep_status.json  (runs started by scripts.launch.sweep) the sweep's record of the last attempt

Training scripts, the sweep runner, collect, the benchmark and the tests import names, file
formats, statuses and exit codes from here; nothing else defines them.
"""
import csv
import errno
import fcntl
import io
import json
import os
import platform
import socket
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
# A directory holding any of these is a run: only --resume continues it (a new run never overwrites one).
RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE)
LOCK_FILE = "run.lock"
SWEEP_RECORD_FILE = "sweep_status.json"   # per run, written by scripts.launch.sweep
SWEEP_FILE = "sweep.json"                 # per sweep directory: which grid its runs belong to
RUN_LOG_FILE = "train.log"                # per run started by scripts.launch.sweep: stdout+stderr of every attempt

# ---- exit codes of a training run (ENDINGS below is their documentation: docs/cli.md)
EXIT_COMPLETED = 0
EXIT_USAGE = 2        # bad flags, missing data, unusable or busy run directory: one line on stderr
EXIT_DIVERGED = 3     # a non-finite loss: the run stopped cleanly, summary status "diverged"
EXIT_WRITE_FAILED = 4  # a record could not be written (disk full, quota, I/O error): one line naming
                       # the file and the errno; the temporary file is removed, the previous checkpoint kept
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): the last checkpoint is intact; --resume continues
EXIT_TERMINATED = 143   # SIGTERM or SIGUSR2 (Slurm preemption / time limit): stopped at the end of the
                        # current training step, the last epoch's checkpoint intact; --resume continues

# ---- statuses. summary.json's (written by the training script itself):
STATUS_RUNNING = "running"          # being trained (or killed without a chance to say so: see resolve_status)
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"        # a non-finite loss; a result, not a failure
STATUS_INTERRUPTED = "interrupted"  # stopped by a signal at a safe point; --resume continues it
STATUS_FAILED = "failed"            # stopped by an error writing its records (EXIT_WRITE_FAILED)
STATUSES = (STATUS_RUNNING, STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED, STATUS_FAILED)
# ... and the further ones of the sweep's record and of collect:
STATUS_CRASHED = "crashed"                  # any other non-zero exit (a traceback, killed by SIGKILL/OOM)
STATUS_RUNNING_ELSEWHERE = "running elsewhere"  # another process holds the run directory's lock
STATUS_INCOMPLETE = "incomplete"            # records without a status (nothing says what happened)
STATUS_INVALID = "invalid"                  # unreadable records
FINISHED_STATUSES = (STATUS_COMPLETED, STATUS_DIVERGED)  # what a sweep does not run again by default

# What the sweep records for each exit code of a training run; anything else is STATUS_CRASHED.
STATUS_OF_EXIT = {
    EXIT_COMPLETED: STATUS_COMPLETED,
    EXIT_DIVERGED: STATUS_DIVERGED,
    EXIT_WRITE_FAILED: STATUS_FAILED,
    EXIT_USAGE: STATUS_FAILED,
    EXIT_INTERRUPTED: STATUS_INTERRUPTED,
    EXIT_TERMINATED: STATUS_INTERRUPTED,
}


def status_of_exit(code):
    return STATUS_OF_EXIT.get(code, STATUS_CRASHED)


# The one table of endings (docs/cli.md is generated from it): exit status, summary.json's status, the
# status the sweep and collect report, and what happened.
ENDINGS = (
    (EXIT_COMPLETED, STATUS_COMPLETED, STATUS_COMPLETED, "all epochs done"),
    (EXIT_USAGE, None, STATUS_FAILED, "bad flags or settings, missing data, an unusable run directory, or another "
                                      f"process trains it (then: {STATUS_RUNNING_ELSEWHERE}); one line `error: ...`, "
                                      "nothing written"),
    (EXIT_DIVERGED, STATUS_DIVERGED, STATUS_DIVERGED, "a non-finite loss: a result, not retried unless "
                                                      "`--retry-diverged`"),
    (EXIT_WRITE_FAILED, STATUS_FAILED, STATUS_FAILED, "a record could not be written (disk full): one line naming the "
                                                      "file and errno; the previous checkpoint is kept"),
    (EXIT_INTERRUPTED, STATUS_INTERRUPTED, STATUS_INTERRUPTED, "Ctrl-C: stopped at the end of the current step (a "
                                                               "second Ctrl-C: at once); `--resume` continues"),
    (EXIT_TERMINATED, STATUS_INTERRUPTED, STATUS_INTERRUPTED, "SIGTERM or SIGUSR2 (Slurm time limit, preemption): "
                                                              "stopped at the end of the current step; `--resume` "
                                                              "continues"),
    ("other", STATUS_RUNNING, STATUS_CRASHED, "any other exit (a traceback, SIGKILL, out of memory): the process died "
                                           "without recording it"),
    (None, STATUS_RUNNING, STATUS_RUNNING, "a process holds the run directory's lock now"),
    (None, None, STATUS_INCOMPLETE, "nothing says what happened (e.g. a Slurm task still queued)"),
)

# Adaptive alpha (Lookbehind with alpha = -1): mean/min/max over the epoch's slow-weight updates of
# the per-tensor alphas; empty for every other run.
ALPHA_COLUMNS = ["alpha_mean", "alpha_min", "alpha_max"]
METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                  "epoch_seconds", "images_per_second"] + ALPHA_COLUMNS
CHECKPOINT_FORMAT = 1
# The minimizer hyperparameters a run is named by (run_name) and that its summary and collect's tables
# show: the paper's three. RUN_KEYS: the settings that identify a run in summary.json and runs.csv.
NAMED_HPARAMS = ("rho", "k", "alpha")
RUN_KEYS = ("dataset", "model", "minimizer", *NAMED_HPARAMS, "seed")
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


class UsageError(Exception):
    """The one user error of the training scripts and of scripts/: bad flags or settings, missing or
    unusable input, a busy or foreign run directory. Reported as one line "error: ..." on stderr with
    exit status EXIT_USAGE, no traceback, nothing written."""


class RecordError(Exception):
    """A record that cannot be read (missing, corrupt): reported as one line."""


class WriteFailed(OSError):
    """A record could not be written (ENOSPC, EDQUOT, EIO, ...); .filename is the record's path."""


class RunDirBusy(Exception):
    """Another process holds the run directory's lock."""


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise WriteFailed(exc.errno, exc.strerror, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            # f.write's OSError names no file: name the record it was for
            raise WriteFailed(exc.errno, exc.strerror, path) from exc
        raise


def write_failure_text(exc):
    """'cannot write <file>: [Errno 28] No space left on device (ENOSPC)' for a WriteFailed."""
    code = errno.errorcode.get(exc.errno, "?") if exc.errno is not None else "?"
    return f"cannot write {exc.filename}: [Errno {exc.errno}] {exc.strerror} ({code})"


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


# ----------------------------------------------------------------------------------- the lock

class RunDirClaim:
    """One process per run directory: take() locks run_dir/LOCK_FILE with fcntl.flock (exclusive,
    non-blocking) until release(). The kernel drops the lock when the process ends in any way (even
    SIGKILL), so a killed run never leaves a stale lock. On a shared file system the lock is as good
    as its flock support (NFS: yes, emulated with POSIX locks; Lustre: mount with -o flock)."""

    def __init__(self):
        self.run_dir = None
        self.created = False
        self._handle = None

    def take(self, run_dir):
        """Create run_dir if needed and lock it; RunDirBusy if another process holds it, RecordError
        if it cannot be created."""
        self.created = not os.path.isdir(run_dir)
        try:
            os.makedirs(run_dir, exist_ok=True)
            handle = open(os.path.join(run_dir, LOCK_FILE), "a+")
        except OSError as exc:
            raise RecordError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder_text(handle)
            handle.close()
            raise RunDirBusy(f"{run_dir} is being trained by another process{holder}; "
                             f"one process per run directory") from None
        self.run_dir, self._handle = run_dir, handle
        # Who holds it, for the message a second process prints (informative: the flock is the lock).
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        return self

    def mark_summary(self, status):
        """Best effort: set summary.json's status (a run stopped by a signal or a write error). A
        failure to write (the disk is still full) leaves the summary as it was."""
        if self.run_dir is None:
            return
        path = os.path.join(self.run_dir, SUMMARY_FILE)
        try:
            summary = read_json(path)
            if summary.get("status") == STATUS_RUNNING:
                atomic_write_json(path, {**summary, "status": status})
        except (RecordError, OSError):
            pass

    def abandon_if_unused(self):
        """Remove a run directory this claim created and nothing was written to (a usage or data error)."""
        if self.run_dir and self.created and os.listdir(self.run_dir) == [LOCK_FILE]:
            os.unlink(os.path.join(self.run_dir, LOCK_FILE))
            os.rmdir(self.run_dir)
            self.created = False

    def release(self):
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None


def lock_holder_text(handle):
    handle.seek(0)
    holder = handle.read().strip()
    return f" ({holder})" if holder else ""


def run_dir_locked(run_dir):
    """Does some process hold run_dir's lock now? (Probes with a shared non-blocking flock.)"""
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        handle = open(path, "r")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


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
    tested = [r for r in rows if r["test_acc"] is not None]   # every epoch, or every --eval_every and the last
    best = max(tested, key=lambda r: r["test_acc"]) if tested else None
    record = {
        "status": status,
        "epochs_completed": len(rows),
        "epochs": config.get("epochs"),
        "final_test_acc": rows[-1]["test_acc"] if rows else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "final_train_acc": rows[-1].get("train_acc") if rows else None,
        "final_test_loss": rows[-1]["test_loss"] if rows else None,
        "wall_seconds": round(wall_seconds, 3),
    }
    record.update({key: config.get(key) for key in RUN_KEYS})
    record.update(extra or {})
    return record


def resolve_status(summary_status, locked, sweep_status=None):
    """The status of a run from what its records say (collect's and the sweep's one rule).

    summary_status: summary.json's status (or None); locked: run_dir_locked(); sweep_status: the
    sweep record's status of the last attempt (or None). A finished summary wins; then a held lock
    means the run is being trained now; then the sweep's record of how the last attempt ended; then
    the summary's own interrupted/failed; a summary (or sweep record) still saying "running" with
    nobody holding the lock was killed without a chance to record it (SIGKILL, OOM, power loss):
    crashed. Nothing to go by (e.g. a Slurm run still queued): incomplete."""
    if summary_status in FINISHED_STATUSES:
        return summary_status
    if locked:
        return STATUS_RUNNING
    if sweep_status in (STATUS_FAILED, STATUS_CRASHED, STATUS_INTERRUPTED, STATUS_DIVERGED):
        return sweep_status
    if summary_status in (STATUS_INTERRUPTED, STATUS_FAILED):
        return summary_status
    if STATUS_RUNNING in (summary_status, sweep_status):
        return STATUS_CRASHED
    return STATUS_INCOMPLETE


def run_name(dataset, model, minimizer, hparams, seed, keys=NAMED_HPARAMS):
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
