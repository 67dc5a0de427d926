"""Model registry: the architectures of the paper, with their known parameter counts."""
import pytest
import torch
import torch.nn as nn

import models

# Parameter counts for 10 classes (published / pytorch-cifar / Zagoruyko & Komodakis).
EXPECTED_MILLION_PARAMETERS = {
    "resnet18": 11.17, "resnet34": 21.28, "resnet50": 23.52,
    "wrn16_8": 10.96, "wrn28_2": 1.47, "wrn28_10": 36.48,
    "resnet20": 0.27, "resnet56": 0.85,
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED_MILLION_PARAMETERS))
def test_parameter_counts(name):
    model = models.create_model(name, num_classes=10)
    assert count(model) / 1e6 == pytest.approx(EXPECTED_MILLION_PARAMETERS[name], abs=0.01)


def test_every_model_maps_cifar_images_to_logits():
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 32, 32)
    for name in models.available_models():
        if name in ("wrn28_10", "wrn16_8", "resnet50", "resnet34"):
            continue  # large; their shapes are covered by the parameter counts and the test below
        if name in models.REQUIRES:
            continue  # the timm ViTs: tests/test_vit.py (skipped there where timm is not installed)
        for classes in (10, 100):
            model = models.create_model(name, classes)
            assert model(inputs).shape == (2, classes), name


@pytest.mark.parametrize("name", ["resnet18", "wrn16_8", "resnet20"])
def test_cifar_stem_without_max_pool(name):
    model = models.create_model(name)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.kernel_size == (3, 3) and first_conv.stride == (1, 1) and first_conv.in_channels == 3
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_resnet_widths_and_bottleneck():
    resnet18, resnet50 = models.create_model("resnet18"), models.create_model("resnet50")
    assert resnet18.linear.in_features == 512 and resnet50.linear.in_features == 2048
    assert [len(stage) for stage in (resnet50.layer1, resnet50.layer2, resnet50.layer3, resnet50.layer4)] == [3, 4, 6, 3]
    # A projection shortcut (1x1 conv + BN) exactly where the shape changes.
    assert isinstance(resnet18.layer1[0].shortcut, nn.Identity)
    assert isinstance(resnet18.layer2[0].shortcut, nn.Sequential)


def test_small_resnet_option_a_shortcuts_have_no_parameters():
    model = models.create_model("resnet56")
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [9, 9, 9]
    shortcut = model.layer2[0].shortcut
    assert count(shortcut) == 0
    x = torch.randn(1, 16, 32, 32)
    y = shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()


def test_wide_resnet_widths():
    model = models.create_model("wrn28_2")
    assert [len(g) for g in (model.group1, model.group2, model.group3)] == [4, 4, 4]
    assert model.group1[0].conv1.out_channels == 32 and model.group3[0].conv1.out_channels == 128
    assert models.create_model("wrn16_8").linear.in_features == 512


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="available"):
        models.create_model("vgg16")
    assert isinstance(models.create_model("WRN28_2"), nn.Module)  # case-insensitive


def test_same_seed_same_weights():
    torch.manual_seed(5)
    a = models.create_model("resnet20")
    torch.manual_seed(5)
    b = models.create_model("resnet20")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_imagenet_resnets_are_torchvisions_with_the_published_counts():
    """25.56M (ResNet-50) and 11.69M (ResNet-18) parameters with 1,000 classes, as published; 224 px in."""
    assert count(models.create_model("imagenet_resnet50", 1000)) == 25_557_032
    assert count(models.create_model("imagenet_resnet18", 1000)) == 11_689_512
    model = models.create_model("imagenet_resnet18", 7).eval()
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 7)
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.kernel_size == (7, 7)
