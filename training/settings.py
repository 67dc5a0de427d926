"""The training entry points' settings, each declared once: its type and range, default, help, and
whether a resumed run may change it.

One declaration serves three readers:
  * the command line: build_parser(Settings) makes every flag (with its --dash-alias) from it;
  * config.json: a resumed run reads its settings back through the same checks, so a hand-edited
    file (a string lr, a negative batch size, an unknown model) is one line, not a traceback;
  * the loop: a frozen dataclass (CifarSettings, ContinualSettings), built and validated once, with
    the minimizer's hyperparameters resolved once against the library's defaults.

Every check raises SettingError (a ValueError naming the setting); the run lifecycle
(training/lifecycle.py) turns it into records.UsageError, one line and exit status 2, before
anything is written.
"""
import argparse
import dataclasses
import math
from dataclasses import dataclass, field

import data
import minimizers
import models
from minimizers.sampa import SAMPA_BN_POLICIES   # every policy (SAMPa accepts one more)
from training import distributed, records
from training.cli import Parser, model_name
from training.records import UsageError

# ---- ranges (the documented bounds of the CLI; the library itself takes any value its classes accept)
MAX_SEED = 2**63 - 1        # torch.manual_seed and numpy's SeedSequence both take 0 .. 2^63 - 1
MAX_REAL = 1e6              # every real-valued setting (lr, weight decay, rho, ...): far inside float32
MAX_INNER_STEPS = 100       # k: one step is k + 1 (or 2k) passes and a stop signal waits for the step to end
MAX_EPOCHS = 100_000
MAX_IMAGES = 2**31 - 1      # batch sizes and subsets

# ---- what --resume does with a setting
FIXED = "fixed"             # shapes training: a resumed run must keep the saved value
KEPT = "kept"               # may change on --resume; the saved value unless given again
PER_CALL = "per call"       # may change on --resume; this call's flag or its default (device, trackers)


class PackageMissing(UsageError):
    """A setting needs an optional package that is not installed (--model vit_*: timm): the same one line on the
    command line and on --resume, where it is not a hand-edited config.json."""


class SettingError(ValueError):
    """A setting outside its declared type or range: .name is the setting, str() the reason."""

    def __init__(self, name, reason):
        super().__init__(reason)
        self.name = name


# ------------------------------------------------------------------------------------------ kinds

class Kind:
    """A setting's type and range: parse() reads a flag's text, check() a value (a default, a value read
    from config.json); both return the value in its one canonical form or raise ValueError."""
    flag_choices = None

    def parse(self, text):
        return self.check(text)

    def check(self, value):
        return value

    def describe(self, value):
        return str(value)


@dataclass(frozen=True)
class Integer(Kind):
    low: int
    high: int
    why: str = ""            # appended to a too-small message (e.g. "BatchNorm needs two images per batch")

    def parse(self, text):
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        return self.check(value)

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < self.low:
            raise ValueError(f"must be >= {self.low}{f' ({self.why})' if self.why else ''}, got {value}")
        if value > self.high:
            raise ValueError(f"must be <= {self.high}, got {value}")
        return value


@dataclass(frozen=True)
class Real(Kind):
    low: float
    high: float = MAX_REAL
    low_open: bool = False   # (low, ...] instead of [low, ...]
    high_open: bool = False  # [..., high) instead of [..., high]

    def parse(self, text):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        return self.check(value)

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if self.low_open and value <= self.low:
            raise ValueError(f"must be > {self.low:g}, got {value:g}")
        if value < self.low:
            raise ValueError(f"must be >= {self.low:g}, got {value:g}")
        if self.high_open and value >= self.high:
            raise ValueError(f"must be < {self.high:g}, got {value:g}")
        if value > self.high:
            raise ValueError(f"must be <= {self.high:g}, got {value:g}")
        return value


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple

    @property
    def flag_choices(self):
        return list(self.choices)

    def check(self, value):
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


@dataclass(frozen=True)
class Name(Kind):
    """A name looked up in a registry (dataset, model, minimizer, benchmark): canonical spelling."""
    lookup: object

    def check(self, value):
        if not isinstance(value, str):
            raise ValueError(f"expected a name, got {value!r}")
        return self.lookup(value)


