"""Model registry: create_model(name, num_classes) and available_models(); load_pretrained(model, path).

A dictionary of constructors, so a model name from the command line is looked up, never
evaluated. Every model returns logits; INPUT_SIZES names the models built for one image size (the CIFAR
ViTs: 32 px); the others accept any size (vit_small_patch16_224 resizes its input to 224 px). The vision transformers
(models/vit.py) need timm, an optional package: REQUIRES names it and missing_package(name)
says whether it is installed, without importing it.
"""
import os
from functools import partial

import torch
import torch.nn as nn

from . import vit
from .cifar_resnet import CifarResNet
from .resnet import reduced_resnet18, resnet18, resnet34, resnet50
from .vit import MissingPackage  # noqa: F401  (create_model raises it for a model whose package is missing)
from .wide_resnet import WideResNet

def _torchvision_resnet(name, num_classes=1000):
    import torchvision
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


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
    # Vision transformers from timm (optional: pip install timm). 4 x 4 patches of 32 x 32 images, from scratch.
    "vit_tiny_patch4": partial(vit.cifar_vit, "vit_tiny_patch4"),
    "vit_small_patch4": partial(vit.cifar_vit, "vit_small_patch4"),
    # timm's ViT-S/16 at 224 px for fine-tuning (--pretrained): its first layer resizes the images.
    "vit_small_patch16_224": vit.vit_small_patch16_224,
    # torchvision's ImageNet ResNets (7x7 stride-2 stem + max-pool, for 224 px inputs), randomly initialised.
    "imagenet_resnet18": partial(_torchvision_resnet, "resnet18"),
    "imagenet_resnet50": partial(_torchvision_resnet, "resnet50"),
}
# The image size a model is built for (None: any). CIFAR ResNets run on 224 px too, at 49x the cost.
INPUT_SIZES = {"vit_tiny_patch4": 32, "vit_small_patch4": 32}

# Models that need an optional package (imported by their constructor only).
REQUIRES = {name: vit.PACKAGE for name in ("vit_tiny_patch4", "vit_small_patch4", "vit_small_patch16_224")}
# Models meant to be fine-tuned from pretrained weights, and where those weights come from (no download at
# run time: saved once on a machine with network, then passed as a file to load_pretrained / --pretrained).
PRETRAINED_SOURCES = {"vit_small_patch16_224": 'timm.create_model("vit_small_patch16_224", pretrained=True)'}


def available_models():
    return list(MODELS)


def create_model(name, num_classes=10, **options):
    """Build a freshly initialised model (seed torch beforehand for reproducibility).

    options: constructor arguments of that model (e.g. width=20 for reduced_resnet18)."""
    key = str(name).lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[key](num_classes=num_classes, **options)


def input_size(name):
    """The image size model `name` is built for (32), or None when it takes any size."""
    return INPUT_SIZES.get(str(name).lower().replace("-", "_"))


def missing_package(name):
    """The optional package model `name` needs and cannot import (e.g. "timm"), else None. Imports nothing."""
    package = REQUIRES.get(str(name).lower().replace("-", "_"))
    if package == vit.PACKAGE and not vit.timm_available():
        return package
    return None


# ------------------------------------------------------------------------------ pretrained weights

class PretrainedError(ValueError):
    """A --pretrained file that cannot be loaded into the model; str() is one line saying why."""


def classifier_prefix(model):
    """State-dict prefix of the classifier head ("head." for timm models, "linear." for the ResNets): timm's
    get_classifier(), else the last nn.Linear."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module) or not any(True for _ in head.parameters()):
        linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
        head = linears[-1] if linears else None
    for name, module in model.named_modules():
        if head is not None and module is head:
            return name + "."
    return None


def read_state_dict(path):
    """A state dict from a file: .safetensors (safetensors), else torch.load (weights only): a bare state dict,
    or a checkpoint holding one under "state_dict" or "model" (timm's train.py, our checkpoint.pt)."""
    if not os.path.isfile(path):
        raise PretrainedError("no such file")
    try:
        if path.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise PretrainedError("a .safetensors file needs the safetensors package "
                                      "(pip install safetensors)") from None
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PretrainedError:
        raise
    except Exception as exc:  # not a torch/safetensors file, a truncated one, pickled code
        raise PretrainedError(f"not a state dict file ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None
    if isinstance(state, dict) and not all(torch.is_tensor(v) for v in state.values()):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v)
                                                           for k, v in state.items()):
        raise PretrainedError("not a state dict (expected a mapping of parameter names to tensors)")
    return state


def load_pretrained(model, path):
    """Load the state dict in `path` into `model` (in place). The classifier head (classifier_prefix) keeps
    its fresh initialisation where the file's differs in shape (another number of classes) or is absent;
    any other missing, unexpected or differently shaped entry raises PretrainedError (another architecture).
    Returns the names of the head entries that were not loaded (re-initialised)."""
    state = read_state_dict(path)
    own = model.state_dict()
    head = classifier_prefix(model)

    def in_head(key):
        return head is not None and key.startswith(head)

    missing = [key for key in own if key not in state and not in_head(key)]
    unexpected = [key for key in state if key not in own and not in_head(key)]
    reshaped = [key for key in own if key in state and state[key].shape != own[key].shape and not in_head(key)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} entries of the model missing (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected entries (first: {unexpected[0]})")
    if reshaped:
        key = reshaped[0]
        problems.append(f"{len(reshaped)} entries of another shape (first: {key}, {tuple(state[key].shape)} in the "
                        f"file, {tuple(own[key].shape)} in the model)")
    if problems:
        raise PretrainedError(f"another architecture: {'; '.join(problems)}")
    loaded = {key: value for key, value in state.items() if key in own and value.shape == own[key].shape}
    model.load_state_dict(loaded, strict=False)
    return [key for key in own if key not in loaded]
