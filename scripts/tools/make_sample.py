#!/usr/bin/env python3
"""Build the offline CIFAR-10 sample shipped in data/cifar10_sample/.

    python scripts/tools/make_sample.py ARCHIVE [--train-per-class 500] [--test-per-class 100]

ARCHIVE is a local copy of cifar10-jpeg75.tar.gz: all 60,000 CIFAR-10 images re-encoded as
quality-75 JPEGs (members cifar10/{train,test}/<class>/<name>.jpg). We keep the original JPEG
bytes (about 320 bytes per image) instead of decoded pixels, so that 6,000 real images fit
in about 2 MB; data/__init__.py decodes them at load time with torchvision.io.decode_jpeg.

The selection is class-balanced and fixed by --seed, so rerunning this script reproduces
the committed file byte for byte. Output: data/cifar10_sample/cifar10_sample.npz with
arrays {split}_jpeg (all JPEG files concatenated, uint8), {split}_offsets (int64, N+1
start offsets into it) and {split}_labels (uint8) for split in train, test.
"""
import argparse
import io
import os
import tarfile

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.path.join(REPO, "data", "cifar10_sample", "cifar10_sample.npz")


def read_archive(path):
    """Return {split: {class_index: [(file_name, jpeg_bytes), ...]}} sorted by file name."""
    files = {"train": {c: [] for c in range(10)}, "test": {c: [] for c in range(10)}}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or not parts[3].endswith(".jpg"):
                continue
            _, split, class_name, file_name = parts
            files[split][CLASSES.index(class_name)].append((file_name, tar.extractfile(member).read()))
    for split in files.values():
        for items in split.values():
            items.sort()
    return files


def select(per_class_files, per_class, rng):
    """Pick `per_class` images of every class, then shuffle so batches mix classes."""
    chosen = []
    for label in range(10):
        items = per_class_files[label]
        for index in sorted(rng.choice(len(items), size=per_class, replace=False)):
            chosen.append((label, items[index][1]))
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def pack(split, chosen):
    blobs = [np.frombuffer(jpeg, dtype=np.uint8) for _, jpeg in chosen]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return {f"{split}_jpeg": np.concatenate(blobs),
            f"{split}_offsets": offsets,
            f"{split}_labels": np.array([label for label, _ in chosen], dtype=np.uint8)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", help="a local copy of cifar10-jpeg75.tar.gz")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args()

    files = read_archive(args.archive)
    rng = np.random.default_rng(args.seed)
    arrays = {}
    arrays.update(pack("train", select(files["train"], args.train_per_class, rng)))
    arrays.update(pack("test", select(files["test"], args.test_per_class, rng)))
    buffer = io.BytesIO()
    # Compressed: every JPEG repeats the same ~600-byte header (quantisation and Huffman
    # tables), which deflate removes; the entropy-coded pixels themselves do not shrink.
    np.savez_compressed(buffer, **arrays)
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {len(arrays['train_labels'])} train + {len(arrays['test_labels'])} test "
          f"images, {os.path.getsize(args.output) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
