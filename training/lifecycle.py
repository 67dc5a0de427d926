"""A training run's life, the same for every entry point (example_cifar.py, example_continual.py).

    open_run     flags (or config.json on --resume) -> validated settings; the run directory claimed;
                 a directory holding any run file is continued only with --resume, and a resumed run
                 keeps every setting that shapes training (training/settings.py says which may change)
    build_minimizer   the base optimizer (SGD) and the minimizer around it
    restore / checkpoint_state   the per-epoch checkpoint, with the settings it was trained with
    config_record      config.json from the settings
    main         every ending -> one exit status (records.EXIT_*), one line on stderr for errors

Nothing is written before everything is validated: open_run only reads (and creates the run
directory to lock it; a directory it created and nothing was written to is removed on a usage error).
"""
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import torch

import data
import minimizers
import models
from training import distributed, records, trackers
from training.loop import StopRequested, report_stop, stop_signals
from training.cli import resolve_device
from training.records import UsageError
from training.settings import (FIXED, KEPT, PER_CALL, MinimizerFlags, PackageMissing, SettingError,
                               resolve_minimizer_hparams, parse_hparam_entries, split_typed)

# config.json entries that are records of the run, not settings.
RECORD_KEYS = {"versions", "git_commit", "command", "resume_commands", "ignored_flags", "world_size",
               "task_classes", "epochs", "num_classes"}
# Entries older config.json files have that are no longer settings (the minimizer flags before they were
# resolved into minimizer_hparams, and --resume itself): read and ignored.
LEGACY_KEYS = {f.name for f in dataclasses.fields(MinimizerFlags)} | {"resume"}
# Settings added after runs were first recorded, with the value that reproduces those older runs.
LATER_SETTINGS = {"augment": True, "eval_every": 1, "optimizer": "sgd", "betas": None, "eps": None,
                  "label_smoothing": 0.0, "pretrained": None}


@dataclass
class OpenedRun:
    settings: object          # CifarSettings / ContinualSettings, validated, hyperparameters resolved
    out: str
    saved_config: dict = None  # config.json of the run being resumed, else None
    ignored_flags: tuple = ()
    finished_exit: int = None  # set when there is nothing to do (completed, or diverged earlier)

    @property
    def paths(self):
        return {name: os.path.join(self.out, name) for name in (records.CONFIG_FILE, records.CHECKPOINT_FILE,
                                                                  records.METRICS_FILE, records.SUMMARY_FILE)}


def make_settings(settings_class, values, hparams=None):
    """settings_class(...) from flag values; a SettingError names the flag."""
    try:
        return settings_class(**values, minimizer_hparams=hparams)
    except SettingError as exc:
        raise UsageError(f"argument --{exc.name}: {exc}") from None


def settings_from_flags(settings_class, typed, flags, device_type):
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    minimizer = typed.get("minimizer", fields["minimizer"].default)
    hparams, ignored = resolve_minimizer_hparams(minimizer, flags)
    settings = make_settings(settings_class, {**typed, "device": device_type}, hparams)
    return dataclasses.replace(settings, channels_last=channels_last_for(settings, device_type)), ignored


def settings_from_config(settings_class, config, path):
    """The settings a run was started with, read back from its config.json through the same checks."""
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a run config (expected a JSON object)")
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(config) - set(fields) - RECORD_KEYS - LEGACY_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown setting {unknown[0]!r} (edited by hand?); the run cannot be resumed")
    values = {}
    for name, item in fields.items():
        if name in config:
            values[name] = config[name]
        elif name in LATER_SETTINGS:
            values[name] = LATER_SETTINGS[name]
        elif item.metadata.get("resume") != PER_CALL:
            raise UsageError(f"{path}: the setting {name!r} is missing (edited by hand?); the run cannot be resumed")
    if values.get("minimizer_hparams") is None:
        raise UsageError(f"{path}: the setting 'minimizer_hparams' is missing; the run cannot be resumed")
    hparams = values.pop("minimizer_hparams")
    try:
        return settings_class(**values, minimizer_hparams=hparams)
    except SettingError as exc:
        raise UsageError(f"{path}: {exc.name}: {exc} (edited by hand?); the run cannot be resumed") from None
    except PackageMissing as exc:  # not an edit: this machine lacks a package the run needs
        raise PackageMissing(f"{path}: {exc}; install it to resume the run") from None
    except UsageError as exc:   # a check across settings
        raise UsageError(f"{path}: {exc} (edited by hand?); the run cannot be resumed") from None