@dataclass(frozen=True)
class Boolean(Kind):
    def check(self, value):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class Text(Kind):
    def check(self, value):
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty text, got {value!r}")
        return value


@dataclass(frozen=True)
class Optional(Kind):
    """`kind` or None (None: a default that depends on other settings or on the machine)."""
    kind: Kind

    @property
    def flag_choices(self):
        return self.kind.flag_choices

    def parse(self, text):
        return self.kind.parse(text)

    def check(self, value):
        return None if value is None else self.kind.check(value)

    def describe(self, value):
        return str(value) if value is None else self.kind.describe(value)


@dataclass(frozen=True)
class ListOf(Kind):
    """One or more values of `kind` (nargs="+"), held as a tuple."""
    kind: Kind

    def parse(self, text):
        return self.kind.parse(text)

    def check(self, value):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"expected one or more values, got {value!r}")
        return tuple(self.kind.check(item) for item in value)

    def describe(self, value):
        return " ".join(map(str, value))


SEED = Integer(0, MAX_SEED)
EPOCHS = Integer(1, MAX_EPOCHS)
IMAGES = Integer(2, MAX_IMAGES, why="BatchNorm needs two images per batch")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cuda", "mps", "cpu")
BASE_OPTIMIZERS = ("sgd", "adamw")


def setting(default, kind, help, resume=FIXED, flag="value", default_text=None):
    """A dataclass field declaring one setting. flag: "value" (--name VALUE), "switch" (--name /
    --no-name), "store_true" (--name only), "list" (--name V [V ...])."""
    return field(default=default, metadata=dict(kind=kind, help=help, resume=resume, flag=flag,
                                                default_text=default_text))


# ----------------------------------------------------------------- minimizer hyperparameter flags

def library_default(key):
    """The library defaults of hyperparameter `key`, from the registry: "library default 0.05 for SAM, ...;
    0.5 for ...", or "library default X" when every minimizer that takes it has the same."""
    groups = minimizers.defaults_by_value(key)
    if len(groups) == 1:
        return f"library default {next(iter(groups))}"
    return "library default " + "; ".join(f"{value} for {', '.join(names)}" for value, names in groups.items())


@dataclass(frozen=True)
class MinimizerFlags:
    """The minimizer hyperparameter flags: inputs only. They are resolved once, against the chosen
    minimizer's library defaults, into the settings' `minimizer_hparams` (what config.json keeps)."""
    rho: float = setting(None, Optional(Real(0.0)), f"perturbation radius ({library_default('rho')})")
    eta: float = setting(None, Optional(Real(0.0)), f"ASAM's eta ({library_default('eta')})")
    k: int = setting(None, Optional(Integer(1, MAX_INNER_STEPS)),
                     f"inner steps per outer step, at most {MAX_INNER_STEPS} ({library_default('k')})")
    alpha: float = setting(None, Optional(Real(-1.0, 1.0)),
                           f"slow-weight step size in (0, 1], -1 = adaptive ({library_default('alpha')})")
    bn_policy: str = setting(None, Optional(Choice(SAMPA_BN_POLICIES)),
                             "BatchNorm statistics from every pass, the clean passes only, or (SAMPa) the "
                             f"perturbed passes only ({library_default('bn_policy')})")
    passes: str = setting(None, Optional(Choice(minimizers.PASSES)),
                          f"Lookbehind: k+1 shared gradient evaluations or the authors' literal 2k "
                          f"({library_default('passes')})")
    minibatch_switching: bool = setting(None, Optional(Boolean()),
                                        f"Lookbehind: a new minibatch for every inner step "
                                        f"({library_default('minibatch_switching')})", flag="switch")
    descent_gradient: str = setting(None, Optional(Choice(minimizers.DESCENT_GRADIENTS)),
                                    f"Multistep: descend with the last or the mean of the k ascent gradients "
                                    f"({library_default('descent_gradient')})")
    split_rho: bool = setting(None, Optional(Boolean()),
                              f"Multistep: split rho over the k ascent steps ({library_default('split_rho')})",
                              flag="switch")
    hparam: tuple = setting((), Kind(), "any other hyperparameter of the minimizer (repeatable), typed like "
                                        "its default", flag="append")


