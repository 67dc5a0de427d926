"""The sweeps' grids as Python data: which runs a sweep has, each one training-script command.

A grid is a name, its options (command-line flags of `python -m scripts.launch.sweep <grid>`) and a
function from those options to a list of Run. Add one with `register(Grid(...))`, from this
module or any module that scripts.launch.sweep imports (GRID_MODULES); a grid names the training script
its runs use (Run.entry), which must take --out, --resume and --device.

Minimizer hyperparameters a minimizer does not take are dropped using minimizers.hparams(), so a
grid may offer k/alpha/rho to every minimizer. Run names come from training.records.run_name.
"""
import argparse
import os
from dataclasses import dataclass

import data
import minimizers
from training import records
from training.cli import UsageError, model_name
from training.settings import HPARAM_FLAGS

# The paper's SAM/ASAM family: these get --rho-sam / --rho-asam; every other minimizer keeps its
# library default unless a per-minimizer value is given (--set GSAM:rho_max=0.05).
PAPER_FAMILY = ("SAM", "ASAM", "Multistep_SAM", "Multistep_ASAM", "Lookahead_SAM", "Lookahead_ASAM",
                "Lookbehind_SAM", "Lookbehind_ASAM")
PAPER_MINIMIZERS = ("SGD",) + PAPER_FAMILY[:2] + PAPER_FAMILY[2:]


@dataclass(frozen=True)
class Run:
    name: str                       # the run directory's name inside the sweep directory
    args: tuple                     # the training script's flags, without --out/--resume/--device
    entry: str = "example_cifar.py"  # the training script, relative to the repository root


@dataclass(frozen=True)
class Option:
    """One grid option: --<name with dashes>, parsed by `type`, a list if nargs is '+'."""
    name: str
    default: object
    help: str
    type: object = str
    nargs: object = None
    repeatable: bool = False   # given several times, the values add up (--set A:x=1 --set B:y=2)


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    options: tuple
    build: object                   # function(options namespace) -> list of Run


GRIDS = {}


def register(grid):
    GRIDS[grid.name] = grid
    return grid


# ------------------------------------------------------------------------- CIFAR grid helpers

def number(text):
    """A grid value as typed, checked to be a number (kept as text: the command gets what was typed)."""
    float(text)
    return text


def hparam_setting(text):
    """MINIMIZER:KEY=VALUE (one hyperparameter for one minimizer's runs)."""
    target, sep, rest = text.partition(":")
    key, eq, value = rest.partition("=")
    if not sep or not eq or not key or not value:
        raise ValueError(f"expected MINIMIZER:KEY=VALUE, got {text!r}")
    return minimizers.canonical_name(target), key.strip(), value.strip()


COMMON_OPTIONS = (
    Option("datasets", ["CIFAR10", "CIFAR100"], "datasets (each with every --models entry)", nargs="+"),
    Option("models", ["resnet34"], "models", nargs="+"),
    Option("pairs", None, "DATASET:MODEL pairs instead of --datasets x --models", nargs="+"),
    Option("seeds", ["0", "1", "2"], "seeds", type=int, nargs="+"),
    Option("epochs", 200, "epochs of every run", type=int),
    Option("rho_sam", "0.05", "rho of the SAM-type minimizers of the paper", type=number),
    Option("rho_asam", "0.5", "rho of the ASAM-type minimizers of the paper", type=number),
    Option("set", [], "MINIMIZER:KEY=VALUE: a hyperparameter for that minimizer's runs (repeatable), "
                      "e.g. GSAM:rho_max=0.05 or SSAM_F:rho=0.2", type=hparam_setting, nargs="+", repeatable=True),
)
STEP_OPTIONS = (
    Option("lb_k", "2", "Lookbehind k", type=number),
    Option("lb_alpha", "-1", "Lookbehind alpha (-1: adaptive)", type=number),
    Option("ms_k", "2", "Multistep k", type=number),
    Option("la_k", "5", "Lookahead k", type=number),
    Option("la_alpha", "0.5", "Lookahead alpha", type=number),
)


