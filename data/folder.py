"""Image-folder datasets (the ImageNet layout): a file list, read by DataLoader workers, batched on the device.

    DIR/train/<class>/<image>    one folder per class; any of IMAGE_EXTENSIONS
    DIR/val/<class>/<image>      the same class folders (ImageNet's val/ must be sorted into them first)

Unlike CIFAR (one uint8 tensor on the device, data/__init__.py), ImageNet does not fit in memory, so
worker processes of a torch DataLoader read and decode the files with PIL and crop them to 224 x 224
uint8 tensors; the training process moves each batch to the device (pinned memory, no host sync) and
normalises it there. The transforms are torchvision's standard ImageNet pipeline:

    train: RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) + RandomHorizontalFlip()
    eval:  Resize(256) + CenterCrop(224)
    both:  ToTensor() + Normalize(ImageNet mean, std)   (done on the device)

with one difference that changes no distribution: the crop's and flip's random numbers come from a
generator seeded by (seed, epoch, image index) instead of the global RNG of each worker. The data of an
epoch therefore depends only on (seed, epoch), like CIFAR's: any number of workers gives the same
batches, a run resumed at an epoch boundary sees exactly the batches of an uninterrupted one, and
torchrun processes take contiguous shards of the same global batches (data/__init__.py train_shards).

A file that cannot be decoded stops training with a DataError naming it (one line, exit 2).
"""
import math
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

TRAIN_SPLIT, EVAL_SPLIT = "train", "val"
CROP_SIZE = 224                    # RandomResizedCrop / CenterCrop
EVAL_RESIZE = 256                  # Resize(256): the shorter side, before CenterCrop(224)
SCALE = (0.08, 1.0)                # RandomResizedCrop's defaults
RATIO = (3.0 / 4.0, 4.0 / 3.0)
# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SUBSET_SEED = 0                    # --train_subset N of a folder: N images drawn once with this seed


class FolderError(Exception):
    """A folder layout problem (data.DataError subclasses are raised by the callers)."""


def layout_help(root):
    return (f"expected {root}/{TRAIN_SPLIT}/<class>/<images> and {root}/{EVAL_SPLIT}/<class>/<images> with the same "
            f"class folders (docs/imagenet.md)")


def class_names(root):
    """The sorted class folders of root/train/ (what the model's classifier is sized by); FolderError if the
    layout is not there. Reads the directory listing only."""
    if not os.path.isdir(root):
        raise FolderError(f"{root} does not exist; {layout_help(root)}")
    train = os.path.join(root, TRAIN_SPLIT)
    if not os.path.isdir(train):
        raise FolderError(f"{train} does not exist; {layout_help(root)}")
    classes = sorted(entry.name for entry in os.scandir(train) if entry.is_dir())
    if not classes:
        raise FolderError(f"{train} has no class folders; {layout_help(root)}")
    return classes


def scan_split(root, split, classes):
    """(files, labels) of root/split, label = index of the class folder in `classes`, files sorted."""
    directory = os.path.join(root, split)
    if not os.path.isdir(directory):
        raise FolderError(f"{directory} does not exist; {layout_help(root)}")
    found = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        what = "; ".join(part for part in (
            f"{len(missing)} of train/'s classes missing (first: {missing[0]})" if missing else "",
            f"{len(extra)} classes not in train/ (first: {extra[0]})" if extra else "") if part)
        raise FolderError(f"{directory}: its class folders differ from {TRAIN_SPLIT}/'s ({what}); {layout_help(root)}")
    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(directory, name)
        for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(entry.path)
                labels.append(label)
    if not files:
        raise FolderError(f"{directory} has no images ({', '.join(IMAGE_EXTENSIONS)}); {layout_help(root)}")
    return files, labels


def subset(files, labels, count):
    """`count` of the images, drawn once with SUBSET_SEED (the same for every run), in their original order."""
    if not 1 <= count <= len(files):
        raise FolderError(f"--train_subset must be between 1 and {len(files)} for this folder, got {count}")
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    keep = sorted(torch.randperm(len(files), generator=generator)[:count].tolist())
    return [files[i] for i in keep], [labels[i] for i in keep]