HPARAM_FLAGS = tuple(f.name for f in dataclasses.fields(MinimizerFlags) if f.name != "hparam")
# Hyperparameters that set the work of one step, wherever they come from (a flag or --hparam).
WORK_BOUNDS = {"k": MAX_INNER_STEPS, "num_samples": MAX_IMAGES}


def hparam_kind(key, default):
    """The check of one resolved hyperparameter value: the flag's kind, else by the default's type."""
    declared = {f.name: f.metadata["kind"] for f in dataclasses.fields(MinimizerFlags)}.get(key)
    if declared is not None and key != "hparam":
        return declared.kind
    if isinstance(default, bool):
        return Boolean()
    if isinstance(default, int):
        return Integer(-MAX_IMAGES, WORK_BOUNDS.get(key, MAX_IMAGES))
    if isinstance(default, float) or default is None:
        return Optional(Real(-MAX_REAL)) if default is None else Real(-MAX_REAL)
    return Text()


def parse_hparam_entries(entries, defaults):
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
        try:
            out[key] = hparam_kind(key, default).check(value)
        except ValueError as exc:
            raise UsageError(f"--hparam {key}: {exc}") from None
    return out


def resolve_minimizer_hparams(minimizer, given):
    """(hyperparameters for minimizers.create, names of given flags the minimizer does not take).

    given: {flag name: value} of the hyperparameter flags that were set (None values are not set)
    plus "hparam": the --hparam KEY=VALUE entries. The result is the library defaults of `minimizer`
    overridden by what was given."""
    defaults = minimizers.hparams(minimizer)
    flags = {name: value for name, value in given.items() if name != "hparam" and value is not None}
    ignored = sorted(name for name in flags if name not in defaults)
    resolved = dict(defaults)
    resolved.update({name: value for name, value in flags.items() if name in defaults})
    resolved.update(parse_hparam_entries(given.get("hparam") or (), defaults))
    return resolved, ignored


def check_minimizer_hparams(minimizer, hparams):
    """A resolved hyperparameter dict (e.g. read back from config.json): exactly the minimizer's keys,
    each of its default's type and in range. Returns a new dict; SettingError otherwise."""
    if not isinstance(hparams, dict):
        raise SettingError("minimizer_hparams", f"expected a mapping, got {hparams!r}")
    defaults = minimizers.hparams(minimizer)
    if set(hparams) != set(defaults):
        raise SettingError("minimizer_hparams", f"{minimizer} takes exactly {', '.join(defaults)}; "
                                                f"got {', '.join(hparams) or 'none'}")
    out = {}
    for key, default in defaults.items():
        kind = hparam_kind(key, default)
        value = hparams[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        try:
            out[key] = kind.check(value)
        except ValueError as exc:
            raise SettingError(f"minimizer_hparams.{key}", str(exc)) from None
    return out


# ------------------------------------------------------------------------------- the settings objects

@dataclass(frozen=True)
class CommonSettings:
    """Settings of every training entry point. A subclass redeclares a field to change its default."""
    data_dir: str = setting("./data", Text(), "folder holding (or receiving) the CIFAR 'python version' folders; "
                                               "ImageNet: the folder holding train/ and val/", resume=KEPT)
    download: bool = setting(True, Boolean(), "download CIFAR-10/100 when missing (default); --no-download fails "
                                              "with instructions instead", resume=PER_CALL, flag="switch",
                             default_text="")
    model: str = setting("resnet34", Name(model_name), f"one of {', '.join(models.available_models())}")
    lr: float = setting(0.1, Real(0.0, low_open=True), "initial learning rate")
    optimizer: str = setting("sgd", Choice(BASE_OPTIMIZERS), "the base optimizer every minimizer wraps: sgd (the "
                                                             "authors') or adamw (decoupled weight decay, e.g. ViTs)")
    momentum: float = setting(None, Optional(Real(0.0, 1.0)), "SGD momentum (default 0.9; an SGD flag)",
                              default_text="")
    betas: tuple = setting(None, Optional(ListOf(Real(0.0, 1.0, high_open=True))),
                           "AdamW's beta1 beta2 (default 0.9 0.999; an AdamW flag)", flag="list", default_text="")
    eps: float = setting(None, Optional(Real(0.0, 1.0, low_open=True)),
                         "AdamW's epsilon (default 1e-08; an AdamW flag)", default_text="")
    weight_decay: float = setting(5e-4, Real(0.0), "weight decay: SGD's (added to the gradient) or AdamW's "
                                                   "(decoupled)")
    batch_size: int = setting(128, IMAGES, "training batch size; under torchrun the global batch, split over "
                                           "the processes")
    minimizer: str = setting("Lookbehind_SAM", Name(minimizers.canonical_name),
                             f"one of {', '.join(minimizers.available())} (case-insensitive)")
    # Resolved once from the minimizer flags (MinimizerFlags); what minimizers.create receives.
    minimizer_hparams: dict = field(default=None, metadata=dict(derived=True))
    seed: int = setting(0, SEED, "model init and data order, 0..2^63-1")
    augment: bool = setting(True, Boolean(), "random crop (4 px zero padding) + horizontal flip of the training "
                                             "images (default, the authors' recipe); --no-augment trains on the "
                                             "images as stored", flag="switch", default_text="")
    device: str = setting("auto", Choice(DEVICES), "auto: cuda, else mps, else cpu", resume=PER_CALL)
    precision: str = setting("fp32", Choice(PRECISIONS), "fp32; bf16 autocast around the forward pass; or fp16 "
                                                         "autocast with a GradScaler (a step with a non-finite "
                                                         "gradient is skipped whole; docs/fp16.md)")
    channels_last: bool = setting(None, Optional(Boolean()),
                                  "model and inputs in channels_last memory format (default: on where it is "
                                  "faster: on the CPU (measured 1.2-1.3x for a forward+backward, "
                                  "results/benchmarks.md) and on CUDA with bf16 or fp16)", flag="switch", default_text="")
    compile: bool = setting(False, Boolean(), "torch.compile the model", resume=KEPT, flag="store_true",
                            default_text="")
    tensorboard: bool = setting(False, Boolean(), "also log the per-epoch metrics, config and figure to "
                                                  "TensorBoard (--out/tensorboard)", resume=PER_CALL,
                                flag="store_true", default_text="")
    wandb: bool = setting(False, Boolean(), "also log them to Weights & Biases (offline under --out unless "
                                            "WANDB_MODE is set)", resume=PER_CALL, flag="store_true",
                          default_text="")
    out: str = setting(None, Optional(Text()), "run directory (default: runs/<name from the settings>)",
                       resume=PER_CALL, default_text="")

    def __post_init__(self):
        for item in dataclasses.fields(self):
            if item.metadata.get("derived"):
                continue
            try:
                value = item.metadata["kind"].check(getattr(self, item.name))
            except ValueError as exc:
                raise SettingError(item.name, str(exc)) from None
            object.__setattr__(self, item.name, value)
        package = models.missing_package(self.model)
        if package is not None:
            raise PackageMissing(f"--model {self.model}: needs the {package} package (pip install {package})")
        if self.minimizer_hparams is None:
            object.__setattr__(self, "minimizer_hparams", dict(minimizers.hparams(self.minimizer)))
        object.__setattr__(self, "minimizer_hparams",
                           check_minimizer_hparams(self.minimizer, self.minimizer_hparams))
        self.resolve_optimizer()
        self.validate()

    SGD_MOMENTUM = 0.9     # --momentum when not given (an entry point may have another default)

    def resolve_optimizer(self):
        """Fill in the chosen base optimizer's defaults; refuse the other optimizer's flags."""
        if self.optimizer == "sgd":
            for name in ("betas", "eps"):
                if getattr(self, name) is not None:
                    raise UsageError(f"--{name} is an AdamW setting; add --optimizer adamw or leave it out")
            if self.momentum is None:
                object.__setattr__(self, "momentum", self.SGD_MOMENTUM)
            return
        if self.momentum is not None:
            raise UsageError("--momentum is an SGD setting; AdamW's moments are --betas (add --optimizer sgd or "
                             "leave it out)")
        betas = (0.9, 0.999) if self.betas is None else self.betas
        if len(betas) != 2:
            raise SettingError("betas", f"expected two values (beta1 beta2), got {len(betas)}")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "eps", 1e-8 if self.eps is None else self.eps)

    def validate(self):
        """Checks across settings (a subclass adds its own); SettingError or UsageError."""

    # ---- views
    def hparam(self, key):
        """A resolved minimizer hyperparameter, or None if the minimizer has none of that name."""
        return self.minimizer_hparams.get(key)

    def named_hparams(self):
        return {key: self.hparam(key) for key in records.NAMED_HPARAMS}

    def record(self):
        """config.json's settings: every field under its flag name (tuples as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    def summary_keys(self):
        """The settings summary.json repeats (records.summary_record)."""
        return {"epochs": self.epochs, "dataset": self.dataset, "model": self.model, "minimizer": self.minimizer,
                "seed": self.seed, **self.named_hparams()}


@dataclass(frozen=True)
class CifarSettings(CommonSettings):
    """example_cifar.py: one model, one dataset, one minimizer. Defaults: the authors' recipe."""
    dataset: str = setting("CIFAR10", Name(data.canonical_dataset_name),
                           f"one of {', '.join(data.available_datasets())}")
    epochs: int = setting(200, EPOCHS, "training epochs; on --resume it may be raised with the multistep "
                                       "schedule (the new epochs follow the milestones), not with cosine",
                          resume=KEPT)
    schedule: str = setting("multistep", Choice(("multistep", "cosine")),
                            "multistep: lr x gamma at each milestone, as the authors; cosine: to 0 over --epochs")
    milestones: tuple = setting((50, 100, 150), ListOf(EPOCHS), "multistep milestone epochs", flag="list")
    warmup_epochs: float = setting(0.0, Real(0.0, MAX_EPOCHS),
                                   "linear lr warm-up over the first W epochs, per step (0 = none, the authors' "
                                   "recipe)")
    gamma: float = setting(0.1, Real(0.0, low_open=True), "multistep decay factor")
    ascent_gradient: str = setting("global", Choice(distributed.ASCENT_GRADIENTS),
                                   "torchrun runs: global averages the ascent gradient over all processes (the "
                                   "single-GPU semantics); local keeps each process's own (m-sharpness, DDP "
                                   "no_sync)")
    sync_bn: bool = setting(False, Boolean(), "torchrun runs on CUDA: SyncBatchNorm, BatchNorm statistics over "
                                              "the global batch (default: per-process statistics)",
                            flag="store_true", default_text="")
    train_subset: int = setting(None, Optional(IMAGES), "train on the first N training images only (quick runs; "
                                                        "ImageNet: N images drawn once with a fixed seed)")
    workers: int = setting(None, Optional(Integer(0, 1024)),
                           "ImageNet: DataLoader worker processes reading the images (default: this process's share of "
                           "the cores available minus one, at most 16; 0: read in the training process). Changes "
                           "speed only",
                           resume=PER_CALL, default_text="")
    eval_every: int = setting(1, EPOCHS, "evaluate on the test set every N epochs and after the last one (1: every "
                                         "epoch, as the authors); training is the same either way, only the test "
                                         "columns of the other epochs stay empty", resume=KEPT)
    label_smoothing: float = setting(0.0, Real(0.0, 1.0, high_open=True),
                                     "label smoothing of the training loss (cross-entropy's label_smoothing, e.g. "
                                     "0.1 in ViT recipes); the test loss stays plain cross-entropy (0 = none, the "
                                     "authors' recipe)")
    pretrained: str = setting(None, Optional(Text()),
                              "initial weights: a local state dict file (.pth/.pt or .safetensors, e.g. timm's) "
                              "loaded before training; a classifier head of another shape is re-initialised for "
                              "the dataset's classes. Never downloaded (docs/vit.md says how to get one); without "
                              "it a model starts from random init")

    def validate(self):
        if self.schedule == "multistep" and self.gamma > 1:
            peak = self.lr * self.gamma ** len(self.milestones)
            if not peak <= MAX_REAL:
                raise UsageError(f"--lr {self.lr:g} x --gamma {self.gamma:g} ^ {len(self.milestones)} milestones "
                                 f"reaches {peak:g}, above the bound {MAX_REAL:g} of a learning rate")
        if self.workers is not None and not data.is_image_folder(self.dataset):
            raise UsageError(f"--workers is for ImageNet (image files read by workers); {self.dataset} is held on the "
                             f"device whole, leave --workers out")
        if data.is_image_folder(self.dataset) and models.input_size(self.model) not in (None, data.folder.CROP_SIZE):
            raise UsageError(f"--model {self.model} takes {models.input_size(self.model)} x "
                             f"{models.input_size(self.model)} images, {self.dataset} gives {data.folder.CROP_SIZE} x "
                             f"{data.folder.CROP_SIZE}; use a model for 224 px inputs (e.g. imagenet_resnet50)")
        if self.sync_bn and self.device != "cuda":
            raise UsageError(f"--sync_bn needs --device cuda (torch's SyncBatchNorm runs on GPUs only), got "
                             f"--device {self.device}")

    def default_out(self):
        return f"runs/{records.run_name(self.dataset, self.model, self.minimizer, self.named_hparams(), self.seed)}"


@dataclass(frozen=True)
class ContinualSettings(CommonSettings):
    """example_continual.py: one model trained on a sequence of tasks. Defaults: the field's usual setting
    (GEM / A-GEM / Mirzadeh et al. 2020); None values are resolved from the benchmark at construction."""
    benchmark: str = setting("split_cifar10", Name(lambda text: _continual().benchmark_name(text)),
                             "split_cifar10 or split_cifar100")
    dataset: str = setting(None, Optional(Name(data.canonical_dataset_name)),
                           "base dataset: split_cifar10 takes CIFAR10 (default) or CIFAR10_sample (offline), "
                           "split_cifar100 CIFAR100", default_text="")
    num_tasks: int = setting(None, Optional(Integer(1, 10_000)),
                             "tasks in the sequence (default: all, 5 for split_cifar10, 20 for split_cifar100); "
                             "fewer = the first ones", default_text="")
    classes_per_task: int = setting(None, Optional(Integer(2, 10_000)),
                                    "classes in each task (default: 2 for split_cifar10, 5 for split_cifar100)",
                                    default_text="")
    task_seed: int = setting(None, Optional(SEED), "seed of the class split and task order (default: --seed)",
                             default_text="")
    single_head: bool = setting(False, Boolean(), "class-incremental: one head over all classes, no task identity "
                                                  "(default: multi-head)", flag="store_true", default_text="")
    train_per_task: int = setting(None, Optional(IMAGES), "train on N images of each task only (class-balanced, "
                                                          "the first of each class)")
    test_per_task: int = setting(None, Optional(Integer(1, MAX_IMAGES)),
                                 "test on N test images of each task only (class-balanced, the first of each class)")
    model: str = setting("reduced_resnet18", Name(model_name), f"one of {', '.join(models.available_models())}")
    width: int = setting(None, Optional(Integer(1, 4096)),
                         "base filters of a ResNet (reduced_resnet18: 20, resnet18/34/50: 64 when not given)")
    epochs_per_task: int = setting(1, EPOCHS, "training epochs on each task")
    batch_size: int = setting(10, IMAGES, "training batch size")
    lr: float = setting(0.03, Real(0.0, low_open=True), "learning rate")
    momentum: float = setting(None, Optional(Real(0.0, 1.0)), "SGD momentum (default 0; an SGD flag)",
                              default_text="")
    weight_decay: float = setting(0.0, Real(0.0), "weight decay: SGD's (added to the gradient) or AdamW's "
                                                  "(decoupled)")
    schedule: str = setting("constant", Choice(("constant", "cosine")),
                            "LR shape over each task (or the whole sequence with --no-lr_reset): constant or "
                            "cosine to 0")
    lr_reset: bool = setting(True, Boolean(), "restart the LR schedule at every task (default); --no-lr_reset: one "
                                              "schedule over the whole sequence", flag="switch", default_text="")
    task_lr_decay: float = setting(1.0, Real(0.0, low_open=True),
                                   "multiply task t's LR by this ** t (Mirzadeh et al.'s per-task decay; 1 = none)")
    minimizer: str = setting("SGD", Name(minimizers.canonical_name),
                             f"one of {', '.join(minimizers.available())} (case-insensitive)")
    warmup_epochs = 0.0   # the loop's warm-up: none in a continual run
    label_smoothing = 0.0  # the loop's training loss: plain cross-entropy in a continual run
    SGD_MOMENTUM = 0.0    # the field's plain SGD

    def validate(self):
        continual = _continual()
        spec = continual.BENCHMARKS[self.benchmark]
        dataset = spec["datasets"][0] if self.dataset is None else self.dataset
        if dataset not in spec["datasets"]:
            raise UsageError(f"--benchmark {self.benchmark} is built from {' or '.join(spec['datasets'])}, "
                             f"not --dataset {dataset}")
        per_task = spec["classes_per_task"] if self.classes_per_task is None else self.classes_per_task
        num_classes = data.DATASETS[dataset]["num_classes"]
        num_tasks = num_classes // per_task if self.num_tasks is None else self.num_tasks
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "classes_per_task", per_task)
        object.__setattr__(self, "num_tasks", num_tasks)
        object.__setattr__(self, "task_seed", self.seed if self.task_seed is None else self.task_seed)
        try:
            continual.task_classes(num_classes, per_task, num_tasks, self.task_seed)
        except ValueError as exc:
            raise UsageError(f"--num_tasks {num_tasks} --classes_per_task {per_task}: {exc}") from None
        peak = self.lr * max(1.0, self.task_lr_decay) ** (num_tasks - 1)
        if not peak <= MAX_REAL:
            raise UsageError(f"--lr {self.lr:g} x --task_lr_decay {self.task_lr_decay:g} ^ {num_tasks - 1} reaches "
                             f"{peak:g}, above the bound {MAX_REAL:g} of a learning rate")

    @property
    def epochs(self):
        """Epochs of the whole sequence (the loop's epoch counter runs over all tasks)."""
        return self.num_tasks * self.epochs_per_task

    def task_classes(self):
        return _continual().task_classes(data.DATASETS[self.dataset]["num_classes"], self.classes_per_task,
                                         self.num_tasks, self.task_seed)

    def default_out(self):
        return (f"runs/continual/"
                f"{records.run_name(self.benchmark, self.model, self.minimizer, self.named_hparams(), self.seed)}")

    def summary_keys(self):
        return {**super().summary_keys(), "benchmark": self.benchmark}


