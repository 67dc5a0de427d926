"""Gather the run directories of a sweep into CSVs (seconds, even for thousands of runs).

    python -m scripts.reports.collect runs/kalpha                       # -> results/kalpha/
    python -m scripts.reports.collect runs/a runs/b --sweep ab --out results/ab

(run from the repository root: the scripts share scripts/common.py).

Every directory below the given roots that holds a config.json, summary.json or sweep_status.json
(written by the training scripts and scripts.launch.sweep) is one run.  Writes to --out (default
results/<sweep>/, sweep = name of the first root):

  runs.csv     one row per run: every setting from config.json, status (completed | diverged | failed |
               crashed | interrupted | running | incomplete | invalid), exit_code, epochs_completed,
               final_test_acc, best_test_acc, best_epoch, final_train_loss, final_train_acc, wall_seconds, run_dir, problem.
  grouped.csv  one row per setting (all settings but the seed): n_runs, n_completed, n_diverged,
               n_running (running or incomplete), n_failed (crashed, interrupted, invalid), seeds, and for final_test_acc, best_test_acc
               and wall_seconds the mean, std (sample std, ddof=1; empty for n=1) and n over the
               completed runs.
  curves.csv   every epoch of every run's metrics.csv (long format) with the run's settings (a setting
               named like a metrics column is renamed config_<name>, e.g. config_lr), for the
               learning-curve figure.

Status: training.records.resolve_status, from summary.json, the run directory's lock (held = being
trained now) and the sweep's record (sweep_status.json): see the status table in docs/cli.md.
A directory that cannot be read, or whose metrics.csv is cut off or ragged (a row with more or fewer
fields than the header, or no line break at the end: the training scripts write it whole), is
reported ("problem in <run dir>: metrics.csv line N ...") and listed with status "invalid", never
averaged as completed; it never stops the collection.  Every resolved minimizer hyperparameter
(config.json's minimizer_hparams) is a column of runs.csv.  Exit status 2 with one line if no run is
found or the output directory cannot be written (checked first).
"""
import io
import json
import math
import os
import sys

import pandas as pd

from scripts.common import Parser, check_writable_dir, check_writable_file, csv_shape_problem, run_main, write_atomic
from training import records
from training.records import CONTINUAL_METRICS, METRIC_COLUMNS, UsageError

RUN_MARKERS = (records.CONFIG_FILE, records.SUMMARY_FILE, records.SWEEP_RECORD_FILE)
# config.json keys that are not settings of the experiment (they may differ between seeds/machines).
NON_SETTING_KEYS = {
    "seed", "out", "run_dir", "data_dir", "device", "resume", "command", "git_commit", "versions",
    "minimizer_hparams", "num_workers", "hostname", "host", "start_time", "timestamp", "log_interval",
    "progress", "quiet", "verbose", "save_every", "checkpoint_every", "no_plot", "download", "compile",
    "resume_commands", "ignored_flags",
    "task_seed",  # continual runs: the class split follows --seed unless fixed; a seed, not a setting
}
SUMMARY_FIELDS = ["epochs_completed", "final_test_acc", "best_test_acc", "best_epoch",
                  "final_train_loss", "final_train_acc", "wall_seconds"]
STAT_FIELDS = ["final_test_acc", "best_test_acc", "final_train_acc", "wall_seconds"]
# Continual runs' summaries add A, F, LA: collected (and averaged over seeds) when present.
OPTIONAL_SUMMARY_FIELDS = list(CONTINUAL_METRICS) + ["tasks_completed"]
# Settings listed first (in this order) in the CSVs; others follow alphabetically.
LEADING = ["sweep", "dataset", "model", "minimizer", *records.NAMED_HPARAMS, "epochs", "seed"]
# grouped.csv's n_running counts these (not finished, or not yet); n_failed every other unfinished status
NOT_FINISHED = (records.STATUS_RUNNING, records.STATUS_INCOMPLETE)
# statuses listed one run a line after the summary
REPORTED_STATUSES = (records.STATUS_CRASHED, records.STATUS_INTERRUPTED, records.STATUS_INCOMPLETE,
                     records.STATUS_INVALID)


