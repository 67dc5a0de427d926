"""Can the ImageNet loader feed the training step? Images per second of each, measured in one process.

    python -m scripts.tools.loader_speed                        # a generated 224-px-class folder, CPU: ~5 min
    python -m scripts.tools.loader_speed --data-dir IMAGENET --device cuda --workers 4 8 16 --batch-size 256
                                         --precision bf16      # a GPU box with a real ImageNet copy

1. The loader alone: the images/s of example_cifar.py's training data path for an ImageNet folder (files read
   and decoded by --workers processes, RandomResizedCrop + flip, batches moved to the device and normalised;
   data.train_shards), for each worker count, over --batches batches after the first (the first batch, which
   starts the workers, is reported apart).
2. The training step alone: images/s of minimizer.step on a batch already on the device (the median of
   --steps steps after one warm-up), for each of --minimizers around --model.

The ratio loader / step says whether the loader keeps up (>= 1) and how many workers a run needs; a GPU box
should run this with its own ImageNet copy. Without --data-dir the images are generated
(scripts.tools.make_image_folder: CIFAR-10 sample images resized to 300-500 px JPEGs, about ImageNet's mean
size). Writes a Markdown report (--out).
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

import data
import minimizers
import models
from scripts.common import check_writable_dir, write_atomic
from training.records import UsageError
from scripts.tools.benchmark import base_optimizer, make_closure, resolve_device, synchronize, timed
from scripts.tools.make_image_folder import write_image_folder


def loader_rates(dataset, batch_size, batches, device):
    """(seconds to the first batch, images/s over the next `batches` batches) of one training epoch's data."""
    stream = data.train_shards(dataset, batch_size, seed=0, epoch=1)
    start = time.perf_counter()
    next(stream)
    synchronize(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    count = 0
    for index, (inputs, _, _) in enumerate(stream):
        count += inputs.shape[0]
        if index + 1 == batches:
            break
    synchronize(device)
    return first, count / (time.perf_counter() - start)


def step_rate(model_name, minimizer_name, batch_size, steps, device, precision, num_classes):
    torch.manual_seed(0)
    model = models.create_model(model_name, num_classes).to(device)
    if device.type != "cuda" or precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    minimizer = minimizers.create(minimizer_name, model, base_optimizer("sgd", model))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 224, 224, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
    closure = make_closure(model, x, y, precision)
    minimizer.step(closure)  # warm-up
    seconds = [timed(lambda: minimizer.step(closure), device) for _ in range(steps)]
    return batch_size / statistics.median(seconds)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="a folder in the ImageNet layout (default: generate one)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="loader batches timed per worker count")
    parser.add_argument("--model", default="imagenet_resnet50")
    parser.add_argument("--minimizers", nargs="+", default=["SGD", "SAM"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--out", default=os.path.join("results", "imagenet_loader.md"))
    args = parser.parse_args(argv)
    for name in ("batch_size", "batches", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.workers) < 0:
        parser.error("--workers must be >= 0")
    try:
        args.minimizers = [minimizers.canonical_name(name) for name in args.minimizers]
        if args.model not in models.available_models():
            raise ValueError(f"unknown model {args.model!r}; available: {', '.join(models.available_models())}")
        check_writable_dir(os.path.dirname(os.path.abspath(args.out)))
    except (ValueError, UsageError) as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(argv)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data_dir
        if root is None:
            root = os.path.join(scratch, "images")
            per_class = max(10, (args.batch_size * (args.batches + 1) + 9) // 10)
            write_image_folder(root, classes=10, train_per_class=per_class, val_per_class=1,
                               min_side=300, max_side=500)
        loader_rows = []
        for workers in args.workers:
            try:
                dataset = data.load_dataset("ImageNet", root, device, workers=workers)
            except data.DataError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            first, rate = loader_rates(dataset, args.batch_size, args.batches, device)
            loader_rows.append((workers, first, rate))
            print(f"loader, {workers} workers: {rate:.0f} img/s (first batch after {first:.1f} s)", flush=True)
        num_classes = dataset.num_classes
    step_rows = []
    for name in args.minimizers:
        rate = step_rate(args.model, name, args.batch_size, args.steps, device, args.precision, num_classes)
        step_rows.append((name, rate))
        print(f"step, {name}: {rate:.1f} img/s", flush=True)

    lines = [f"# ImageNet loader vs training step ({device.type}: "
             f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'CPU'}, "
             f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores, "
             f"torch {torch.__version__})", "",
             f"`python -m scripts.tools.loader_speed {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"Images: {'generated (300-500 px JPEGs)' if args.data_dir is None else 'a local ImageNet folder'}; "
             f"batch {args.batch_size}; {args.model} in {args.precision}.", "",
             "| loader workers | loader img/s | first batch (s) | " +
             " | ".join(f"loader / {name} step" for name, _ in step_rows) + " |",
             "|---|---|---|" + "---|" * len(step_rows)]
    for workers, first, rate in loader_rows:
        lines.append(f"| {workers} | {rate:.0f} | {first:.1f} | " +
                     " | ".join(f"{rate / step:.2f}" for _, step in step_rows) + " |")
    lines += ["", "| minimizer | step img/s |", "|---|---|"] + [f"| {name} | {rate:.1f} |" for name, rate in step_rows]
    write_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
