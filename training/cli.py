"""Command-line pieces shared by the training entry points (example_cifar.py, ...).

Argument types that report bad input as one line, the minimizer-hyperparameter flags (resolved
against the library's defaults, minimizers.hparams), device resolution, and UsageError: the one
exception a training script turns into "error: ..." and exit status 2 (records.EXIT_USAGE).
"""
import argparse
import math

import torch

import minimizers
import models
from training.records import UsageError  # noqa: F401  (re-exported: the entry points' user error)
from minimizers.sampa import SAMPA_BN_POLICIES   # every policy (SAMPa accepts one more)

# Minimizer hyperparameters that have their own flag; each is passed to minimizers.create only
# if the chosen minimizer accepts it (minimizers.hparams(name)), else it is ignored with a note.
HPARAM_FLAGS = ("rho", "eta", "k", "alpha", "bn_policy", "passes", "minibatch_switching",
                "descent_gradient", "split_rho")


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


def flag_adder(parser):
    """flag(name, **kw): the authors' underscore name plus a dash alias (--weight-decay == --weight_decay)."""
    def flag(name, **kwargs):
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*names, dest=name, **kwargs)
    return flag


def library_default(key):
    """The library defaults of hyperparameter ``key``, from the registry: "library default 0.05 for SAM, ...;
    0.5 for ...", or "library default X" when every minimizer that takes it has the same."""
    groups = minimizers.defaults_by_value(key)
    if len(groups) == 1:
        return f"library default {next(iter(groups))}"
    return "library default " + "; ".join(f"{value} for {', '.join(names)}" for value, names in groups.items())


def add_minimizer_flags(flag, default="Lookbehind_SAM"):
    """--minimizer and its hyperparameter flags (HPARAM_FLAGS, --hparam KEY=VALUE)."""
    flag("minimizer", default=default, type=lookup(minimizers.canonical_name),
         help=f"one of {', '.join(minimizers.available())} (case-insensitive; default %(default)s)")
    flag("rho", default=None, type=finite_float(), help=f"perturbation radius ({library_default('rho')})")
    flag("eta", default=None, type=finite_float(), help=f"ASAM's eta ({library_default('eta')})")
    flag("k", default=None, type=integer, help=f"inner steps per outer step ({library_default('k')})")
    flag("alpha", default=None, type=finite_float(),
         help=f"slow-weight step size in (0, 1], -1 = adaptive ({library_default('alpha')})")
    flag("bn_policy", default=None, choices=list(SAMPA_BN_POLICIES),
         help="BatchNorm statistics from every pass, the clean passes only, or (SAMPa) the perturbed passes "
              f"only ({library_default('bn_policy')})")
    flag("passes", default=None, choices=list(minimizers.PASSES),
         help=f"Lookbehind: k+1 shared gradient evaluations or the authors' literal 2k ({library_default('passes')})")
    flag("minibatch_switching", default=None, action=argparse.BooleanOptionalAction,
         help=f"Lookbehind: a new minibatch for every inner step ({library_default('minibatch_switching')})")
    flag("descent_gradient", default=None, choices=list(minimizers.DESCENT_GRADIENTS),
         help=f"Multistep: descend with the last or the mean of the k ascent gradients "
              f"({library_default('descent_gradient')})")
    flag("split_rho", default=None, action=argparse.BooleanOptionalAction,
         help=f"Multistep: split rho over the k ascent steps ({library_default('split_rho')})")
    flag("hparam", default=[], action="append", metavar="KEY=VALUE",
         help="any other hyperparameter of the minimizer (repeatable), typed like its default")


def add_runtime_flags(flag):
    """--device, --precision, --channels_last, --compile: speed and placement, not the result."""
    flag("device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
         help="auto (default): cuda, else mps, else cpu")
    flag("precision", default="fp32", choices=["fp32", "bf16"], help="fp32 (default), or bf16 autocast around the forward pass")
    flag("channels_last", default=None, action=argparse.BooleanOptionalAction,
         help="model and inputs in channels_last memory format (default: on where it is faster: on the CPU "
              "(measured 1.2-1.3x for a forward+backward, results/benchmarks.md) and on CUDA with bf16)")
    flag("compile", default=False, action="store_true", help="torch.compile the model")


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


def argv_flags(argv):
    """Flag names (underscore form) typed on the command line."""
    return {arg.split("=")[0].lstrip("-").replace("-", "_").removeprefix("no_") for arg in argv if arg.startswith("--")}


def autocast_factory(device, precision):
    """A no-argument callable giving the context for forward passes: bf16 autocast or nothing."""
    from contextlib import nullcontext
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext
