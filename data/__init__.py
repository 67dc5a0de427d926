"""CIFAR data on the training device: loading, GPU-friendly augmentation, batching.

Design (the "airbench" style): a whole split lives on the training device as one uint8
tensor of shape N x 3 x 32 x 32 (150 MB for CIFAR train). Every epoch draws a permutation,
crop offsets and flip decisions for all images at once from a torch.Generator seeded from
(seed, epoch), and each batch is cropped, flipped and normalised with a handful of tensor
ops on the device. No DataLoader, no worker processes, no PIL per image: on a GPU the data
path costs a few kernel launches per batch and never limits throughput, and because the
randomness depends only on (seed, epoch), a resumed run sees exactly the same batches as an
uninterrupted one (on any device, since the random numbers are drawn on the CPU).

The augmentation is the authors' torchvision pipeline, RandomCrop(32, padding=4) followed by
RandomHorizontalFlip() and Normalize(mean, std), in distribution: crop offsets uniform over
0..8 in each axis, padding with zero (black) pixels before normalisation, flip probability
1/2. Test images are only normalised.

API:
    dataset = load_dataset(name, data_dir, device, train_subset=None, download=True)
    for inputs, labels in train_batches(dataset, batch_size, seed, epoch): ...
    for inputs, labels, batch_images in train_shards(dataset, batch_size, seed, epoch, rank=r, world_size=n): ...
    for inputs, labels in test_batches(dataset, batch_size): ...
    augment_batch(images_uint8, offsets, flips)  # the crop + flip alone (uint8 in, uint8 out)
    normalize(images_uint8, mean, std)            # uint8 -> float32
Errors the user can fix (missing or corrupt files, no network) raise DataError.

ImageNet (and any folder in its layout) is the exception to "a whole split on the device": it is a
FolderDataset (data/folder.py), read by DataLoader workers from a file list; train_shards, test_batches
and num_train_batches take either kind and give the same batches per (seed, epoch).
"""
import os
import pickle
import socket
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import folder

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar10_sample")
SAMPLE_FILE = os.path.join(SAMPLE_DIR, "cifar10_sample.npz")

PADDING = 4  # RandomCrop(32, padding=4): offsets 0..2*PADDING in each axis
IMAGE_SIZE = 32

# The authors' per-dataset statistics (their example_cifar.py); CIFAR10_sample uses CIFAR-10's.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)

