"""ImageNet's folder layout (data/folder.py) on a tiny folder of real JPEGs the tests write.

The transforms are torchvision's own (RandomResizedCrop + flip, Resize + CenterCrop) draw for draw; an
epoch's batches depend on (seed, epoch) only, not on the number of workers or processes; example_cifar.py
trains on the folder, resumes exactly at an epoch boundary and runs under torchrun; a missing, empty or
mismatched folder and an unreadable image are one line and exit 2 with nothing written.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms import functional as TF

import data
import example_cifar
from data import folder
from scripts.tools.make_image_folder import write_image_folder
from tests.test_cli import assert_one_error_line, checkpoint, read_metrics, run_cli, without_timing
from tests.test_distributed import torchrun

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 6, 3
RUN = ["--dataset", "ImageNet", "--model", "resnet8", "--batch_size", "4", "--device", "cpu", "--seed", "0",
       "--minimizer", "Lookbehind_SAM", "--k", "2", "--alpha", "-1"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    written = write_image_folder(root, CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, min_side=40, max_side=96)
    assert written == {"train": CLASSES * TRAIN_PER_CLASS, "val": CLASSES * VAL_PER_CLASS}
    return root


def some_images():
    """PIL images of several shapes, the extreme ones taking RandomResizedCrop's fallback branch."""
    generator = torch.Generator().manual_seed(3)
    shapes = [(60, 80), (300, 200), (7, 500), (500, 9), (224, 224), (33, 257)]
    return [TF.to_pil_image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator))
            for h, w in shapes]


# ----------------------------------------------------------------------------- transforms = torchvision's

def test_crop_parameters_are_torchvisions_draw_for_draw():
    for image in some_images():
        for seed in range(40):
            torch.manual_seed(seed)
            expected = T.RandomResizedCrop.get_params(image, list(folder.SCALE), list(folder.RATIO))
            got = folder.random_resized_crop_params(image.height, image.width, torch.Generator().manual_seed(seed))
            assert got == expected, (image.size, seed)


def test_train_transform_is_torchvisions_pipeline():
    reference = T.Compose([T.RandomResizedCrop(folder.CROP_SIZE), T.RandomHorizontalFlip(), T.PILToTensor()])
    flipped = 0
    for image in some_images():
        for seed in range(8):
            torch.manual_seed(seed)
            expected = reference(image)
            got = folder.train_transform(image, torch.Generator().manual_seed(seed))
            assert got.dtype == torch.uint8 and got.shape == (3, 224, 224)
            assert torch.equal(got, expected), (image.size, seed)
            torch.manual_seed(seed)
            crop = TF.pil_to_tensor(T.RandomResizedCrop(folder.CROP_SIZE)(image))
            flipped += not torch.equal(crop, expected)
    assert 0 < flipped < 48  # both branches of the flip were taken


def test_eval_transform_is_resize_256_and_center_crop_224():
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    for image in some_images():
        assert torch.equal(folder.eval_transform(image), reference(image))


# ----------------------------------------------------------------------------- the loader

def epoch_batches(dataset, seed, epoch, rank=0, world_size=1, batch_size=4):
    return [(inputs.clone(), labels.clone(), size) for inputs, labels, size in
            data.train_shards(dataset, batch_size, seed, epoch, rank=rank, world_size=world_size)]


def test_batches_depend_on_seed_and_epoch_only(image_folder):
    single = data.load_dataset("ImageNet", image_folder, "cpu", workers=0)
    parallel = data.load_dataset("ImageNet", image_folder, "cpu", workers=2)
    assert single.num_classes == CLASSES and single.train_labels.shape[0] == CLASSES * TRAIN_PER_CLASS
    first = epoch_batches(single, seed=1, epoch=1)
    assert [size for _, _, size in first] == [4, 4, 4, 4, 2]   # 18 images, drop_last=False
    again = epoch_batches(parallel, seed=1, epoch=1)         # two worker processes: the same batches
    for (a, la, _), (b, lb, _) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other = epoch_batches(single, seed=1, epoch=2)
    assert not torch.equal(first[0][0], other[0][0])          # a new epoch: new order and crops
    labels = torch.cat([l for _, l, _ in first])
    assert sorted(labels.tolist()) == sorted(single.train_labels.tolist())  # each image once per epoch
    inputs = torch.cat([x for x, _, _ in first])
    assert inputs.dtype == torch.float32 and inputs.shape[1:] == (3, 224, 224)
    assert abs(inputs.mean().item()) < 1.5                       # normalised with ImageNet's statistics


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_contiguous_shards_of_the_same_global_batches(image_folder, world_size):
    dataset = data.load_dataset("ImageNet", image_folder, "cpu", workers=0)
    whole = epoch_batches(dataset, seed=5, epoch=3)
    shards = [epoch_batches(dataset, seed=5, epoch=3, rank=r, world_size=world_size) for r in range(world_size)]
    kept = data.num_train_batches(dataset, 4, world_size)  # 3 processes: the final batch of 2 is skipped
    assert kept == (5 if world_size == 2 else 4) and all(len(s) == kept for s in shards)
    for index, (inputs, labels, size) in enumerate(whole[:kept]):
        assert torch.equal(torch.cat([s[index][0] for s in shards]), inputs)
        assert torch.equal(torch.cat([s[index][1] for s in shards]), labels)
        assert all(s[index][2] == size for s in shards)


