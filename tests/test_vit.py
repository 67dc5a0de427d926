"""Vision transformers from timm (models/vit.py), --pretrained, --label_smoothing, and timm as an optional package.

CPU cost is kept tiny: the registry's full-size ViTs are only built (and the CIFAR ones run one 32 x 32
forward); training and the training script run depth-1, 24-wide ViTs (the registry entry replaced by
such a model in this process), also for the 224 px model, whose resize layer is what is tested.
"""
import json
import os
import sys
from contextlib import nullcontext
from functools import partial

import pytest
import torch
import torch.nn.functional as F

import data
import example_cifar
import minimizers
import models
from models import vit
from training import lifecycle
from training.loop import train_one_epoch
from training.records import UsageError
from training.settings import CifarSettings, PackageMissing

needs_timm = pytest.mark.skipif(not vit.timm_available(), reason="timm is not installed (pip install timm)")
SMALL_VIT = dict(depth=1, embed_dim=24, num_heads=2)          # a test-only config of the same architecture
RUN = ["--dataset", "CIFAR10_sample", "--device", "cpu", "--epochs", "1", "--train_subset", "8",
       "--batch_size", "4", "--optimizer", "adamw", "--lr", "1e-3", "--weight_decay", "0.05"]


@pytest.fixture
def small_vits(monkeypatch):
    """The registry's ViTs as depth-1, 24-wide models (same constructors, patch sizes and image sizes)."""
    monkeypatch.setitem(models.MODELS, "vit_tiny_patch4", partial(vit.cifar_vit, "vit_tiny_patch4", **SMALL_VIT))
    monkeypatch.setitem(models.MODELS, "vit_small_patch16_224", partial(vit.vit_small_patch16_224, **SMALL_VIT))


def call_main(capsys, *argv):
    code = example_cifar.main(list(argv))
    return code, capsys.readouterr()


def assert_one_error_line(stderr, text=None):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    if text is not None:
        assert lines[0] == text


# ------------------------------------------------------------------------------------------ models

@needs_timm
@pytest.mark.parametrize("name, width, heads", [("vit_tiny_patch4", 192, 3), ("vit_small_patch4", 384, 6)])
def test_cifar_vits_have_4x4_patches_and_the_timm_widths(name, width, heads):
    torch.manual_seed(0)
    model = models.create_model(name, 10)
    assert model.patch_embed.patch_size == (4, 4) and model.patch_embed.img_size == (32, 32)
    assert model.patch_embed.num_patches == 64 and model.embed_dim == width
    assert len(model.blocks) == 12 and all(block.attn.num_heads == heads for block in model.blocks)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert models.create_model(name, 100).head.out_features == 100


@needs_timm
def test_vit_small_patch16_224_is_timms_model_with_a_resize_layer():
    import timm
    ours = models.create_model("vit_small_patch16_224", 10).state_dict()
    theirs = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10).state_dict()
    assert list(ours) == list(theirs)          # a timm checkpoint loads as is
    assert all(ours[key].shape == theirs[key].shape for key in ours)

    torch.manual_seed(0)
    model = models.create_model("vit_small_patch16_224", 10, **SMALL_VIT).eval()
    seen = []
    model.patch_embed.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert model(images).shape == (2, 10)
    resized = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False, antialias=False)
    assert seen[0].shape == (2, 3, 224, 224) and torch.equal(seen[0], resized)


# -------------------------------------------------------------------------------------- minimizers

def one_step(name, model, **hparams):
    torch.manual_seed(1)
    inputs, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    minimizer = minimizers.create(name, model, optimizer, **hparams)
    before = [p.detach().clone() for p in model.parameters()]

    def closure(objective=None):
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, targets)
        (loss if objective is None else objective(outputs, targets)).backward()
        return loss.detach()

    loss = minimizer.step(closure)
    assert torch.isfinite(loss)
    return [not torch.equal(a, b) for a, b in zip(before, model.parameters())]


@needs_timm
@pytest.mark.parametrize("name", ["SAM", "Lookbehind_SAM"])
@pytest.mark.parametrize("bn_policy", ["every", "clean"])
def test_sam_and_lookbehind_step_a_vit_without_batchnorm(name, bn_policy):
    torch.manual_seed(0)
    model = models.create_model("vit_tiny_patch4", 10, depth=2)    # the real width, 2 of its 12 blocks
    hparams = dict(bn_policy=bn_policy, **({"k": 2, "alpha": -1.0} if name == "Lookbehind_SAM" else {}))
    changed = one_step(name, model, **hparams)
    assert all(changed)                       # every parameter moved (AdamW moves even a zero gradient's weight)


@needs_timm
@pytest.mark.parametrize("name", minimizers.available())
def test_every_minimizer_steps_a_batchnorm_free_model(name):
    torch.manual_seed(0)
    assert any(one_step(name, models.create_model("vit_tiny_patch4", 10, **SMALL_VIT)))


# ---------------------------------------------------------------------------------- label smoothing

def one_batch_dataset(label=3, images=4):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.full((images,), label)
    spec = data.DATASETS["CIFAR10"]
    return data.Dataset("one batch", pixels, labels, pixels, labels, 10,
                        torch.tensor(spec["mean"]).view(3, 1, 1), torch.tensor(spec["std"]).view(3, 1, 1))


@needs_timm
def test_label_smoothing_changes_the_training_loss_as_cross_entropy_says():
    dataset = one_batch_dataset()
    results = {}
    for smoothing in ("0", "0.1"):
        settings, _ = lifecycle.parse_settings(CifarSettings, example_cifar.parser(),
                                               [*RUN, "--model", "vit_tiny_patch4", "--minimizer", "SAM",
                                                "--label_smoothing", smoothing, "--no-channels_last"])
        assert settings.label_smoothing == float(smoothing)
        torch.manual_seed(0)
        model = models.create_model("vit_tiny_patch4", 10, **SMALL_VIT)
        outputs = []
        model.register_forward_hook(lambda module, args, output: outputs.append(output.detach()))
        minimizer = lifecycle.build_minimizer(settings, model)
        loss, _, _, finite = train_one_epoch(1, model, minimizer, dataset, settings, torch.device("cpu"), nullcontext)
        assert finite
        clean = outputs[0]                     # the first pass of the step: the loss it reports
        targets = torch.full((4,), 3)
        assert loss == pytest.approx(F.cross_entropy(clean, targets, label_smoothing=float(smoothing)).item(),
                                     rel=1e-5)
        results[smoothing] = (loss, clean)
    (plain, clean), (smoothed, clean_again) = results["0"], results["0.1"]
    assert torch.equal(clean, clean_again)     # same model, same batch: only the loss differs
    assert smoothed != pytest.approx(plain)


def test_label_smoothing_is_a_checked_fixed_setting_and_continual_runs_have_none():
    for bad in ("1", "-0.1", "nan"):
        with pytest.raises(UsageError, match="--label_smoothing"):
            lifecycle.parse_settings(CifarSettings, example_cifar.parser(), ["--device", "cpu",
                                                                            "--label_smoothing", bad])
    settings, _ = lifecycle.parse_settings(CifarSettings, example_cifar.parser(), ["--device", "cpu"])
    assert settings.label_smoothing == 0.0 and settings.pretrained is None
    old = settings.record()
    del old["label_smoothing"], old["pretrained"]       # a config.json from before these settings
    assert lifecycle.settings_from_config(CifarSettings, old, "config.json") == settings
    from training.settings import ContinualSettings
    assert ContinualSettings.label_smoothing == 0.0


# ---------------------------------------------------------------------------------------- pretrained

@needs_timm
def test_pretrained_loads_every_weight_but_a_head_of_another_shape(tmp_path):
    torch.manual_seed(1)
    source = models.create_model("vit_tiny_patch4", 100, **SMALL_VIT)      # another dataset's head
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    torch.manual_seed(0)
    model = models.create_model("vit_tiny_patch4", 10, **SMALL_VIT)
    head_before = model.head.weight.detach().clone()
    assert models.load_pretrained(model, str(tmp_path / "weights.pth")) == ["head.weight", "head.bias"]
    loaded, saved = model.state_dict(), source.state_dict()
    for key in loaded:
        if key.startswith("head."):
            assert loaded[key].shape[0] == 10
        else:
            assert torch.equal(loaded[key], saved[key]), key
    assert torch.equal(model.head.weight, head_before)     # the fresh head, untouched

    # Same classes: the head loads too; a .safetensors file or a checkpoint's "model" entry reads the same.
    same = models.create_model("vit_tiny_patch4", 100, **SMALL_VIT)
    from safetensors.torch import save_file
    save_file(source.state_dict(), str(tmp_path / "weights.safetensors"))
    torch.save({"epoch": 3, "model": source.state_dict()}, tmp_path / "checkpoint.pt")
    for name in ("weights.safetensors", "checkpoint.pt"):
        assert models.load_pretrained(same, str(tmp_path / name)) == []
        assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), saved.values()))