# ----------------------------------------------------------------------------- transforms

def keyed_generator(*keys):
    """A CPU torch.Generator seeded from integer keys alone (e.g. seed, epoch[, image index]): what makes an
    epoch's data the same on resume, on any device and with any number of workers or processes."""
    state = np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


def sample_generator(seed, epoch, index):
    """The generator of one image's crop and flip in one epoch: a function of (seed, epoch, index) only."""
    return keyed_generator(seed, epoch, index)


def random_resized_crop_params(height, width, generator, scale=SCALE, ratio=RATIO):
    """(top, left, crop height, crop width): torchvision's RandomResizedCrop.get_params, the same draws in the
    same order, from `generator` instead of the global RNG (a test checks them equal for a seeded global RNG)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
            j = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
            return i, j, h, w
    # Fallback to a central crop of the nearest allowed ratio.
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(image, generator):
    """RandomResizedCrop(224) + RandomHorizontalFlip() of a PIL image -> uint8 3 x 224 x 224 tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF
    top, left, h, w = random_resized_crop_params(image.height, image.width, generator)
    image = TF.resized_crop(image, top, left, h, w, [CROP_SIZE, CROP_SIZE], InterpolationMode.BILINEAR, antialias=True)
    if torch.rand(1, generator=generator) < 0.5:
        image = TF.hflip(image)
    return TF.pil_to_tensor(image)


def eval_transform(image):
    """Resize(256) + CenterCrop(224) of a PIL image -> uint8 3 x 224 x 224 tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF
    image = TF.resize(image, EVAL_RESIZE, InterpolationMode.BILINEAR, antialias=True)
    return TF.pil_to_tensor(TF.center_crop(image, CROP_SIZE))


def read_image(path):
    """The file as an RGB PIL image (grey, CMYK and palette images converted, as torchvision's loader)."""
    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")


class ImageFiles(torch.utils.data.Dataset):
    """Index -> (uint8 3 x 224 x 224, label); augmented from (seed, epoch, index) when `augment`, else the eval
    transform. A file that cannot be read gives (None, message): collate() turns it into an UnreadableBatch."""

    def __init__(self, files, labels, augment, seed=0, epoch=0):
        self.files, self.labels, self.augment, self.seed, self.epoch = files, labels, augment, seed, epoch

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            image = read_image(path)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return None, f"cannot read the image {path} ({type(exc).__name__}: {exc}); replace or remove it"
        if self.augment:
            return train_transform(image, sample_generator(self.seed, self.epoch, index)), self.labels[index]
        return eval_transform(image), self.labels[index]


class UnreadableBatch:
    def __init__(self, message):
        self.message = message


def collate(samples):
    for image, label in samples:
        if image is None:
            return UnreadableBatch(label)
    return torch.stack([image for image, _ in samples]), torch.tensor([label for _, label in samples])


def batches(files, labels, index_batches, augment, seed, epoch, workers, pin_memory):
    """Yield (uint8 images, int64 labels) on the CPU for each list of indices, read by `workers` processes
    (0: in this process), in order. Raises FolderError naming an unreadable file."""
    loader = torch.utils.data.DataLoader(
        ImageFiles(files, labels, augment, seed, epoch), batch_sampler=index_batches, num_workers=workers,
        collate_fn=collate, pin_memory=pin_memory)
    try:
        for batch in loader:
            if isinstance(batch, UnreadableBatch):
                raise FolderError(batch.message)
            yield batch
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        # Typically a bus error: the workers hand batches over in shared memory (/dev/shm), which containers
        # often keep small.
        raise FolderError(f"a loader worker died ({str(exc).splitlines()[0]}); if /dev/shm is small (containers), "
                          f"enlarge it (docker --shm-size) or use fewer --workers (0: no worker processes)") from None