def pairs(opts):
    if opts.pairs:
        out = []
        for pair in opts.pairs:
            dataset, sep, model = pair.partition(":")
            if not sep:
                raise UsageError(f"--pairs {pair!r}: expected DATASET:MODEL")
            out.append((dataset, model))
    else:
        out = [(dataset, model) for dataset in opts.datasets for model in opts.models]
    checked = []
    for dataset, model in out:
        try:
            checked.append((data.canonical_dataset_name(dataset), model_name(model)))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return checked


def minimizer_names(names):
    try:
        return [minimizers.canonical_name(name) for name in names]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def paper_rho(minimizer, opts):
    if minimizer in PAPER_FAMILY:
        return opts.rho_asam if "ASAM" in minimizer else opts.rho_sam
    return None


def step_hparams(minimizer, opts):
    family = minimizer.split("_")[0]
    return {"Lookbehind": {"k": opts.lb_k, "alpha": opts.lb_alpha}, "Multistep": {"k": opts.ms_k},
            "Lookahead": {"k": opts.la_k, "alpha": opts.la_alpha}}.get(family, {})


def cifar_run(opts, dataset, model, minimizer, seed, hparams):
    """One example_cifar.py run. hparams: flag values (text) by hyperparameter name; those the minimizer
    does not take (minimizers.hparams) are dropped, None means its library default; --set values
    for this minimizer are added last."""
    flags, named = minimizer_flags(opts, minimizer, hparams)
    args = ["--dataset", dataset, "--model", model, "--minimizer", minimizer, "--seed", str(seed),
            "--epochs", str(opts.epochs)] + flags
    return Run(records.run_name(dataset, model, minimizer, named, seed), tuple(args))


def minimizer_flags(opts, minimizer, hparams):
    """(the minimizer's hyperparameter flags, {rho/k/alpha: value} for the run name): hparams the
    minimizer does not take are dropped, None means its library default, --set values come last."""
    accepted = minimizers.hparams(minimizer)
    chosen = {key: value for key, value in hparams.items() if value is not None and key in accepted}
    for target, key, value in opts.set:
        if target == minimizer:
            if key not in accepted:
                raise UsageError(f"--set {target}:{key}=...: {target} has no hyperparameter {key!r} "
                                 f"(it takes: {', '.join(accepted)})")
            chosen[key] = value
    args = []
    for key, value in chosen.items():
        args += [f"--{key}", value] if key in HPARAM_FLAGS else ["--hparam", f"{key}={value}"]
    return args, {key: float(chosen[key]) for key in records.NAMED_HPARAMS if key in chosen}


# ------------------------------------------------------------------------- the paper's grids

def generalization(opts):
    """dataset x model x minimizer x seed (the paper's Table 1)."""
    return [cifar_run(opts, dataset, model, minimizer, seed,
                      {"rho": paper_rho(minimizer, opts), **step_hparams(minimizer, opts)})
            for dataset, model in pairs(opts)
            for minimizer in minimizer_names(opts.minimizers)
            for seed in opts.seeds]


def kalpha(opts):
    """Lookbehind's k x alpha, plus each family's plain baseline (SAM, ASAM) at the same seeds."""
    chosen = minimizer_names(opts.minimizers)
    if opts.baselines == ["auto"]:
        baselines = [m.removeprefix("Lookbehind_") for m in chosen if m.startswith("Lookbehind_")]
    else:
        baselines = minimizer_names(opts.baselines)
    runs = []
    for dataset, model in pairs(opts):
        runs += [cifar_run(opts, dataset, model, minimizer, seed, {"rho": paper_rho(minimizer, opts), "k": k,
                                                                   "alpha": alpha})
                 for minimizer in chosen for k in opts.k_values for alpha in opts.alphas for seed in opts.seeds]
        runs += [cifar_run(opts, dataset, model, minimizer, seed, {"rho": paper_rho(minimizer, opts)})
                 for minimizer in baselines for seed in opts.seeds]
    return runs


def rho(opts):
    """Every minimizer at every rho of its family (SAM-type: --rhos-sam, ASAM-type: --rhos-asam)."""
    chosen = minimizer_names(opts.minimizers)
    for minimizer in chosen:
        if "rho" not in minimizers.hparams(minimizer):
            raise UsageError(f"{minimizer} has no rho; leave it out of --minimizers")
    return [cifar_run(opts, dataset, model, minimizer, seed, {"rho": value, **step_hparams(minimizer, opts)})
            for dataset, model in pairs(opts)
            for minimizer in chosen
            for value in (opts.rhos_asam if "ASAM" in minimizer else opts.rhos_sam)
            for seed in opts.seeds]