def parse_settings(settings_class, parser, argv, device_type=None):
    """(settings, ignored minimizer flags) of a command line alone, as a new run would get them.
    device_type: the device the run will have (a sweep checking a command for another machine), else
    --device resolved here."""
    typed, flags, _ = split_typed(settings_class, vars(parser.parse_args(argv)))
    device_type = device_type or resolve_device(typed.get("device", "auto")).type
    return settings_from_flags(settings_class, typed, flags, device_type)


def check_command(entry, argv, device_type):
    """UsageError if `entry` (a training script's file name, ENTRY_SETTINGS) would refuse argv: what a
    launcher (scripts/launch/sweep.py) checks for every run before it starts any."""
    from training.settings import ENTRY_SETTINGS, build_parser
    settings_class = ENTRY_SETTINGS[os.path.basename(entry)]
    parse_settings(settings_class, build_parser(settings_class, entry), argv, device_type)


def open_run(settings_class, parser, argv, claim, take_claim=True):
    """Parse argv, find the run directory and its state, and return an OpenedRun (nothing written)."""
    typed, flags, resume = split_typed(settings_class, vars(parser.parse_args(argv)))
    device = resolve_device(typed.get("device", "auto"))
    out, fresh, ignored = typed.get("out"), None, ()
    if out is None or not resume:
        # The command line alone as a new run's settings: needed for a new run and for the default --out. A resume
        # with --out reads the run's settings first (its typed flags may only make sense with them).
        fresh, ignored = settings_from_flags(settings_class, typed, flags, device.type)
        out = out or fresh.default_out()
    if take_claim:  # under torchrun rank 0 alone owns the directory
        try:
            claim.take(out)
        except (records.RunDirBusy, records.RecordError) as exc:
            raise UsageError(str(exc)) from None
    opened = OpenedRun(fresh, out, ignored_flags=tuple(ignored))
    present = [name for name in records.RUN_FILES if os.path.exists(os.path.join(out, name))]
    if present and not resume:
        status = summary_status(out)
        raise UsageError(f"{out} already holds a run ({', '.join(present)}{f'; status {status}' if status else ''}); "
                         f"pass --resume to continue it or choose another --out")
    if not present:
        if resume:
            print(f"note: no run in {out}; starting it from scratch", file=sys.stderr)
        if fresh is None:
            fresh, ignored = settings_from_flags(settings_class, typed, flags, device.type)
        opened.settings, opened.ignored_flags = dataclasses.replace(fresh, out=out), tuple(ignored)
        return opened
    config_path = os.path.join(out, records.CONFIG_FILE)
    if records.CONFIG_FILE not in present:
        raise UsageError(f"{out} holds {', '.join(present)} but no {records.CONFIG_FILE}: the settings it was "
                         f"trained with are unknown, so it cannot be resumed; choose another --out")
    config = read_record(config_path, "run config")
    saved = settings_from_config(settings_class, config, config_path)
    check_typed_against_saved(settings_class, typed, flags, saved)
    changes = {"out": out, "device": device.type}
    for item in dataclasses.fields(settings_class):
        role = item.metadata.get("resume", FIXED)
        if role == PER_CALL and item.name not in ("out", "device"):
            changes[item.name] = typed.get(item.name, item.default)
        elif role == KEPT and item.name in typed:
            changes[item.name] = typed[item.name]
    try:
        opened.settings = dataclasses.replace(saved, **changes)
    except SettingError as exc:
        raise UsageError(f"argument --{exc.name}: {exc}") from None
    opened.saved_config, opened.ignored_flags = config, tuple(config.get("ignored_flags") or ())
    summary_path = os.path.join(out, records.SUMMARY_FILE)
    if os.path.exists(summary_path):
        summary = read_record(summary_path, "run summary")
        done = summary.get("epochs_completed")
        if summary.get("status") == records.STATUS_COMPLETED and done == opened.settings.epochs:
            print(f"{out}: run already completed ({done} epochs); nothing to do")
            opened.finished_exit = records.EXIT_COMPLETED
        elif summary.get("status") == records.STATUS_DIVERGED:
            print(f"{out}: run diverged after {done} epochs; not resuming", file=sys.stderr)
            opened.finished_exit = records.EXIT_DIVERGED
    return opened


