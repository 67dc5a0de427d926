"""Validation of minimizer hyperparameters and closures: the few checks every algorithm file uses.

Each raises ValueError with a one-line message naming the hyperparameter, and returns the value in
its canonical type (float for numbers, so that an int default like ``mu=1`` behaves like 1.0).
"""
import inspect
import math

import torch


def check_number(name, value, low=None, high=None, low_open=False, optional=False):
    """A finite real number in [low, high] ((low, high] with ``low_open``); None allowed if ``optional``."""
    if optional and value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        if low is not None and high is not None:
            span = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            span = f"{'>' if low_open else '>='} {low:g}"
        else:
            span = f"<= {high:g}" if high is not None else "a number"
        extra = " or None" if optional else ""
        raise ValueError(f"{name} must be a finite number {span}{extra}, got {value!r}")
    return float(value)


def check_int(name, value, minimum=None):
    """An integer (not a bool), >= ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise ValueError(f"{name} must be an integer{f' >= {minimum}' if minimum is not None else ''}, got {value!r}")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_alpha(alpha, allow_adaptive=True):
    """A slow-weight step in (0, 1], or -1 (adaptive) where allowed."""
    ok = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if ok and allow_adaptive and alpha == -1:
        return -1.0
    if not ok or not (0 < alpha <= 1):
        extra = " or -1 (adaptive)" if allow_adaptive else ""
        raise ValueError(f"alpha must be in (0, 1]{extra}, got {alpha!r}")
    return float(alpha)


def check_objective_closure(closure, who):
    """ValueError unless ``closure`` can be called as ``closure(objective)`` (BiSAM, SSAM-F)."""
    try:
        inspect.signature(closure).bind(None)
    except TypeError:
        raise ValueError(
            f"{who} calls closure(objective): the closure must accept an optional argument `objective` and, "
            "when given, back-propagate objective(outputs, targets) instead of the loss "
            "(see minimizers.make_closure)") from None
    except ValueError:      # no signature available (builtins, some C callables): trust the caller
        pass


def check_scaler(scaler, params):
    """The scaler to attach (None: none), or ValueError."""
    if scaler is None:
        return None
    if not isinstance(scaler, torch.amp.GradScaler):
        raise ValueError(f"scaler must be a torch.amp.GradScaler (or None), got {type(scaler).__name__}")
    half = [p for p in params if p.dtype == torch.float16]
    if half and scaler.is_enabled():
        raise ValueError("a GradScaler needs fp32 parameters (autocast runs the fp16 math); this model has "
                         "float16 parameters")
    return scaler
