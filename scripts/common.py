"""Helpers shared by scripts/collect.py, tables.py, figures.py and benchmark.py.

Import as ``from scripts.common import ...``; the scripts therefore run as modules from the
repository root (``python -m scripts.collect ...``).
"""
import os
import tempfile

import pandas as pd

# Minimizers in the paper's order; others are listed after them, alphabetically.
ORDER = ["SGD", "SAM", "ASAM", "Multistep_SAM", "Multistep_ASAM", "Lookahead_SGD", "Lookahead_SAM",
         "Lookahead_ASAM", "Lookbehind_SAM", "Lookbehind_ASAM"]
DATASET_NAMES = {"CIFAR10": "CIFAR-10", "CIFAR100": "CIFAR-100", "CIFAR10_sample": "CIFAR-10 sample"}
MODEL_NAMES = {"resnet20": "ResNet-20", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
               "wrn28_2": "WRN-28-2", "wrn28_10": "WRN-28-10", "resnet18": "ResNet-18"}


class UserError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def display_minimizer(name):
    return str(name).replace("_", "-")


def display_dataset(name):
    return DATASET_NAMES.get(str(name), str(name))


def display_model(name):
    return MODEL_NAMES.get(str(name), str(name))


def minimizer_order(names):
    return [m for m in ORDER if m in names] + sorted(m for m in names if m not in ORDER)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, data):
    """Write data (str: UTF-8, or bytes) to path atomically: a temporary file in the same directory,
    fsync'd, given the mode a plain open(path, "w") would (0o666 & ~umask; mkstemp makes it 0o600),
    then renamed over path.  The temporary file is removed on any error."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_where(df, where, source="the CSV"):
    """Keep the rows matching every COLUMN=VALUE in where (numbers compared as numbers); UserError
    if a condition is malformed or names no column, or if no row is left."""
    for cond in where or []:
        if "=" not in cond:
            raise UserError(f"--where {cond!r}: expected COLUMN=VALUE")
        col, value = cond.split("=", 1)
        if col not in df.columns:
            raise UserError(f"--where {cond!r}: no column {col!r} in {source}")
        try:
            target = float(value)
            mask = pd.to_numeric(df[col], errors="coerce").sub(target).abs() < 1e-12
        except ValueError:
            mask = df[col].astype(str) == value
        df = df[mask]
    if where and df.empty:
        raise UserError(f"no rows in {source} left after --where {' '.join(where)}")
    return df


def epochs_text(df):
    """'3 epochs' / '1 epoch' / '100/200 epochs' from an epochs column ('' without one)."""
    if "epochs" not in df.columns:
        return ""
    ep = sorted(pd.to_numeric(df["epochs"], errors="coerce").dropna().astype(int).unique())
    return f"{'/'.join(str(e) for e in ep)} epoch{'s' if ep != [1] else ''}" if ep else ""
