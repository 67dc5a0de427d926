"""The CPU-scale study's data folder: CIFAR-10's training batches (symlinked) and a stratified
2,000-image test set (200 per class, numpy default_rng(0)), so that evaluating every epoch stays cheap.

    python results/cpu_study/make_test_subset.py CIFAR_DIR OUT_DIR

CIFAR_DIR holds cifar-10-batches-py/ (a local copy of CIFAR-10, python layout); OUT_DIR receives
cifar-10-batches-py/ with the same training files and the reduced test_batch.
"""
import os
import pickle
import sys

import numpy as np

PER_CLASS = 200


def main(source, target):
    source, target = (os.path.join(os.path.abspath(d), "cifar-10-batches-py") for d in (source, target))
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(source)):
        if name != "test_batch" and not os.path.exists(os.path.join(target, name)):
            os.symlink(os.path.join(source, name), os.path.join(target, name))
    with open(os.path.join(source, "test_batch"), "rb") as f:
        test = pickle.load(f, encoding="latin1")
    labels = np.array(test["labels"])
    rng = np.random.default_rng(0)
    index = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), PER_CLASS, replace=False)
                                    for c in range(10)]))
    rng.shuffle(index)
    subset = {"batch_label": f"testing batch: {len(index)} images, {PER_CLASS} per class (numpy default_rng(0))",
              "labels": [test["labels"][i] for i in index], "data": test["data"][index],
              "filenames": [test["filenames"][i] for i in index]}
    with open(os.path.join(target, "test_batch"), "wb") as f:
        pickle.dump(subset, f)
    print(f"wrote {target} ({len(index)} test images)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python results/cpu_study/make_test_subset.py CIFAR_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