def check_typed_against_saved(settings_class, typed, flags, saved):
    """UsageError naming the first typed setting that differs from the run's saved one, unless it may change."""
    may_change = sorted(f.name for f in dataclasses.fields(settings_class)
                        if f.metadata.get("resume") in (KEPT, PER_CALL))
    allowed = f"only {', '.join(may_change)} may change"
    for name, value in typed.items():
        item = next(f for f in dataclasses.fields(settings_class) if f.name == name)
        role = item.metadata.get("resume", FIXED)
        saved_value = getattr(saved, name)
        canonical = item.metadata["kind"].check(value)
        if name == "epochs" and canonical != saved_value and getattr(saved, "schedule", None) == "cosine":
            raise UsageError(f"--epochs {value}: a cosine schedule's rates depend on the run's length "
                             f"({saved_value} epochs), so a resumed run keeps it; start a new run to train longer")
        if role == FIXED and canonical != saved_value:
            raise UsageError(f"--{name} {item.metadata['kind'].describe(canonical)} differs from the run's "
                             f"{item.metadata['kind'].describe(saved_value)}; a resumed run keeps its settings "
                             f"({allowed})")
    given = {key: value for key, value in flags.items() if key != "hparam"}
    resolved, _ = resolve_minimizer_hparams(saved.minimizer, given)
    typed_values = {key: resolved[key] for key in given if key in saved.minimizer_hparams}
    typed_values.update(parse_hparam_entries(flags.get("hparam") or (), minimizers.hparams(saved.minimizer)))
    for key, value in typed_values.items():
        if value != saved.minimizer_hparams[key]:
            flag = f"--{key} {value}" if key in given else f"--hparam {key}={value}"
            raise UsageError(f"{flag} differs from the run's {saved.minimizer_hparams[key]}; a resumed run keeps "
                             f"its settings ({allowed})")


def read_record(path, what):
    try:
        return records.read_json(path, what)
    except records.RecordError as exc:
        raise UsageError(str(exc)) from None


def summary_status(out):
    try:
        return records.read_json(os.path.join(out, records.SUMMARY_FILE)).get("status")
    except (records.RecordError, AttributeError):
        return None


# ------------------------------------------------------------------------------------- building

def build_minimizer(settings, model):
    """The base optimizer (SGD: lr, momentum, weight decay; AdamW: lr, betas, eps, decoupled weight decay) and
    the settings' minimizer around it; UsageError for values the minimizer refuses."""
    if settings.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=settings.betas, eps=settings.eps,
                                      weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                    weight_decay=settings.weight_decay)
    try:
        return minimizers.create(settings.minimizer, model, optimizer, **settings.minimizer_hparams)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def channels_last_for(settings, device_type):
    """The memory format changes speed, not the model: default to the faster one (see the flag's help)."""
    if settings.channels_last is not None:
        return settings.channels_last
    return device_type == "cpu" or (device_type == "cuda" and settings.precision in ("bf16", "fp16"))


def describe_hparams(settings):
    """"rho=0.05 (default), k=2, ..." for the header line: (default) where the value is the library's."""
    defaults = minimizers.hparams(settings.minimizer)
    return ", ".join(f"{key}={value}" + (" (default)" if defaults.get(key) == value else "")
                     for key, value in settings.minimizer_hparams.items())


def config_record(settings, opened, entry, argv, **records_of_run):
    """config.json: the settings (under their flag names), then the run's records."""
    config = settings.record()
    config.update(records_of_run)
    config.update(ignored_flags=list(opened.ignored_flags), versions=records.versions(),
                  git_commit=records.git_commit())
    saved = opened.saved_config
    config["command"] = saved["command"] if saved else [entry] + list(argv)
    if saved is not None:
        config["resume_commands"] = saved.get("resume_commands", []) + [[entry] + list(argv)]
    return config


def load_initial_weights(settings, model, paths):
    """--pretrained: load the file into the model (UsageError, before anything is written, if it does not fit);
    not when the run resumes from its checkpoint (which holds the weights). Returns the header's note on
    the initial weights: the file, or "random init (no --pretrained)" for a model meant to be fine-tuned."""
    if settings.pretrained is None:
        return " [random init (no --pretrained)]" if settings.model in models.PRETRAINED_SOURCES else ""
    if os.path.exists(paths[records.CHECKPOINT_FILE]):
        return f" [resumed; started from {settings.pretrained}]"
    try:
        fresh = models.load_pretrained(model, settings.pretrained)
    except models.PretrainedError as exc:
        raise UsageError(f"--pretrained {settings.pretrained}: {exc}") from None
    head = f", head {', '.join(fresh)} re-initialised" if fresh else ""
    return f" [pretrained {settings.pretrained}{head}]"