# Official archives (the same URLs and MD5s as torchvision.datasets.CIFAR10/100). The MD5 is
# checked only for an archive we download or find in data_dir, never for extracted batch
# files, so locally produced batches in the official layout (e.g. a JPEG-75 re-encoding) load as well.
DATASETS = {
    "CIFAR10": dict(num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                    folder="cifar-10-batches-py", label_key="labels",
                    train_files=[f"data_batch_{i}" for i in range(1, 6)], test_files=["test_batch"],
                    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    archive="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),
    "CIFAR100": dict(num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD,
                     folder="cifar-100-python", label_key="fine_labels",
                     train_files=["train"], test_files=["test"],
                     url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     archive="cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85"),
    "CIFAR10_sample": dict(num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    # The standard folder layout (data/folder.py); the classes are the folders of train/ (1000 for ImageNet-1k).
    "ImageNet": dict(num_classes=None, mean=folder.IMAGENET_MEAN, std=folder.IMAGENET_STD, image_folder=True),
}
DOWNLOAD_TIMEOUT_SECONDS = 20  # per socket operation; an offline machine fails fast


class DataError(Exception):
    """A data problem the user can fix (message says how); the CLI exits with status 2."""


@dataclass
class Dataset:
    name: str
    train_images: torch.Tensor  # uint8, N x 3 x 32 x 32, on the training device
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor          # float32, 3 x 1 x 1, on the device (values in [0, 1] units)
    std: torch.Tensor


@dataclass
class FolderDataset:
    """A dataset in the ImageNet folder layout: file lists read by DataLoader workers (data/folder.py)."""
    name: str
    train_files: list
    train_labels: torch.Tensor  # int64, N, on the training device
    test_files: list
    test_labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor
    workers: int                # DataLoader worker processes (0: read in the training process)
    train_label_list: list      # the labels as Python ints, what the workers hand out with the images
    test_label_list: list


def is_image_folder(name):
    return bool(DATASETS[canonical_dataset_name(name)].get("image_folder"))


def num_classes(name, data_dir):
    """The number of classes of dataset `name` (a folder dataset: its class folders in data_dir/train/, a
    DataError if the layout is not there), known before the images are read: what sizes the classifier."""
    name = canonical_dataset_name(name)
    if not is_image_folder(name):
        return DATASETS[name]["num_classes"]
    try:
        return len(folder.class_names(os.path.abspath(data_dir)))
    except folder.FolderError as exc:
        raise DataError(f"{name} not found: {exc}") from None


def default_workers():
    """DataLoader workers of a folder dataset when --workers is not given: this process's share of the cores
    it may use (torchrun's LOCAL_WORLD_SIZE processes share them), one left for the training process, at
    most 16 (a DataLoader's usual ceiling per GPU)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(16, cores // local_processes - 1))


def available_datasets():
    return list(DATASETS)


def canonical_dataset_name(name):
    """Case-insensitive lookup ('cifar10' -> 'CIFAR10'); ValueError if unknown."""
    for known in DATASETS:
        if known.lower() == str(name).lower():
            return known
    raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


# ----------------------------------------------------------------------------- loading

def _read_batch_file(path, label_key):
    try:
        with open(path, "rb") as f:
            # The official batches are Python 2 pickles; latin1 keeps their str keys working.
            batch = pickle.load(f, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and let the "
                        f"script download the dataset again") from None
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or len(labels) != len(data):
        raise DataError(f"{path} does not look like a CIFAR batch (data shape {data.shape}); "
                        f"delete it and let the script download the dataset again")
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels


def _download(spec, data_dir):
    """Download and extract the official archive (MD5-verified) or raise DataError."""
    from torchvision.datasets.utils import download_and_extract_archive
    manual = (f"download {spec['url']} (MD5 {spec['md5']}) on a machine with network access and "
              f"put it in {os.path.abspath(data_dir)}/ (it is then verified and extracted), or "
              f"extract it there yourself so that {os.path.join(os.path.abspath(data_dir), spec['folder'])}/ exists")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        os.makedirs(data_dir, exist_ok=True)
        # Skips the download when a verified archive is already in data_dir.
        download_and_extract_archive(spec["url"], download_root=data_dir,
                                     filename=spec["archive"], md5=spec["md5"])
    except Exception as exc:  # URLError, timeout, checksum mismatch, disk errors: all user-fixable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{spec['folder']} not found in {os.path.abspath(data_dir)} and the download "
                        f"failed ({reason}); {manual}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _load_cifar_numpy(name, data_dir, download):
    spec = DATASETS[name]
    folder = os.path.join(data_dir, spec["folder"])
    needed = [os.path.join(folder, f) for f in spec["train_files"] + spec["test_files"]]
    if not all(os.path.isfile(p) for p in needed):
        if not download:
            raise DataError(f"{name} not found: expected {folder}/ with "
                            f"{', '.join(spec['train_files'] + spec['test_files'])} (the 'python version' "
                            f"of {spec['url']}); download it or allow the script to download it")
        _download(spec, data_dir)
    train = [_read_batch_file(os.path.join(folder, f), spec["label_key"]) for f in spec["train_files"]]
    test = [_read_batch_file(os.path.join(folder, f), spec["label_key"]) for f in spec["test_files"]]
    return (np.concatenate([d for d, _ in train]), np.concatenate([l for _, l in train]),
            np.concatenate([d for d, _ in test]), np.concatenate([l for _, l in test]))


def _decode_jpegs(blob, offsets):
    """Decode concatenated JPEG files into an N x 3 x 32 x 32 uint8 array (no PIL needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 marks its image codecs as deprecated
        from torchvision.io import ImageReadMode, decode_jpeg
        blob = torch.from_numpy(blob)
        parts = [blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        images = decode_jpeg(parts, mode=ImageReadMode.RGB)
    return torch.stack(images).numpy()


def _load_sample_numpy():
    try:
        with np.load(SAMPLE_FILE, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read the offline sample {SAMPLE_FILE} ({exc}); restore it with "
                        f"'git checkout -- data/cifar10_sample' or rebuild it with scripts/tools/make_sample.py") from None
    out = []
    for split in ("train", "test"):
        out.append(_decode_jpegs(arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"]))
        out.append(arrays[f"{split}_labels"].astype(np.int64))
    return tuple(out)


def load_dataset(name, data_dir="./data", device="cpu", train_subset=None, download=True, workers=None):
    """Load a dataset onto `device` as uint8 images + int64 labels (see Dataset).

    name: CIFAR10, CIFAR100 (read from data_dir, downloaded when missing and download=True),
    CIFAR10_sample (the small real-image sample shipped in data/cifar10_sample, no download), or ImageNet
    (data_dir/train and data_dir/val, never downloaded: a FolderDataset, read by `workers` processes).
    train_subset: keep only the first N training images (quick runs; a folder dataset: N drawn once with a
    fixed seed); the test set is kept whole.
    """
    name = canonical_dataset_name(name)
    spec = DATASETS[name]
    if spec.get("image_folder"):
        return _load_folder(name, data_dir, device, train_subset, default_workers() if workers is None else workers)
    if name == "CIFAR10_sample":
        train_x, train_y, test_x, test_y = _load_sample_numpy()
    else:
        train_x, train_y, test_x, test_y = _load_cifar_numpy(name, data_dir, download)
    if train_subset is not None:
        if not 1 <= train_subset <= len(train_x):
            raise DataError(f"--train_subset must be between 1 and {len(train_x)} for {name}, got {train_subset}")
        train_x, train_y = train_x[:train_subset], train_y[:train_subset]
    device = torch.device(device)

    def to_device(array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    return Dataset(name=name,
                   train_images=to_device(train_x), train_labels=to_device(train_y),
                   test_images=to_device(test_x), test_labels=to_device(test_y),
                   num_classes=spec["num_classes"],
                   mean=torch.tensor(spec["mean"], device=device).view(3, 1, 1),
                   std=torch.tensor(spec["std"], device=device).view(3, 1, 1))


def _load_folder(name, data_dir, device, train_subset, workers):
    root = os.path.abspath(data_dir)
    try:
        classes = folder.class_names(root)
        train_files, train_labels = folder.scan_split(root, folder.TRAIN_SPLIT, classes)
        test_files, test_labels = folder.scan_split(root, folder.EVAL_SPLIT, classes)
        if train_subset is not None:
            train_files, train_labels = folder.subset(train_files, train_labels, train_subset)
    except folder.FolderError as exc:
        raise DataError(f"{name}: {exc}") from None
    device = torch.device(device)
    spec = DATASETS[name]
    return FolderDataset(name=name, train_files=train_files,
                         train_labels=torch.tensor(train_labels, dtype=torch.int64, device=device),
                         test_files=test_files, test_labels=torch.tensor(test_labels, dtype=torch.int64, device=device),
                         num_classes=len(classes), workers=workers,
                         train_label_list=train_labels, test_label_list=test_labels,
                         mean=torch.tensor(spec["mean"], device=device).view(3, 1, 1),
                         std=torch.tensor(spec["std"], device=device).view(3, 1, 1))


def _folder_inputs(dataset, files, labels, index_batches, augment, seed, epoch, channels_last):
    """A folder dataset's batches of `index_batches` as (normalised inputs, labels) on the training device
    (pinned host memory and an asynchronous copy on CUDA: no host sync)."""
    device = dataset.train_labels.device
    try:
        for images, targets in folder.batches(files, labels, index_batches, augment, seed, epoch, dataset.workers,
                                              pin_memory=device.type == "cuda"):
            inputs = normalize(images.to(device, non_blocking=True), dataset.mean, dataset.std)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield inputs, targets.to(device, non_blocking=True)
    except folder.FolderError as exc:
        raise DataError(f"{dataset.name}: {exc}") from None


def folder_train_images(dataset, index_batches, channels_last=False):
    """(normalised inputs, labels) of the training images at `index_batches` of a folder dataset, with the
    evaluation transform (no augmentation): what an analysis of the training set reads (e.g. sharpness)."""
    yield from _folder_inputs(dataset, dataset.train_files, dataset.train_label_list, index_batches, False, 0, 0,
                              channels_last)


# ----------------------------------------------------------------------------- augmentation

def augment_batch(images, offsets, flips):
    """Random crop with zero padding + horizontal flip, as one gather on the device.

    images: uint8 B x 3 x 32 x 32. offsets: int64 B x 2 (row, column) in 0..2*PADDING, the
    top-left corner of the 32 x 32 window in the 40 x 40 zero-padded image. flips: bool B.
    Padding happens on the raw uint8 pixels, so padded pixels are 0 = black before
    normalisation, exactly like torchvision's RandomCrop(padding=4) on a PIL image.
    """
    batch = images.shape[0]
    padded = F.pad(images, (PADDING, PADDING, PADDING, PADDING))  # zeros, B x 3 x 40 x 40
    span = torch.arange(IMAGE_SIZE, device=images.device)
    rows = offsets[:, 0:1] + span                                 # B x 32
    # A flipped image reads its window's columns right to left.
    columns = offsets[:, 1:2] + torch.where(flips[:, None], IMAGE_SIZE - 1 - span, span)
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(3, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], columns[:, None, None, :]]


def normalize(images, mean, std):
    """uint8 pixels -> float32 (x / 255 - mean) / std, like ToTensor() + Normalize()."""
    return (images.float().div_(255) - mean) / std


def epoch_randomness(num_images, seed, epoch):
    """Permutation, crop offsets and flips for one epoch, drawn on the CPU from (seed, epoch).

    Seeding from (seed, epoch) instead of carrying a generator makes a resumed run identical
    to an uninterrupted one, and drawing on the CPU makes the stream device-independent.
    """
    generator = folder.keyed_generator(seed, epoch)
    permutation = torch.randperm(num_images, generator=generator)
    offsets = torch.randint(0, 2 * PADDING + 1, (num_images, 2), generator=generator)
    flips = torch.rand(num_images, generator=generator) < 0.5
    return permutation, offsets, flips


def shard_bounds(count, rank, world_size):
    """[begin, end) of rank's contiguous share of `count` items split over world_size ranks as evenly
    as possible (sizes differ by at most one)."""
    return count * rank // world_size, count * (rank + 1) // world_size


def _shard_spans(count, batch_size, rank, world_size):
    """(first, end, images in the global batch) of rank's contiguous share of each kept global batch, as
    positions in the epoch's permutation: one rule for the CIFAR and the folder data paths."""
    for start in _kept_batches(count, batch_size, world_size):
        batch_images = min(batch_size, count - start)
        begin, end = shard_bounds(batch_images, rank, world_size)
        yield start + begin, start + end, batch_images


def _kept_batches(count, batch_size, world_size):
    """Start offsets of the epoch's global batches. The last partial batch is kept (drop_last=False, as
    the authors' DataLoader) unless it is too small to train on: a single image, which BatchNorm
    cannot train on, or, in a data-parallel run, fewer images than processes (a rank would get none)."""
    smallest = max(2, world_size)
    return [start for start in range(0, count, batch_size)
            if start == 0 or count - start >= min(smallest, batch_size)]


def train_shards(dataset, batch_size, seed, epoch, channels_last=False, rank=0, world_size=1, augment=True):
    """Yield (normalised augmented inputs, labels, images in the global batch) for one shuffled epoch.

    augment=False skips the crop and flip (the images as stored); the permutation, hence the data
    order of a seed, is the same either way.

    batch_size is the global batch; with world_size > 1 each global batch is cut into world_size
    contiguous shards of the epoch's permutation and this yields rank's shard, so the ranks together
    see exactly the batches of a single process. Only that shard is augmented.
    """
    if isinstance(dataset, FolderDataset):
        yield from _folder_train_shards(dataset, batch_size, seed, epoch, channels_last, rank, world_size, augment)
        return
    device = dataset.train_images.device
    count = dataset.train_images.shape[0]
    permutation, offsets, flips = (t.to(device, non_blocking=True)
                                   for t in epoch_randomness(count, seed, epoch))
    for first, end, batch_images in _shard_spans(count, batch_size, rank, world_size):
        index = permutation[first:end]
        images = dataset.train_images[index]
        if augment:
            images = augment_batch(images, offsets[index], flips[index])
        inputs = normalize(images, dataset.mean, dataset.std)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        yield inputs, dataset.train_labels[index], batch_images


def epoch_permutation(num_images, seed, epoch):
    """The data order of one epoch of a folder dataset: a function of (seed, epoch) only (the crops and flips
    are drawn per image, data/folder.py)."""
    return torch.randperm(num_images, generator=folder.keyed_generator(seed, epoch))


def shard_index_batches(permutation, batch_size, rank, world_size):
    """(rank's indices of each global batch, images in that global batch): the epoch's global batches cut
    into contiguous shards, as train_shards does for CIFAR (a DistributedSampler that keeps the batches of
    one process, so torchrun changes nothing but the speed)."""
    return [(permutation[first:end].tolist(), batch_images)
            for first, end, batch_images in _shard_spans(permutation.shape[0], batch_size, rank, world_size)]


def _folder_train_shards(dataset, batch_size, seed, epoch, channels_last, rank, world_size, augment):
    count = dataset.train_labels.shape[0]
    shards = shard_index_batches(epoch_permutation(count, seed, epoch), batch_size, rank, world_size)
    loaded = _folder_inputs(dataset, dataset.train_files, dataset.train_label_list, [s for s, _ in shards],
                            augment, seed, epoch, channels_last)
    for (inputs, targets), (_, batch_images) in zip(loaded, shards):
        yield inputs, targets, batch_images


def train_batches(dataset, batch_size, seed, epoch, channels_last=False, augment=True):
    """Yield (normalised augmented inputs, labels) for one shuffled training epoch (one process).

    The last partial batch is kept (drop_last=False, as the authors' DataLoader), except a final
    batch of a single image, which BatchNorm cannot train on; it is skipped for that epoch.
    """
    for inputs, labels, _ in train_shards(dataset, batch_size, seed, epoch, channels_last, augment=augment):
        yield inputs, labels


def test_batches(dataset, batch_size, channels_last=False, rank=0, world_size=1):
    """Yield (normalised inputs, labels) over the test set in order, no augmentation; with
    world_size > 1, over rank's contiguous share of the test set only."""
    if isinstance(dataset, FolderDataset):
        begin, end = shard_bounds(dataset.test_labels.shape[0], rank, world_size)
        index_batches = [list(range(start, min(start + batch_size, end))) for start in range(begin, end, batch_size)]
        yield from _folder_inputs(dataset, dataset.test_files, dataset.test_label_list, index_batches, False, 0, 0,
                                  channels_last)
        return
    begin, end = shard_bounds(dataset.test_images.shape[0], rank, world_size)
    for start in range(begin, end, batch_size):
        stop = min(start + batch_size, end)
        inputs = normalize(dataset.test_images[start:stop], dataset.mean, dataset.std)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        yield inputs, dataset.test_labels[start:stop]


def num_train_batches(dataset, batch_size, world_size=1):
    return len(_kept_batches(dataset.train_labels.shape[0], batch_size, world_size))