def test_test_batches_cover_val_in_order_with_the_eval_transform(image_folder):
    dataset = data.load_dataset("ImageNet", image_folder, "cpu", workers=0)
    inputs = torch.cat([x for x, _ in data.test_batches(dataset, 4)])
    assert inputs.shape[0] == CLASSES * VAL_PER_CLASS
    first = folder.eval_transform(folder.read_image(dataset.test_files[0]))
    assert torch.allclose(inputs[0], data.normalize(first, dataset.mean, dataset.std))
    halves = [torch.cat([x for x, _ in data.test_batches(dataset, 4, rank=r, world_size=2)]) for r in (0, 1)]
    assert torch.equal(torch.cat(halves), inputs)


def test_train_subset_is_a_fixed_draw(image_folder):
    a = data.load_dataset("ImageNet", image_folder, "cpu", train_subset=7, workers=0)
    b = data.load_dataset("ImageNet", image_folder, "cpu", train_subset=7, workers=0)
    assert a.train_files == b.train_files and len(a.train_files) == 7
    assert len(set(a.train_label_list)) > 1  # not just the first class's folder


# ----------------------------------------------------------------------------- bad folders

def broken_folders(root):
    """{name: (folder, fragment of the error)} of folders each missing one piece of the layout."""
    cases = {"missing": (os.path.join(root, "nowhere"), "does not exist")}
    no_val = os.path.join(root, "no_val")
    shutil.copytree(os.path.join(root, "good", "train"), os.path.join(no_val, "train"))
    cases["no_val"] = (no_val, "val does not exist")
    empty = os.path.join(root, "empty")
    os.makedirs(os.path.join(empty, "train", "a"))
    os.makedirs(os.path.join(empty, "val", "a"))
    cases["empty"] = (empty, "has no images")
    no_classes = os.path.join(root, "no_classes")
    os.makedirs(os.path.join(no_classes, "train"))
    cases["no_classes"] = (no_classes, "has no class folders")
    mismatched = os.path.join(root, "mismatched")
    shutil.copytree(os.path.join(root, "good"), mismatched)
    val = os.path.join(mismatched, "val")
    first = sorted(os.listdir(val))[0]
    os.rename(os.path.join(val, first), os.path.join(val, "n99999999_unicorn"))
    cases["mismatched"] = (mismatched, "differ from train/'s")
    return cases