# ------------------------------------------------------------------------------------ checkpoints

def fixed_settings(settings):
    """The settings that shape training (they must not change on --resume), as recorded in a checkpoint."""
    record = settings.record()
    return {f.name: record[f.name] for f in dataclasses.fields(settings)
            if f.metadata.get("resume", FIXED) == FIXED}


def checkpoint_state(epoch, model, minimizer, scheduler, rows, wall_seconds, device, settings):
    return {"epoch": epoch, "model": model.state_dict(), "minimizer": minimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "metrics": rows,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []},
            "wall_seconds": wall_seconds, "settings": fixed_settings(settings)}


def restore(path, device, model, minimizer, scheduler, settings):
    """Restore checkpoint.pt; UsageError (file untouched) if it is unusable or was trained with other
    settings than config.json now says. Returns (last epoch, metric rows, wall seconds so far)."""
    try:
        state = records.load_checkpoint(path, device)
    except records.RecordError as exc:
        raise UsageError(f"{exc} (the file is left as it is; use a new --out to start over)") from None
    trained_with = state.get("settings")
    if trained_with is not None:
        ours = fixed_settings(settings)
        changed = sorted(key for key in ours if key in trained_with and trained_with[key] != ours[key])
        if changed:
            key = changed[0]
            raise UsageError(f"{path} was trained with {key} {trained_with[key]}, but {records.CONFIG_FILE} says "
                             f"{ours[key]} (edited by hand?); the run cannot be resumed")
    try:
        model.load_state_dict(state["model"])
        minimizer.load_state_dict(state["minimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        return int(state["epoch"]), [dict(row) for row in state["metrics"]], float(state["wall_seconds"])
    except Exception as exc:  # missing keys, shape mismatches: all mean "unusable"
        raise UsageError(f"cannot resume from {path}: {records.one_line(exc)} (the file is left as it is; use a "
                         f"new --out to start over)") from None


def resume_point(opened, device, model, minimizer, scheduler):
    """(first epoch to train, metric rows so far, a clock of the run's wall seconds): restored from the
    run's checkpoint when it has one (UsageError if unusable, or if it holds more epochs than the settings)."""
    path = opened.paths[records.CHECKPOINT_FILE]
    if not os.path.exists(path):
        return 1, [], WallClock(0.0)
    last_epoch, rows, wall_before = restore(path, device, model, minimizer, scheduler, opened.settings)
    if last_epoch > opened.settings.epochs:
        raise UsageError(f"--epochs {opened.settings.epochs} is less than the {last_epoch} epochs the run has done")
    return last_epoch + 1, rows, WallClock(wall_before)


class WallClock:
    """Wall seconds of a run over all its sessions: those recorded before this one plus this one's."""

    def __init__(self, before):
        self.before, self.start = before, time.time()

    def seconds(self):
        return self.before + time.time() - self.start


def announce(opened, notes=sys.stderr):
    """The notes every run prints before its data loads, and the trackers' check (UsageError if missing)."""
    for name in opened.ignored_flags:
        print(f"note: --{name} does not apply to {opened.settings.minimizer}; ignored", file=notes)
    trackers.require(opened.settings.tensorboard, opened.settings.wandb)


# ------------------------------------------------------------------------------------------ endings

def main(run, argv=None):
    """Run `run(argv, claim)` and map its ending to an exit status (records.EXIT_*)."""
    claim = records.RunDirClaim()
    stop_signals.install()
    try:
        exit_code = run(argv, claim)
        distributed.close(synchronize=True)  # every rank got here: they leave the process group together
        return exit_code
    except (UsageError, data.DataError) as exc:
        claim.abandon_if_unused()
        if distributed.processes_from_environment().is_main:  # under torchrun every rank has the same error
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return records.EXIT_USAGE
    except StopRequested as stop:
        return report_stop(claim, stop)
    except records.WriteFailed as exc:
        # atomic_write removed its temporary file; the previous version of the file is untouched.
        claim.mark_summary(records.STATUS_FAILED)
        print(f"error: {records.write_failure_text(exc)}; the previous checkpoint is kept; free space, then "
              f"continue with --resume (same --out)", file=sys.stderr)
        return records.EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        # A second Ctrl-C: the last checkpoint is intact (atomic writes), the summary still says "running".
        print("interrupted; continue with --resume (same --out)", file=sys.stderr)
        return records.EXIT_INTERRUPTED
    finally:
        distributed.close()
        stop_signals.restore()
        claim.release()