register(Grid(
    "generalization", "dataset x model x minimizer x seed: the paper's Table 1",
    COMMON_OPTIONS + STEP_OPTIONS + (
        Option("models", ["resnet34", "wrn28_2", "resnet50"], "models", nargs="+"),
        Option("minimizers", list(PAPER_MINIMIZERS), "minimizers", nargs="+"),
    ), generalization))
register(Grid(
    "kalpha", "Lookbehind's k x alpha grid plus the SAM/ASAM baselines: the paper's sensitivity heatmaps",
    COMMON_OPTIONS + (
        Option("minimizers", ["Lookbehind_SAM", "Lookbehind_ASAM"], "Lookbehind minimizers", nargs="+"),
        Option("k_values", ["2", "5", "10"], "k values", type=number, nargs="+"),
        Option("alphas", ["0.2", "0.5", "0.8", "-1"], "alpha values (-1: adaptive)", type=number, nargs="+"),
        Option("baselines", ["auto"], "baseline minimizers (auto: SAM/ASAM for the Lookbehind ones given)",
               nargs="+"),
    ), kalpha))
register(Grid(
    "rho", "every minimizer over a grid of rho: the paper's sensitivity to the neighbourhood size",
    COMMON_OPTIONS + STEP_OPTIONS + (
        Option("minimizers", ["SAM", "Multistep_SAM", "Lookbehind_SAM", "ASAM", "Multistep_ASAM",
                              "Lookbehind_ASAM"], "minimizers (each must have a rho)", nargs="+"),
        Option("rhos_sam", ["0.01", "0.02", "0.05", "0.1", "0.2"], "rho values of SAM-type minimizers",
               type=number, nargs="+"),
        Option("rhos_asam", ["0.1", "0.2", "0.5", "1.0", "2.0"], "rho values of ASAM-type minimizers",
               type=number, nargs="+"),
    ), rho))


# ------------------------------------------------------------------------- lifelong learning

