"""Write a small dataset in the ImageNet folder layout from the offline CIFAR-10 sample's real images.

    python -m scripts.tools.make_image_folder OUT [--classes 10] [--train-per-class 50] [--val-per-class 10]
                                              [--min-side 300] [--max-side 500] [--seed 0]

OUT/train/<class>/<name>.JPEG and OUT/val/<class>/<name>.JPEG, each image a CIFAR-10 sample image resized to a
random size between --min-side and --max-side per side (ImageNet's images average about 400 x 350 px), saved as
a quality-90 JPEG; every 7th image is saved grey-scale and every 11th as a PNG, the odd files a real ImageNet
folder has, which the loader must convert. What the tests train on, and what scripts.tools.loader_speed reads
when no ImageNet copy is at hand. The same arguments write the same files.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

import data

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_image_folder(root, classes=3, train_per_class=6, val_per_class=3, min_side=40, max_side=96, seed=0):
    """Write the folder (see the module docstring); return {split: number of images written}."""
    if not 1 <= classes <= len(CLASSES):
        raise ValueError(f"classes must be between 1 and {len(CLASSES)}, got {classes}")
    if not 8 <= min_side <= max_side:
        raise ValueError(f"need 8 <= min_side <= max_side, got {min_side} and {max_side}")
    train_x, train_y, test_x, test_y = data._load_sample_numpy()
    rng = np.random.default_rng(seed)
    written = {}
    for split, images, labels, per_class in (("train", train_x, train_y, train_per_class),
                                             ("val", test_x, test_y, val_per_class)):
        count = 0
        for label in range(classes):
            directory = os.path.join(root, split, f"n{label:08d}_{CLASSES[label]}")
            os.makedirs(directory, exist_ok=True)
            chosen = np.flatnonzero(labels == label)[:per_class]
            if len(chosen) < per_class:
                raise ValueError(f"the sample has {len(chosen)} {split} images of class {CLASSES[label]}, "
                                 f"fewer than {per_class}")
            for number, index in enumerate(chosen):
                height, width = (int(side) for side in rng.integers(min_side, max_side + 1, size=2))
                image = Image.fromarray(images[index].transpose(1, 2, 0)).resize((width, height), Image.BILINEAR)
                name = f"{split}_{label}_{number:05d}"
                if count % 7 == 6:
                    image = image.convert("L")
                if count % 11 == 10:
                    image.save(os.path.join(directory, name + ".png"))
                else:
                    image.save(os.path.join(directory, name + ".JPEG"), quality=90)
                count += 1
        written[split] = count
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--min-side", type=int, default=300)
    parser.add_argument("--max-side", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        written = write_image_folder(args.out, args.classes, args.train_per_class, args.val_per_class,
                                     args.min_side, args.max_side, args.seed)
    except (ValueError, OSError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written['train']} train + {written['val']} val images in {args.classes} classes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
