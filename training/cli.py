"""Command-line pieces shared by the training entry points and scripts/: a parser that reports bad
input as one line, argument types, device resolution, autocast.

The training entry points' own flags are declared in training/settings.py; the user error every
script raises is records.UsageError (one line "error: ...", exit status records.EXIT_USAGE).
"""
import argparse
import math
import re
import warnings

import torch

import models
from training.records import UsageError  # noqa: F401  (re-exported: the entry points' user error)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage block; we want one line
        # "argument --weight_decay/--weight-decay: ..." names the flag once: "argument --weight_decay: ..."
        raise UsageError(re.sub(r"^argument (--[\w-]+)(/--[\w-]+)+:", r"argument \1:", message))


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


def integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def model_name(text):
    key = text.lower().replace("-", "_")
    if key not in models.available_models():
        raise ValueError(f"unknown model {text!r}; available: {', '.join(models.available_models())}")
    return key


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


def autocast_factory(device, precision):
    """A no-argument callable giving the context for forward passes: bf16 or fp16 autocast, or nothing."""
    from contextlib import nullcontext
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(device.type, dtype=dtype)
    return nullcontext


def fp16_autocast_available(device_type):
    """Whether torch.autocast runs float16 on this device type (torch warns and disables it where not)."""
    if not torch.amp.autocast_mode.is_autocast_available(device_type):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            torch.autocast(device_type, dtype=torch.float16)
        except (RuntimeError, UserWarning, AssertionError):
            return False
    return True


def grad_scaler(device, precision):
    """--precision fp16: a torch.amp.GradScaler on the device's type, which the minimizer takes
    (minimizer.attach_scaler; docs/fp16.md); None for fp32 and bf16. UsageError on a device without
    fp16 autocast."""
    if precision != "fp16":
        return None
    if not fp16_autocast_available(device.type):
        raise UsageError(f"--precision fp16: this torch has no fp16 autocast on the {device.type} device; "
                         f"use --precision bf16 or fp32")
    return torch.amp.GradScaler(device.type)