def continual(opts):
    """minimizer x seed on a split-CIFAR benchmark (example_continual.py). Seeds outer, so a partly
    finished sweep has whole seeds; one seed gives every minimizer the same class split and task order."""
    from training.continual import benchmark_name
    try:
        benchmark, model = benchmark_name(opts.benchmark), model_name(opts.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runs = []
    for seed in opts.seeds:
        for minimizer in minimizer_names(opts.minimizers):
            flags, named = minimizer_flags(opts, minimizer, step_hparams(minimizer, opts))
            args = ["--benchmark", benchmark, "--model", model, "--minimizer", minimizer, "--seed", str(seed)] + flags
            runs.append(Run(records.run_name(benchmark, model, minimizer, named, seed), tuple(args),
                            entry="example_continual.py"))
    return runs


register(Grid(
    "continual", "minimizer x seed on split-CIFAR (example_continual.py): the paper's lifelong-learning claim; "
                 "table: python -m scripts.reports.continual_table results/<name> --paired SAM --paired ASAM",
    (Option("benchmark", "split_cifar100", "split_cifar10 or split_cifar100"),
     Option("model", "reduced_resnet18", "model"),
     Option("seeds", ["0", "1", "2", "3", "4"], "seeds", type=int, nargs="+"),
     Option("minimizers", ["SGD", "SAM", "ASAM", "Lookbehind_SAM", "Lookbehind_ASAM", "Lookahead_SAM",
                           "Multistep_SAM"], "minimizers (rho: each one's library default; change with --set)",
            nargs="+"),
     Option("set", [], "MINIMIZER:KEY=VALUE: a hyperparameter for that minimizer's runs (repeatable)",
            type=hparam_setting, nargs="+", repeatable=True),
     ) + STEP_OPTIONS, continual))


# ------------------------------------------------------------------------- vision transformers

# Our reading of the ViT protocol (docs/vit.md): AdamW, cosine with linear warm-up, label smoothing.
VIT_RECIPE = ("--optimizer", "adamw", "--lr", "1e-3", "--weight_decay", "0.05", "--schedule", "cosine",
              "--warmup_epochs", "5", "--label_smoothing", "0.1")


def vit(opts):
    """dataset x ViT x minimizer x seed from scratch on CIFAR, every run with the AdamW recipe
    (VIT_RECIPE); "SGD" is the plain base-optimizer step, i.e. plain AdamW."""
    return [Run(run.name, run.args + VIT_RECIPE)
            for run in generalization(opts)]


register(Grid(
    "vit", "dataset x ViT x minimizer x seed from scratch with AdamW (docs/vit.md); needs timm",
    COMMON_OPTIONS + STEP_OPTIONS + (
        Option("models", ["vit_tiny_patch4", "vit_small_patch4"], "models", nargs="+"),
        Option("minimizers", ["SGD", "SAM", "Lookbehind_SAM"],
               "minimizers (SGD: the plain AdamW step)", nargs="+"),
    ), vit))


# ------------------------------------------------------------------------- ImageNet and fine-tuning

# Our reading of the ImageNet protocol (docs/imagenet.md): the field's standard ResNet recipe (torchvision's
# reference: SGD lr 0.1 for batch 256, momentum 0.9, weight decay 1e-4, lr x 0.1 every 30 of 90 epochs).
IMAGENET_RECIPE = ("--batch_size", "256", "--lr", "0.1", "--weight_decay", "1e-4", "--schedule", "multistep",
                   "--milestones", "30", "60")
# Our fine-tuning recipe (docs/vit.md): AdamW, cosine with a 1-epoch warm-up, label smoothing, batch 128.
FINETUNE_RECIPE = ("--optimizer", "adamw", "--lr", "1e-4", "--weight_decay", "0.05", "--schedule", "cosine",
                   "--warmup_epochs", "1", "--label_smoothing", "0.1", "--batch_size", "128")


def imagenet(opts):
    """ImageNet x model x minimizer x seed from scratch, every run with IMAGENET_RECIPE (the sweep's --data-dir
    is the folder holding train/ and val/)."""
    opts = argparse.Namespace(**vars(opts), datasets=["ImageNet"], pairs=None)
    return [Run(run.name, run.args + IMAGENET_RECIPE) for run in generalization(opts)]


def finetune(opts):
    """dataset x pretrained model x minimizer x seed, every run from --pretrained with FINETUNE_RECIPE."""
    if not opts.pretrained:
        raise UsageError("the finetune grid needs --pretrained PATH, the pretrained weights file of --models "
                         "(docs/vit.md says how to save one)")
    weights = ("--pretrained", os.path.abspath(opts.pretrained))
    return [Run(run.name, run.args + FINETUNE_RECIPE + weights) for run in generalization(opts)]


register(Grid(
    "imagenet", "model x minimizer x seed on ImageNet from scratch (docs/imagenet.md); --data-dir: the folder "
                "holding train/ and val/",
    tuple(option for option in COMMON_OPTIONS if option.name not in ("datasets", "pairs", "epochs", "seeds")) +
    STEP_OPTIONS + (
        Option("models", ["imagenet_resnet50"], "models", nargs="+"),
        Option("minimizers", ["SGD", "SAM", "Lookbehind_SAM"], "minimizers", nargs="+"),
        Option("seeds", ["0"], "seeds", type=int, nargs="+"),
        Option("epochs", 90, "epochs of every run", type=int),
    ), imagenet))
register(Grid(
    "finetune", "dataset x pretrained model x minimizer x seed, fine-tuned from --pretrained (docs/vit.md)",
    tuple(option for option in COMMON_OPTIONS if option.name not in ("models", "epochs")) + STEP_OPTIONS + (
        Option("models", ["vit_small_patch16_224"], "models (all of the architecture --pretrained holds)",
               nargs="+"),
        Option("minimizers", ["SGD", "SAM", "Lookbehind_SAM"], "minimizers (SGD: the plain AdamW step)", nargs="+"),
        Option("epochs", 10, "epochs of every run", type=int),
        Option("pretrained", None, "the pretrained weights file every run starts from"),
    ), finetune))