# Settings that are paths on the machine that trained: recorded like run_dir (shown_path).
PATH_SETTINGS = ("out", "data_dir", "pretrained")


def shown_path(path):
    """A run directory (or a path setting) as the CSVs record it: relative to the working directory when it
    lies below it (committed results then name no machine's paths), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def find_run_dirs(roots):
    found = []
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"run root {root!r} is not a directory")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if any(m in filenames for m in RUN_MARKERS):
                found.append(dirpath)
                dirnames[:] = []  # a run dir's subdirectories are not runs
    return found


def read_json(path):
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def to_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def scalar(v):
    return v is None or isinstance(v, (str, int, float, bool))


class DamagedRecord(ValueError):
    """A record cut off or ragged (a metrics.csv row with fewer fields than its header): the run's
    records are not whole, so it is listed with status invalid, never as completed."""


def read_metrics(path):
    with open(path, newline="") as f:
        text = f.read()
    problem = csv_shape_problem(text)
    if problem:
        raise DamagedRecord(f"{os.path.basename(path)} {problem}: cut off or damaged")
    df = pd.read_csv(io.StringIO(text))
    if "epoch" not in df.columns or "test_acc" not in df.columns:
        raise ValueError("metrics.csv lacks the epoch/test_acc columns")
    return df


def collect_run(run_dir, sweep, tsv_cache):
    """One row (dict) for one run directory, and the run's metrics DataFrame (or None)."""
    row = {"sweep": sweep, "run_name": os.path.basename(run_dir.rstrip(os.sep)),
           "run_dir": shown_path(run_dir)}
    problems = []
    config = summary = record = None
    for name in RUN_MARKERS:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            try:
                data = read_json(path)
            except (OSError, ValueError) as e:
                problems.append(f"unreadable {name}: {e}")
                continue
            if name == records.CONFIG_FILE:
                config = data
            elif name == records.SUMMARY_FILE:
                summary = data
            else:
                record = data
    if config is not None:
        for key, value in config.items():
            if key in ("sweep", "run_name", "run_dir") or key in NON_SETTING_KEYS and not scalar(value):
                continue
            if key in PATH_SETTINGS and isinstance(value, str) and value:
                row[key] = shown_path(value)  # relative where it lies below the working directory
            elif scalar(value):
                row[key] = value
            elif isinstance(value, list) and all(scalar(v) for v in value):
                row[key] = json.dumps(value)  # e.g. milestones: a setting, kept as "[50, 100, 150]"
        # Every resolved minimizer hyperparameter is a column (GSAM's rho_max, SSAM's sparsity, ...);
        # one named like another setting with another value (SSAM-D's seed) becomes minimizer_<name>.
        for key, value in (config.get("minimizer_hparams") or {}).items():
            if scalar(value):
                row[key if row.get(key, value) == value else f"minimizer_{key}"] = value
    elif summary is not None:
        problems.append("no config.json (settings taken from summary.json)")
    else:
        problems.append("no config.json")
    if summary is not None:  # the summary repeats the main settings; fill any the config lacks
        for key in records.RUN_KEYS:
            if key not in row and scalar(summary.get(key)):
                row[key] = summary.get(key)
        for key in SUMMARY_FIELDS + OPTIONAL_SUMMARY_FIELDS:
            if scalar(summary.get(key)):
                row[key] = summary.get(key)

    metrics, damaged = None, False
    metrics_path = os.path.join(run_dir, "metrics.csv")
    if os.path.isfile(metrics_path):
        try:
            metrics = read_metrics(metrics_path)
        except DamagedRecord as e:
            problems.append(str(e))
            damaged = True
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            problems.append(f"unreadable metrics.csv: {e}")
    if metrics is not None and len(metrics):
        # Fill what the summary does not give (a crashed or running run has no final summary).
        acc = pd.to_numeric(metrics["test_acc"], errors="coerce")
        if row.get("epochs_completed") is None:
            row["epochs_completed"] = int(pd.to_numeric(metrics["epoch"], errors="coerce").max())
        if row.get("final_test_acc") is None:
            row["final_test_acc"] = float(acc.iloc[-1])
        if row.get("best_test_acc") is None and acc.notna().any():
            row["best_test_acc"] = float(acc.max())
            row["best_epoch"] = int(metrics.loc[acc.idxmax(), "epoch"])
        for key in ("train_loss", "train_acc"):  # summaries before final_train_acc existed, crashed runs
            if row.get(f"final_{key}") is None and key in metrics.columns:
                row[f"final_{key}"] = float(pd.to_numeric(metrics[key], errors="coerce").iloc[-1])

    # Status: the records module's one rule (a held lock = being trained now).
    s_status = (summary or {}).get("status")
    r_status = (record or {}).get("status")
    exit_code = to_int((record or {}).get("exit_code"))
    status = records.resolve_status(s_status, records.run_dir_locked(run_dir), r_status)
    if damaged or (status == records.STATUS_INCOMPLETE and config is None and summary is None):
        status = records.STATUS_INVALID
    if r_status == records.STATUS_COMPLETED and s_status != records.STATUS_COMPLETED:
        problems.append(f"exit 0 recorded but summary.json is not {records.STATUS_COMPLETED!r}")
    row["status"] = status
    row["exit_code"] = exit_code
    if row.get("wall_seconds") is None and record is not None:
        try:
            row["wall_seconds"] = float(record.get("wall_seconds"))
        except (TypeError, ValueError):
            pass
    row["problem"] = "; ".join(problems)
    return row, metrics