# The training scripts and their settings (a launcher checks a run's command against them before starting it).
ENTRY_SETTINGS = {"example_cifar.py": CifarSettings, "example_continual.py": ContinualSettings}


def _continual():
    from training import continual   # training.continual imports data only; imported late to keep this light
    return continual


# ------------------------------------------------------------------------------------------- parsing

def declarations(settings_class):
    """(name, metadata) of every flag of an entry point: its settings, then the minimizer flags."""
    fields = [f for f in dataclasses.fields(settings_class) if not f.metadata.get("derived")]
    return [(f.name, f.default, f.metadata) for f in fields] + \
           [(f.name, f.default, f.metadata) for f in dataclasses.fields(MinimizerFlags)]


def _help(default, meta):
    text = meta["help"]
    shown = meta["default_text"]
    if shown is None:
        shown = "" if default is None else f"default {meta['kind'].describe(default)}"
    return f"{text} ({shown})" if shown else text


def build_parser(settings_class, description):
    """The command line of an entry point, from its settings' declarations. Every flag defaults to
    "not given" (argparse.SUPPRESS), so parse_args returns exactly what was typed."""
    parser = Parser(description=description, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    for name, default, meta in declarations(settings_class):
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        kind, kwargs = meta["kind"], dict(dest=name, help=_help(default, meta))
        if meta["flag"] == "switch":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif meta["flag"] == "store_true":
            kwargs["action"] = "store_true"
        elif meta["flag"] == "append":
            kwargs.update(action="append", metavar="KEY=VALUE")
        else:
            kwargs.update(type=_flag_type(kind), choices=kind.flag_choices)
            if meta["flag"] == "list":
                kwargs["nargs"] = "+"
        parser.add_argument(*names, **kwargs)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint (its settings come from its config.json)")
    return parser


def _flag_type(kind):
    def parse(text):
        try:
            return kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = type(kind).__name__.lower()  # argparse names the type in some messages
    return parse


def split_typed(settings_class, typed):
    """(settings typed, minimizer flags typed, resume?) of a parse_args result (a dict)."""
    typed = dict(typed)
    resume = typed.pop("resume", False)
    flag_names = {f.name for f in dataclasses.fields(MinimizerFlags)}
    flags = {key: typed.pop(key) for key in list(typed) if key in flag_names}
    if "hparam" in flags:
        flags["hparam"] = tuple(flags["hparam"])
    return typed, flags, resume


def resume_role(settings_class, name):
    for item in dataclasses.fields(settings_class):
        if item.name == name:
            return item.metadata.get("resume", FIXED)
    return FIXED


# ------------------------------------------------------------------------------------ the reference

def _range_text(kind):
    if isinstance(kind, Optional):
        return _range_text(kind.kind)
    if isinstance(kind, ListOf):
        return f"one or more: {_range_text(kind.kind)}"
    if isinstance(kind, Integer):
        powers = {2**63 - 1: "2^63-1", 2**31 - 1: "2^31-1"}
        return f"integer {kind.low}..{powers.get(kind.high, kind.high)}"
    if isinstance(kind, Real):
        return f"number {'>' if kind.low_open else '>='} {kind.low:g}, {'<' if kind.high_open else '<='} {kind.high:g}"
    if isinstance(kind, Choice):
        return " \\| ".join(map(str, kind.choices))
    if isinstance(kind, Boolean):
        return "on/off"
    if isinstance(kind, Name):
        return "a name (see help)"
    if isinstance(kind, Text):
        return "text"
    return "KEY=VALUE (repeatable)"


RESUME_TEXT = {FIXED: "kept", KEPT: "may change (saved unless given)", PER_CALL: "may change (this call's)"}


def reference_markdown():
    """docs/cli.md: every flag of every training script, from the declarations (a test keeps the file current)."""
    lines = ["# Command-line reference", "",
             "Generated from `training/settings.py` by `python -m training.settings > docs/cli.md` (a test checks",
             "that this file is current). Every value is checked where it is typed and again when a resumed run",
             "reads it back from its `config.json`; a value outside its range is one `error:` line and exit",
             "status 2. *On --resume*: *kept* settings must equal the run's recorded value (a different one is",
             "refused); the minimizer flags are compared with the run's resolved `minimizer_hparams`.", ""]
    for entry, settings_class in ENTRY_SETTINGS.items():
        lines += [f"## `{entry}`", "", "| flag | default | values | on --resume | what it does |",
                  "|---|---|---|---|---|"]
        for name, default, meta in declarations(settings_class):
            flag = f"`--{name}`" + (" / `--no-" + name + "`" if meta["flag"] == "switch" else "")
            shown = "" if default in (None, ()) else f"`{meta['kind'].describe(default)}`"
            role = "compared" if name in HPARAM_FLAGS or name == "hparam" else RESUME_TEXT[meta.get("resume", FIXED)]
            lines.append(f"| {flag} | {shown} | {_range_text(meta['kind'])} | {role} | "
                         f"{meta['help'].replace('|', '/')} |")
        lines.append("| `--resume` | | | | continue the run in `--out` from its checkpoint (its settings come "
                     "from its config.json) |")
        lines.append("")
    lines += ["## Exit statuses and run statuses", "",
              "Every training script (and `scripts.launch.sweep`, which records them per run) ends with one of these "
              "(`training/records.py`, `ENDINGS`):", "",
              "| exit | summary.json status | sweep / collect status | what happened |", "|---|---|---|---|"]
    for code, summary, collected, meaning in records.ENDINGS:
        lines.append(f"| {'—' if code is None else code} "
                     f"| {f'`{summary}`' if summary else '—'} | `{collected}` | {meaning} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