@pytest.fixture(scope="module")
def bad_folders(image_folder, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad"))
    shutil.copytree(image_folder, os.path.join(root, "good"))
    return broken_folders(root)


@pytest.mark.parametrize("case", ["missing", "no_val", "empty", "no_classes", "mismatched"])
def test_bad_folders_are_one_line_exit_2_and_nothing_written(bad_folders, case, capsys, tmp_path):
    directory, fragment = bad_folders[case]
    out = tmp_path / "run"
    code = example_cifar.main([*RUN, "--data_dir", directory, "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_error_line(err)
    assert fragment in err, err
    assert not out.exists()


def test_an_unreadable_image_is_named(image_folder, tmp_path):
    root = str(tmp_path / "corrupt")
    shutil.copytree(image_folder, root)
    victim = sorted(os.listdir(os.path.join(root, "train")))[1]
    victim = os.path.join(root, "train", victim, sorted(os.listdir(os.path.join(root, "train", victim)))[0])
    with open(victim, "wb") as f:
        f.write(b"not a jpeg")
    dataset = data.load_dataset("ImageNet", root, "cpu", workers=2)
    with pytest.raises(data.DataError, match=f"cannot read the image {victim}"):
        epoch_batches(dataset, seed=0, epoch=1)


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "CIFAR10_sample", "--workers", "2"], "--workers is for ImageNet"),
    (["--model", "vit_tiny_patch4"], "takes 32 x 32 images"),
])
def test_settings_that_do_not_fit_the_dataset(image_folder, capsys, tmp_path, argv, fragment):
    if "vit" in argv[1] and not __import__("models").vit.timm_available():
        pytest.skip("timm is not installed")
    code = example_cifar.main([*RUN, "--data_dir", image_folder, "--epochs", "1", "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_error_line(err)
    assert fragment in err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- training on the folder

def test_training_records_and_exact_resume_at_an_epoch_boundary(image_folder, tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    common = [*RUN, "--data_dir", image_folder, "--workers", "2"]
    whole = run_cli(*common, "--epochs", "2", "--out", straight)
    assert whole.returncode == 0, whole.stderr
    one = run_cli(*common, "--epochs", "1", "--out", resumed, "--workers", "1")
    assert one.returncode == 0, one.stderr
    two = run_cli("--out", resumed, "--resume", "--epochs", "2", "--workers", "0")
    assert two.returncode == 0, two.stderr
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(straight))
    a, b = checkpoint(resumed), checkpoint(straight)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_torchrun_on_the_folder(image_folder, tmp_path):
    out = str(tmp_path / "ddp")
    result = torchrun(*RUN, "--data_dir", image_folder, "--workers", "1", "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("x 2 processes (batch 2 each, global ascent gradient)") == 1
    rows = read_metrics(out)
    assert [row["epoch"] for row in rows] == ["1"] and rows[0]["test_acc"] != ""


def test_make_image_folder_cli_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scripts.tools.make_image_folder", str(tmp_path / "x"),
                             "--classes", "11"], capture_output=True, text=True)
    assert result.returncode == 2
    assert_one_error_line(result.stderr)


def test_greyscale_and_png_files_are_read_as_rgb(image_folder):
    dataset = data.load_dataset("ImageNet", image_folder, "cpu", workers=0)
    odd = [path for path in dataset.train_files if path.endswith(".png")]
    assert odd, "the folder has a PNG"
    grey = [path for path in dataset.train_files if Image.open(path).mode == "L"]
    assert grey, "the folder has a grey-scale image"
    for path in odd + grey:
        assert folder.read_image(path).mode == "RGB"


def test_analyses_read_an_imagenet_run(image_folder, tmp_path):
    """noisy_weights and sharpness on a run trained on the folder: its classes and images come from the folder."""
    run = str(tmp_path / "run")
    trained = run_cli(*RUN, "--data_dir", image_folder, "--workers", "0", "--epochs", "1", "--out", run)
    assert trained.returncode == 0, trained.stderr
    env_cmd = [sys.executable, "-m"]
    noisy = subprocess.run(env_cmd + ["scripts.analyses.noisy_weights", run, "--eta", "0", "0.1", "--draws", "1",
                                      "--device", "cpu", "--out", str(tmp_path / "noisy.csv")],
                           capture_output=True, text=True, timeout=300)
    assert noisy.returncode == 0, noisy.stderr
    assert os.path.getsize(tmp_path / "noisy.csv") > 0
    sharp = subprocess.run(env_cmd + ["scripts.analyses.sharpness", run, "--images", "6", "--batch_size", "3",
                                      "--radius", "0.05", "--steps", "1", "--power_iterations", "1",
                                      "--trace_samples", "1", "--device", "cpu", "--out", str(tmp_path / "sharp.csv")],
                           capture_output=True, text=True, timeout=300)
    assert sharp.returncode == 0, sharp.stderr
    assert os.path.getsize(tmp_path / "sharp.csv") > 0


def test_default_workers_share_the_cores_between_torchrun_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert data.default_workers() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert data.default_workers() == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert data.default_workers() == 0


def test_a_dying_worker_is_one_line_with_advice(image_folder, monkeypatch):
    """A worker killed mid-epoch (what a full /dev/shm does) is a DataError saying what to change."""
    dataset = data.load_dataset("ImageNet", image_folder, "cpu", workers=1)

    def die(self, index):
        os.kill(os.getpid(), 9)

    monkeypatch.setattr(folder.ImageFiles, "__getitem__", die)
    with pytest.raises(data.DataError, match=r"a loader worker died .*fewer --workers"):
        epoch_batches(dataset, seed=0, epoch=1)
