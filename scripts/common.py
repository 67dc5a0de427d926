"""Helpers shared by scripts/reports/collect.py, tables.py, figures.py, the analyses and benchmark.py.

Import as ``from scripts.common import ...``; the scripts therefore run as modules from the
repository root (``python -m scripts.reports.collect ...``).

A user error (bad flags, missing or unusable input) is training.records.UsageError, the project's one
user-error exception: run_main turns it into one line "error: <message>" on stderr and exit status
records.EXIT_USAGE (2), no traceback, nothing written.
"""
import argparse
import csv
import io
import os
import sys

import pandas as pd

from training import records
from training.records import UsageError, atomic_write

# Minimizers in the paper's order; others are listed after them, alphabetically.
ORDER = ["SGD", "SAM", "ASAM", "Multistep_SAM", "Multistep_ASAM", "Lookahead_SGD", "Lookahead_SAM",
         "Lookahead_ASAM", "Lookbehind_SAM", "Lookbehind_ASAM"]
DATASET_NAMES = {"CIFAR10": "CIFAR-10", "CIFAR100": "CIFAR-100", "CIFAR10_sample": "CIFAR-10 sample"}
MODEL_NAMES = {"resnet20": "ResNet-20", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
               "wrn28_2": "WRN-28-2", "wrn28_10": "WRN-28-10", "resnet18": "ResNet-18",
               "reduced_resnet18": "reduced ResNet-18"}


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: a bad flag raises UsageError (run_main prints
    "error: <message>", exit 2) instead of printing the usage block and "<prog>: error: ...".
    training.cli.Parser does the same for the training scripts; this one keeps torch out of the
    report scripts' imports (collect, tables and figures start in a third of a second)."""

    def error(self, message):
        raise UsageError(message)


MAX_DIGITS = 10


def decimal_digits(text):
    """argparse type of --digits (decimals in a table): an integer from 0 to MAX_DIGITS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_DIGITS}, got {text!r}") from None
    if not 0 <= value <= MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_DIGITS}, got {text}")
    return value


def usage_error_exit(exc):
    """Print a UsageError as the one line "error: <message>" on stderr; the exit status to return."""
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    return records.EXIT_USAGE


def run_main(run, argv):
    """Call run(argv); one line "error: ..." and exit status 2 for a UsageError."""
    try:
        return run(argv)
    except UsageError as exc:
        return usage_error_exit(exc)


def display_minimizer(name):
    return str(name).replace("_", "-")


def display_dataset(name):
    return DATASET_NAMES.get(str(name), str(name))


def display_model(name):
    return MODEL_NAMES.get(str(name), str(name))


def minimizer_order(names):
    return [m for m in ORDER if m in names] + sorted(m for m in names if m not in ORDER)


def csv_shape_problem(text):
    """None if CSV text is whole, else where it is not: "line N has K fields where the header has M" (a
    row cut off, or one too long) or "line N is cut off (no line break at the end of the file)". pandas
    reads a short row with its missing cells empty and a number cut off mid-digits as a smaller number;
    the CSVs these scripts read are written whole (csv/pandas end every row with a line break)."""
    reader = csv.reader(io.StringIO(text))
    header = None
    try:
        for row in reader:
            if not row:
                continue   # a blank line (pandas skips it too)
            if header is None:
                header = len(row)
            elif len(row) != header:
                return f"line {reader.line_num} has {len(row)} field{'s' * (len(row) != 1)} where the header has {header}"
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    if text and not text.endswith(("\n", "\r")):
        return f"line {text.count(chr(10)) + 1} is cut off (no line break at the end of the file)"
    return None


def read_whole_csv(path, **kwargs):
    """pd.read_csv of a CSV written by these scripts or the training scripts, refusing a truncated or
    ragged one (csv_shape_problem): UsageError naming the file and the line, as for an unreadable one."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    problem = csv_shape_problem(text)
    if problem:
        raise UsageError(f"{path}: {problem}: the file is cut off or damaged (write it again)")
    try:
        return pd.read_csv(io.StringIO(text), **kwargs)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UsageError(f"cannot read {path} ({' '.join(str(exc).split())})") from None


def write_atomic(path, data):
    """records.atomic_write, creating the parent directory first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, data)


def check_writable_dir(directory, label="--out", shown=None):
    """UsageError unless files can be written in `directory` (before any work, so that an unusable output
    is found at once): it is a writable directory, or its nearest existing ancestor is one (the missing
    directories are created when the first file is written, as write_atomic does). Creates nothing."""
    shown = directory if shown is None else shown
    probe = os.path.abspath(directory)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{label} {shown} is not a directory" if probe == os.path.abspath(shown)
                         else f"{label} {shown}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(probe).f_flag & os.ST_RDONLY
        raise UsageError(f"{label} {shown}: cannot write in {probe} "
                         f"({'a read-only file system' if read_only else 'permission denied'})")


def check_writable_file(path, label="--out"):
    """UsageError unless write_atomic can write the file `path`: not a directory, and its directory
    writable or creatable (check_writable_dir). Creates nothing."""
    if os.path.isdir(path):
        raise UsageError(f"{label} {path} is a directory, not a file")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), label, shown=path)


def apply_where(df, where, source="the CSV"):
    """Keep the rows matching every COLUMN=VALUE in where (numbers compared as numbers); UsageError
    if a condition is malformed or names no column, or if no row is left."""
    for cond in where or []:
        if "=" not in cond:
            raise UsageError(f"--where {cond!r}: expected COLUMN=VALUE")
        col, value = cond.split("=", 1)
        if col not in df.columns:
            raise UsageError(f"--where {cond!r}: no column {col!r} in {source}")
        try:
            target = float(value)
            mask = pd.to_numeric(df[col], errors="coerce").sub(target).abs() < 1e-12
        except ValueError:
            mask = df[col].astype(str) == value
        df = df[mask]
    if where and df.empty:
        raise UsageError(f"no rows in {source} left after --where {' '.join(where)}")
    return df


def epochs_text(df):
    """'3 epochs' / '1 epoch' / '100/200 epochs' from an epochs column ('' without one)."""
    if "epochs" not in df.columns:
        return ""
    ep = sorted(pd.to_numeric(df["epochs"], errors="coerce").dropna().astype(int).unique())
    return f"{'/'.join(str(e) for e in ep)} epoch{'s' if ep != [1] else ''}" if ep else ""