@needs_timm
def test_pretrained_run_starts_from_the_file_and_resumes_without_it(small_vits, tmp_path, capsys, monkeypatch):
    torch.manual_seed(1)
    source = models.create_model("vit_tiny_patch4", 100)       # the small model of the fixture
    path = str(tmp_path / "pretrained.pth")
    torch.save(source.state_dict(), path)
    started = {}
    original = lifecycle.load_initial_weights

    def spy(settings, model, paths):
        note = original(settings, model, paths)
        started.update({key: value.detach().clone() for key, value in model.state_dict().items()})
        return note

    monkeypatch.setattr(lifecycle, "load_initial_weights", spy)
    out = str(tmp_path / "run")
    code, output = call_main(capsys, *RUN, "--model", "vit_tiny_patch4", "--minimizer", "Lookbehind_SAM", "--k", "2",
                             "--alpha", "-1", "--label_smoothing", "0.1", "--pretrained", path, "--out", out)
    assert code == 0, output.err
    assert f"vit_tiny_patch4 [pretrained {path}, head head.weight, head.bias re-initialised]" in output.out
    for key, value in source.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(started[key], value), key
    assert started["head.weight"].shape == (10, 24)
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert config["pretrained"] == path and config["label_smoothing"] == 0.1

    os.remove(path)       # the checkpoint holds the weights now: a resumed run does not read the file
    code, output = call_main(capsys, "--out", out, "--resume", "--epochs", "2")
    assert code == 0, output.err
    assert f"[resumed; started from {path}]" in output.out


@needs_timm
def test_a_224_model_without_pretrained_says_random_init_and_trains(small_vits, tmp_path, capsys):
    code, output = call_main(capsys, *RUN, "--model", "vit_small_patch16_224", "--minimizer", "SAM",
                             "--out", str(tmp_path / "run"))
    assert code == 0, output.err
    assert "vit_small_patch16_224 [random init (no --pretrained)] on CIFAR10_sample" in output.out


@needs_timm
def test_a_file_of_another_architecture_or_no_file_is_one_error_line_and_nothing_written(tmp_path, capsys,
                                                                                         small_vits):
    torch.save(models.create_model("resnet8", 10).state_dict(), tmp_path / "resnet8.pth")
    torch.save(vit.cifar_vit("vit_tiny_patch4", 10, depth=1, embed_dim=48, num_heads=2).state_dict(),
               tmp_path / "wider.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    cases = {"missing.pth": "no such file", "resnet8.pth": "another architecture: ",
             "wider.pth": "of another shape (first: cls_token, (1, 1, 48) in the file, (1, 1, 24) in the model)",
             "garbage.pth": "not a state dict file"}
    for name, fragment in cases.items():
        out = tmp_path / f"run_{name}"
        code, output = call_main(capsys, *RUN, "--model", "vit_tiny_patch4", "--pretrained", str(tmp_path / name),
                                 "--out", str(out))
        assert code == 2, name
        assert_one_error_line(output.err)
        assert output.err.startswith(f"error: --pretrained {tmp_path / name}: ") and fragment in output.err, output.err
        assert not os.path.exists(out), name
    assert "entries of the model missing (first: cls_token); 44 unexpected entries (first: conv1.weight)" in \
        call_main(capsys, *RUN, "--model", "vit_tiny_patch4", "--pretrained", str(tmp_path / "resnet8.pth"),
                  "--out", str(tmp_path / "again"))[1].err


# ---------------------------------------------------------------------------------------- timm missing

def test_without_timm_a_vit_is_one_error_line_and_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)      # import timm fails as where it is not installed
    assert not vit.timm_available() and models.missing_package("vit_tiny_patch4") == "timm"
    assert models.missing_package("resnet8") is None
    for name in ("vit_tiny_patch4", "vit_small_patch4", "vit_small_patch16_224"):
        out = tmp_path / name
        code, output = call_main(capsys, *RUN, "--model", name, "--out", str(out))
        assert code == 2
        assert_one_error_line(output.err, f"error: --model {name}: needs the timm package (pip install timm)")
        assert output.out == "" and not os.path.exists(out)
        with pytest.raises(models.MissingPackage, match="pip install timm"):
            models.create_model(name, 10)
    # The registry itself, and every other model, work without timm.
    assert call_main(capsys, *RUN, "--model", "resnet8", "--minimizer", "SGD", "--out", str(tmp_path / "r"))[0] == 0


def test_without_timm_a_vit_run_cannot_resume_and_says_why(monkeypatch):
    settings, _ = lifecycle.parse_settings(CifarSettings, example_cifar.parser(), ["--device", "cpu"])
    record = dict(settings.record(), model="vit_tiny_patch4")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(PackageMissing) as caught:
        lifecycle.settings_from_config(CifarSettings, record, "runs/x/config.json")
    assert str(caught.value) == ("runs/x/config.json: --model vit_tiny_patch4: needs the timm package "
                                 "(pip install timm); install it to resume the run")