def order_columns(columns, first, last=()):
    cols = [c for c in first if c in columns]
    cols += sorted(c for c in columns if c not in cols and c not in last)
    cols += [c for c in last if c in columns and c not in cols]
    return cols


def setting_columns(runs):
    """Columns that describe a setting (grouped over seeds)."""
    skip = set(NON_SETTING_KEYS) | set(SUMMARY_FIELDS) | set(OPTIONAL_SUMMARY_FIELDS) | {
        "run_name", "run_dir", "status", "exit_code", "problem"}
    cols = [c for c in runs.columns if c not in skip]
    return order_columns(cols, LEADING)


def _stats(values):
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


def group_runs(runs):
    keys = setting_columns(runs)
    rows = []
    # Group on string forms so that NaN / mixed types never drop or split groups.
    key_frame = runs[keys].astype(object).where(runs[keys].notna(), None).map(
        lambda v: "" if v is None else repr(v) if isinstance(v, float) else str(v))
    for _, idx in key_frame.groupby(keys, sort=False, dropna=False).groups.items():
        part = runs.loc[idx]
        out = {k: part[k].iloc[0] for k in keys}
        status = part["status"]
        out["n_runs"] = len(part)
        out["n_completed"] = int((status == records.STATUS_COMPLETED).sum())
        out["n_diverged"] = int((status == records.STATUS_DIVERGED).sum())
        out["n_running"] = int(status.isin(NOT_FINISHED).sum())  # not finished (yet)
        out["n_failed"] = int(len(part) - out["n_completed"] - out["n_diverged"] - out["n_running"])
        if "seed" in part.columns:
            seeds = sorted(part["seed"].dropna().tolist(), key=lambda s: (str(type(s)), s))
            out["seeds"] = " ".join(str(int(s)) if isinstance(s, float) and s.is_integer() else str(s)
                                    for s in seeds)
        done = part[status == records.STATUS_COMPLETED]
        for field in STAT_FIELDS + [f for f in CONTINUAL_METRICS if f in runs.columns]:
            values = done[field].tolist() if field in done.columns else []
            out[f"{field}_mean"], out[f"{field}_std"], out[f"{field}_n"] = _stats(values)
        rows.append(out)
    grouped = pd.DataFrame(rows)
    return grouped, keys


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


OUTPUT_FILES = ("runs.csv", "grouped.csv", "curves.csv")


def collect(roots, sweep, out_dir, quiet=False):
    check_writable_dir(out_dir, "output directory")   # before any work: an unusable one is found at once
    for name in OUTPUT_FILES:
        check_writable_file(os.path.join(out_dir, name), "output")
    run_dirs = find_run_dirs(roots)
    if not run_dirs:
        raise UsageError(f"no run directories (with config.json / summary.json / sweep_status.json) "
                         f"under {', '.join(roots)}")
    rows, curves, tsv_cache = [], [], {}
    for run_dir in run_dirs:
        try:
            row, metrics = collect_run(run_dir, sweep, tsv_cache)
        except Exception as e:  # never let one bad directory stop the collection
            row, metrics = {"sweep": sweep, "run_name": os.path.basename(run_dir), "status": records.STATUS_INVALID,
                            "run_dir": shown_path(run_dir), "problem": f"{type(e).__name__}: {e}"}, None
        rows.append(row)
        if metrics is not None and len(metrics):
            curves.append((row, metrics))
    runs = pd.DataFrame(rows)
    for field in SUMMARY_FIELDS + ["exit_code", "problem"]:
        if field not in runs.columns:
            runs[field] = None
    runs = runs[order_columns(runs.columns, LEADING + ["status"] + SUMMARY_FIELDS,
                              last=["exit_code", "run_name", "run_dir", "problem"])]
    runs = runs.sort_values([c for c in [*records.RUN_KEYS,
                                         "run_name"] if c in runs.columns],
                            key=lambda s: s.map(lambda v: (0, v) if isinstance(v, (int, float)) and
                                                not isinstance(v, bool) else (1, str(v))),
                            ignore_index=True)
    grouped, keys = group_runs(runs)

    curve_frames = []
    curve_keys = [k for k in keys if k in runs.columns] + (["seed"] if "seed" in runs.columns else [])
    for row, metrics in curves:
        m = metrics[[c for c in METRIC_COLUMNS if c in metrics.columns]].copy()
        for key in reversed(["run_name", "status"] + curve_keys):
            # a setting named like a metric column (lr: initial vs per-epoch) becomes config_<name>
            m.insert(0, f"config_{key}" if key in m.columns else key, row.get(key))
        curve_frames.append(m)
    curves_df = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(
        columns=curve_keys + ["status", "run_name"] + METRIC_COLUMNS)

    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "runs.csv"), runs.to_csv(index=False))
    write_atomic(os.path.join(out_dir, "grouped.csv"), grouped.to_csv(index=False))
    write_atomic(os.path.join(out_dir, "curves.csv"), curves_df.to_csv(index=False))

    if not quiet:
        counts = runs["status"].value_counts().to_dict()
        print(f"collect: {len(runs)} runs ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}) "
              f"in {len(grouped)} settings -> {out_dir}/{{runs,grouped,curves}}.csv")
        bad = runs[runs["problem"].fillna("") != ""]
        for _, r in bad.iterrows():
            print(f"  problem in {r['run_dir']}: {r['problem']}")
        for _, r in runs[runs["status"].isin(REPORTED_STATUSES)].iterrows():
            print(f"  {r['status']}: {r['run_dir']}" + (f" (exit {int(r['exit_code'])})"
                                                         if pd.notna(r["exit_code"]) else ""))
    return runs, grouped, curves_df


def build_parser():
    parser = Parser(
        description="Gather sweep run directories into runs.csv, grouped.csv (mean/std/n over seeds) "
                    "and curves.csv.  Takes seconds.",
        epilog="Example (from the repository root): python -m scripts.reports.collect runs/kalpha  "
               "(writes results/kalpha/)")
    parser.add_argument("roots", nargs="+", help="sweep directories (or any parents of run directories)")
    parser.add_argument("--sweep", help="sweep name (default: name of the first root)")
    parser.add_argument("--out", help="output directory (default: <repo>/results/<sweep>)")
    parser.add_argument("--quiet", action="store_true")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    sweep = args.sweep or os.path.basename(os.path.abspath(args.roots[0]).rstrip(os.sep))
    out = args.out or os.path.join(repo_root(), "results", sweep)
    collect(args.roots, sweep, out, quiet=args.quiet)
    return 0


def main(argv=None):
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
