"""Continuing a run: the run directory's saved settings, refusing changed ones, restoring the checkpoint.

Shared by the training entry points (example_cifar.py, example_continual.py). Every problem is a
cli.UsageError (one line, exit status 2) and leaves the run directory as it is.
"""
import argparse
import os

import torch

from training import records
from training.cli import UsageError


def read_record(path, what):
    try:
        return records.read_json(path, what)
    except records.RecordError as exc:
        raise UsageError(str(exc)) from None


def run_paths(out):
    """(summary.json, config.json, checkpoint.pt) paths of the run directory `out`."""
    return tuple(os.path.join(out, name) for name in (records.SUMMARY_FILE, records.CONFIG_FILE, records.CHECKPOINT_FILE))


def saved_settings(parser, argv, args, out, record_keys, retyped):
    """(args, saved config or None) for the run directory `out`.

    A directory that already holds a run is refused without --resume. With --resume, argv is
    parsed again over the saved settings (argparse fills in defaults only for attributes the
    namespace lacks), so the result is the saved settings overridden by whatever was typed now.
    record_keys: config.json entries that are records, not flags; retyped: settings that are not
    taken from config.json (they come from argv or their defaults)."""
    summary_path, config_path, _ = run_paths(out)
    if not os.path.exists(summary_path):
        return args, None
    if not args.resume:
        status = read_record(summary_path, "run summary").get("status")
        raise UsageError(f"{out} already holds a run (status {status}); pass --resume to continue it "
                         f"or choose another --out")
    saved_config = read_record(config_path, "run config")
    flags = {key: value for key, value in saved_config.items() if key not in record_keys and key not in retyped}
    typed_hparams = args.hparam
    flags["hparam"] = list(flags.get("hparam") or [])
    args = parser.parse_args(argv, namespace=argparse.Namespace(**flags))
    # --hparam appends: typed entries replace the saved list instead of being added to it.
    args.hparam = typed_hparams or flags["hparam"]
    return args, saved_config


def check_unchanged(args, saved_config, record_keys, may_change):
    """UsageError naming the first setting that differs from the run's saved one (except may_change)."""
    changed = [key for key, value in saved_config.items()
               if key not in record_keys and key not in may_change and getattr(args, key, value) != value]
    if changed:
        key = changed[0]
        raise UsageError(f"--{key} {getattr(args, key)} differs from the run's {saved_config[key]}; a resumed run "
                         f"keeps its settings (only {', '.join(sorted(may_change - {'out', 'resume'}))} "
                         f"may change)")


def restore_checkpoint(path, device, model, minimizer, scheduler):
    """Restore state from checkpoint.pt; UsageError (file untouched) if it is unusable.
    Returns (last epoch, metric rows, wall seconds so far)."""
    try:
        state = records.load_checkpoint(path, device)
        model.load_state_dict(state["model"])
        minimizer.load_state_dict(state["minimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        return int(state["epoch"]), [dict(row) for row in state["metrics"]], float(state["wall_seconds"])
    except (records.RecordError, Exception) as exc:  # missing keys, shape mismatches: all mean "unusable"
        reason = str(exc) if isinstance(exc, records.RecordError) else f"cannot resume from {path}: {records.one_line(exc)}"
        raise UsageError(f"{reason} (the file is left as it is; use a new --out to start over)") from None
