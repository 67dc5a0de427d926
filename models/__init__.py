"""Model registry: create_model(name, num_classes) and available_models().

A dictionary of constructors, so a model name from the command line is looked up, never
evaluated. All models take 3 x 32 x 32 inputs and return logits.
"""
from functools import partial

from .cifar_resnet import CifarResNet
from .resnet import reduced_resnet18, resnet18, resnet34, resnet50
from .wide_resnet import WideResNet

MODELS = {
    # The authors' CIFAR ResNets (pytorch-cifar style, 3x3 stem, no max-pool).
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    # Continual learning's reduced ResNet-18 (GEM / A-GEM / Mirzadeh et al.): 20 base filters.
    "reduced_resnet18": reduced_resnet18,
    # Wide ResNets of the paper and the SAM literature.
    "wrn16_8": partial(WideResNet, 16, 8),
    "wrn28_2": partial(WideResNet, 28, 2),
    "wrn28_10": partial(WideResNet, 28, 10),
    # He et al. 2016 CIFAR ResNets, small enough for CPU runs; resnet8 is for smoke tests.
    "resnet8": partial(CifarResNet, 8),
    "resnet20": partial(CifarResNet, 20),
    "resnet56": partial(CifarResNet, 56),
}


def available_models():
    return list(MODELS)


def create_model(name, num_classes=10, **options):
    """Build a freshly initialised model (seed torch beforehand for reproducibility).

    options: constructor arguments of that model (e.g. width=20 for reduced_resnet18)."""
    key = str(name).lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[key](num_classes=num_classes, **options)
