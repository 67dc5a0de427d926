"""Benchmark: what a training step costs beyond its gradient evaluations.

    python -m scripts.tools.benchmark                       # CPU here: resnet20 + wrn28_2, batch 128, ~5 min
    python -m scripts.tools.benchmark --models resnet34 wrn28_2 resnet50 resnet20 --device cuda   # a GPU box
    python -m scripts.tools.benchmark --precision           # + fp32 / bf16 / channels_last (/ --compile) table
    python -m scripts.tools.benchmark --precision fp16 --device cuda   # every step in fp16 autocast + a GradScaler
    python -m scripts.tools.benchmark --vit --optimizer adamw --device cuda  # + vit_tiny_patch4, vit_small_patch4 (timm)

For each model and minimizer it measures, interleaving all configurations round by round so that
machine noise hits them alike, and reports medians:
  * images/s of a full ``minimizer.step``,
  * gradient evaluations per step (closure calls) and the compute floor = that many times the
    median time of one forward+backward (measured in the same rounds),
  * overhead = step time / floor - 1 (minimizer math, copies, base-optimizer step),
  * the minimizer's persistent buffers in units of the model's parameter memory, and on CUDA the
    peak memory of a step,
  * for Lookbehind, the ratio of the k+1 ("shared") step to the authors' 2k ("repeat") step.
It also times the data path (augmenting and batching one CIFAR-sized epoch on the device) against
an epoch of resnet20 training, and optionally bf16 autocast / channels_last / torch.compile.

``--precision fp16`` (or bf16) runs every step of the table in that autocast; with fp16 each minimizer
gets its own ``torch.amp.GradScaler`` attached (``minimizers.create(..., scaler=)``), the closure
back-propagates ``scaler.scale(loss)`` and the forward+backward floor is timed the same way. The report
then also says, per minimizer, whether its weights moved, whether weights and losses stayed finite, and
the scaler's final scale. fp16 timing ratios are meaningful on a GPU only (``--device cuda``): CPU fp16
autocast is emulated and slow, so on a CPU the fp16 mode checks correctness, not cost.
``--vit`` adds the CIFAR ViTs (vit_tiny_patch4, vit_small_patch4) where timm is installed (skipped with a
note where it is not); ``--optimizer adamw`` makes AdamW the base optimizer (the ViT recipe's).
Writes a Markdown report (``--out``, default results/benchmarks.md) and a CSV beside it.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import data
import minimizers
import models
from scripts.common import write_atomic

CONFIGS = [  # (label, minimizer name, hyperparameters)
    ("SGD", "SGD", {}),
    ("SAM", "SAM", {}),
    ("ASAM", "ASAM", {}),
    ("Lookbehind_SAM k=2", "Lookbehind_SAM", {"k": 2, "alpha": -1}),
    ("Lookbehind_SAM k=2 (2k passes)", "Lookbehind_SAM", {"k": 2, "alpha": -1, "passes": "repeat"}),
    ("Lookbehind_SAM k=5", "Lookbehind_SAM", {"k": 5, "alpha": -1}),
    ("Lookbehind_SAM k=5 (2k passes)", "Lookbehind_SAM", {"k": 5, "alpha": -1, "passes": "repeat"}),
    ("Lookbehind_ASAM k=2", "Lookbehind_ASAM", {"k": 2, "alpha": 0.5}),
    ("Multistep_SAM k=2", "Multistep_SAM", {"k": 2}),
    ("Lookahead_SAM", "Lookahead_SAM", {"k": 5, "alpha": 0.5}),
]


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device):
    # Timing only: a benchmark must wait for the device; training steps never do.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(fns, device, repeats, warmup=2):
    """Median seconds of each function, timed round by round so that machine noise hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            fn_times.append(timed(fn, device))
    return [statistics.median(t) for t in times]


def timed_closure(closure, device, seconds):
    """The closure, recording the time spent in each call (synchronising on CUDA: benchmark only)."""
    def wrapped(objective=None):
        synchronize(device)
        start = time.perf_counter()
        loss = closure() if objective is None else closure(objective)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        return loss
    return wrapped


def per_step_sums(seconds, minimizer, steps):
    """Closure seconds per step, from the flat per-call list of ``steps`` steps."""
    calls = len(seconds) // steps
    return [sum(seconds[i * calls:(i + 1) * calls]) for i in range(steps)]


def forward_backward(model, closure):
    def run():
        model.zero_grad(set_to_none=True)
        closure()
    return run


def buffer_bytes(obj, seen=None):
    """Bytes of tensors held by a minimizer (its own buffers plus its base optimizer's state)."""
    seen = set() if seen is None else seen
    total = 0
    if isinstance(obj, torch.Tensor):
        if obj.data_ptr() not in seen:
            seen.add(obj.data_ptr())
            total += obj.numel() * obj.element_size()
    elif isinstance(obj, (list, tuple)):
        total += sum(buffer_bytes(o, seen) for o in obj)
    elif isinstance(obj, dict):
        total += sum(buffer_bytes(o, seen) for o in obj.values())
    elif isinstance(obj, minimizers.Minimizer):
        skip = {"model", "optimizer", "params"}
        total += sum(buffer_bytes(v, seen) for k, v in vars(obj).items() if k not in skip)
    return total


def make_batch(batch_size, device, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
VIT_MODELS = ("vit_tiny_patch4", "vit_small_patch4")


def make_closure(model, x, y, precision, scaler=None):
    """One forward+backward; bf16/fp16 autocast around the forward pass; with a scaler the backward
    pass back-propagates ``scaler.scale(...)`` (the minimizer the scaler is attached to unscales)."""
    def closure(objective=None):
        with torch.autocast(x.device.type, dtype=AUTOCAST.get(precision, torch.bfloat16),
                            enabled=precision in AUTOCAST):
            outputs = model(x)
        loss = F.cross_entropy(outputs.float(), y)
        backward = loss if objective is None else objective(outputs.float(), y)
        (backward if scaler is None else scaler.scale(backward)).backward()
        return loss.detach()
    return closure


def make_scaler(precision, device):
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def base_optimizer(name, model):
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def bench_model(model_name, args, device):
    torch.manual_seed(0)
    base = models.create_model(model_name, 10).to(device)
    if args.channels_last:
        base = base.to(memory_format=torch.channels_last)
    x, y = make_batch(args.batch_size, device, args.channels_last)
    param_bytes = sum(p.numel() * p.element_size() for p in base.parameters())

    # One model copy per configuration, so each minimizer's state evolves on its own.
    entries = [{"label": "forward+backward", "model": copy.deepcopy(base),
                "scaler": make_scaler(args.precision, device)}]
    for label, name, hp in CONFIGS:
        model = copy.deepcopy(base)
        opt = base_optimizer(args.optimizer, model)
        scaler = make_scaler(args.precision, device)   # one per minimizer: each backs off on its own
        entries.append({"label": label, "name": name, "model": model, "scaler": scaler, "losses": [],
                        "minimizer": minimizers.create(name, model, opt, scaler=scaler, **hp)})
    for e in entries:
        closure = make_closure(e["model"], x, y, args.precision, e["scaler"])
        if "minimizer" in e:
            e["inside"] = []   # seconds spent inside the closure during each step, to attribute the rest
            closure = timed_closure(closure, device, e["inside"])
            e["run"] = lambda m=e["minimizer"], c=closure, losses=e["losses"]: losses.append(m.step(c))
        else:
            e["run"] = forward_backward(e["model"], closure)

    for e in entries:                                   # warm-up (allocator, kernels) and peak memory
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        e["run"]()
        e["run"]()
        synchronize(device)
        e["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    for e in entries[1:]:
        e["inside"].clear()
    medians = interleaved_medians([e["run"] for e in entries], device, args.repeats, warmup=0)
    for e, median in zip(entries, medians):
        e["median"] = median

    fb = entries[0]["median"]
    rows = []
    for e in entries[1:]:
        m = e["minimizer"]
        step = e["median"]
        floor = m.gradient_evaluations * fb
        rows.append({
            "model": model_name, "minimizer": e["label"], "batch_size": args.batch_size,
            "images_per_second": args.batch_size / step, "step_ms": 1000 * step,
            "gradient_evaluations": m.gradient_evaluations, "floor_ms": 1000 * floor,
            "overhead_pct": 100 * (step / floor - 1),
            # The same step split into closure time and the rest (minimizer math, copies, base step).
            "in_step_overhead_pct": 100 * (step / statistics.median(per_step_sums(e["inside"], m, args.repeats)) - 1),
            "buffers_x_params": buffer_bytes(m) / param_bytes,
            "peak_mb": e["peak_mb"],
        })
        if args.precision != "fp32":   # correctness of the reduced-precision steps (not in the default report)
            rows[-1].update(correctness(e, base, args.precision))
    by_label = {r["minimizer"]: r for r in rows}
    ratios = {}
    for k in (2, 5):
        shared, repeat = by_label[f"Lookbehind_SAM k={k}"], by_label[f"Lookbehind_SAM k={k} (2k passes)"]
        ratios[k] = shared["step_ms"] / repeat["step_ms"]
    return rows, fb, ratios


def correctness(entry, base, precision):
    """Did the minimizer move the weights, are its weights and step losses finite, the scaler's scale."""
    params = list(entry["model"].parameters())
    moved = any(not torch.equal(p, q) for p, q in zip(params, base.parameters()))
    finite = (all(bool(torch.isfinite(p).all()) for p in params)
              and all(bool(torch.isfinite(loss).all()) for loss in entry["losses"] if loss is not None))
    scaler = entry["scaler"]
    return {"precision": precision, "stepped": moved, "finite": finite,
            "scale": scaler.get_scale() if scaler is not None else None}


def bench_data_path(args, device, fb_resnet20_128):
    """Augment+batch one CIFAR-sized epoch (50,000 images) vs. an epoch of resnet20 training with SGD."""
    num = args.data_images
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (num, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
    dataset = data.Dataset(name="synthetic", train_images=images,
                           train_labels=torch.zeros(num, dtype=torch.int64, device=device),
                           test_images=images[:1], test_labels=torch.zeros(1, dtype=torch.int64, device=device),
                           num_classes=10, mean=torch.full((3, 1, 1), 0.5, device=device),
                           std=torch.full((3, 1, 1), 0.25, device=device))
    def one_epoch(epoch):
        for _ in data.train_batches(dataset, 128, seed=0, epoch=epoch, channels_last=args.channels_last):
            pass
    times = [timed(lambda: one_epoch(epoch), device) for epoch in range(3)]
    data_epoch = statistics.median(times)
    train_epoch = data.num_train_batches(dataset, 128) * fb_resnet20_128
    return data_epoch, train_epoch


def bench_precision(args, device):
    """Forward+backward time of resnet20 / wrn28_2 in fp32, bf16 autocast, channels_last (, compile)."""
    variants = [("fp32", "fp32", False, False), ("bf16 autocast", "bf16", False, False),
                ("channels_last", "fp32", True, False), ("bf16 + channels_last", "bf16", True, False)]
    if args.compile:
        variants.append(("torch.compile", "fp32", False, True))
    rows = []
    for model_name in args.models:
        entries = []
        for label, precision, cl, compiled in variants:
            torch.manual_seed(0)
            model = models.create_model(model_name, 10).to(device)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            if compiled:
                model = torch.compile(model)
            x, y = make_batch(args.batch_size, device, cl)
            entries.append((label, forward_backward(model, make_closure(model, x, y, precision))))
        medians = interleaved_medians([run for _, run in entries], device, args.repeats)
        for (label, _), median in zip(entries, medians):
            rows.append({"model": model_name, "variant": label, "fb_ms": 1000 * median, "speedup": medians[0] / median})
    return rows


def markdown(rows, columns):
    head = "| " + " | ".join(h for h, _, _ in columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(("n/a" if r[key] is None else fmt.format(r[key])) for _, key, fmt in columns)
                   + " |\n" for r in rows)
    return head + body


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", nargs="+", default=["resnet20", "wrn28_2"])
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (medians reported)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--precision", nargs="?", const="table", default="fp32", choices=["fp32", "bf16", "fp16", "table"],
                   help="fp16/bf16: every step in that autocast (fp16: a GradScaler attached to each minimizer; "
                        "timings meaningful on a GPU only); alone (no value): the same as --precision_table")
    p.add_argument("--precision_table", action="store_true",
                   help="also time fp32 / bf16 autocast / channels_last (and --compile)")
    p.add_argument("--vit", action="store_true",
                   help=f"add {', '.join(VIT_MODELS)} to --models (needs timm; skipped with a note without it)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                   help="base optimizer of every minimizer (sgd: lr 0.01, momentum 0.9; adamw: lr 1e-3, wd 0.05)")
    p.add_argument("--compile", action="store_true", help="include torch.compile in the precision table")
    p.add_argument("--data_images", type=int, default=50000, help="images in the data-path epoch")
    p.add_argument("--out", default="results/benchmarks.md")
    args = p.parse_args(argv)
    if args.precision == "table":          # the bare --precision of earlier versions: the precision table
        args.precision, args.precision_table = "fp32", True
    args.notes = []
    if args.vit:
        missing = models.missing_package(VIT_MODELS[0])
        if missing:
            args.notes.append(f"- --vit: {', '.join(VIT_MODELS)} skipped: needs the {missing} package "
                              f"(pip install {missing})")
        else:
            args.models += [name for name in VIT_MODELS if name not in args.models]
    for name in args.models:
        if name not in models.available_models():
            p.error(f"unknown model {name!r}; available: {', '.join(models.available_models())}")
        missing = models.missing_package(name)
        if missing:
            p.error(f"--models {name}: needs the {missing} package (pip install {missing})")
    if args.batch_size < 2 or args.repeats < 1:
        p.error("--batch_size must be >= 2 and --repeats >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    started = time.time()
    all_rows, summary = [], []
    fb_r20 = None
    for model_name in args.models:
        rows, fb, ratios = bench_model(model_name, args, device)
        all_rows += rows
        if model_name == "resnet20" and args.batch_size == 128 and args.precision == "fp32":
            fb_r20 = fb
        summary.append(f"- {model_name}: one forward+backward {1000 * fb:.1f} ms; Lookbehind_SAM step, "
                       f"k+1 passes / 2k passes: k=2 **{ratios[2]:.3f}x**, k=5 **{ratios[5]:.3f}x**")
        print(summary[-1], flush=True)
    if fb_r20 is None:
        torch.manual_seed(0)
        r20 = models.create_model("resnet20", 10).to(device)
        x, y = make_batch(128, device, args.channels_last)
        fb_r20, = interleaved_medians([forward_backward(r20, make_closure(r20, x, y, "fp32"))], device,
                                      args.repeats, warmup=1)
    data_epoch, train_epoch = bench_data_path(args, device, fb_r20)
    data_line = (f"- data path: augmenting + batching {args.data_images} images takes {data_epoch:.2f} s, "
                 f"**{100 * data_epoch / train_epoch:.2f}%** of a resnet20 SGD epoch at batch 128 "
                 f"({train_epoch:.1f} s = batches x one forward+backward)")
    print(data_line, flush=True)

    cols = [("model", "model", "{}"), ("minimizer", "minimizer", "{}"), ("images/s", "images_per_second", "{:.1f}"),
            ("grad evals", "gradient_evaluations", "{}"), ("step ms", "step_ms", "{:.1f}"),
            ("floor ms", "floor_ms", "{:.1f}"), ("overhead", "overhead_pct", "{:+.1f}%"),
            ("in-step overhead", "in_step_overhead_pct", "{:+.1f}%"),
            ("buffers (x params)", "buffers_x_params", "{:.1f}"), ("peak MB", "peak_mb", "{:.0f}")]
    if args.precision != "fp32":
        cols += [("stepped", "stepped", "{}"), ("finite", "finite", "{}")]
        if args.precision == "fp16":
            cols.append(("final scale", "scale", "{:g}"))
        bad = [f"{r['model']} {r['minimizer']}" for r in all_rows if not (r["stepped"] and r["finite"])]
        check = (f"- {args.precision} check: every minimizer stepped"
                 f"{' with its own GradScaler attached' if args.precision == 'fp16' else ''} and its weights "
                 f"and losses are finite" if not bad else
                 f"- {args.precision} check FAILED (did not step, or non-finite): {'; '.join(bad)}")
        print(check, flush=True)
        args.notes.append(check)
        if device.type != "cuda":
            args.notes.append(f"- {args.precision} on {device.type}: the timing ratios above are not meaningful "
                              f"(CPU {args.precision} autocast is emulated, not a fast path); they are "
                              f"meaningful on a GPU only (`--device cuda`). Here the run checks correctness.")
    threads = torch.get_num_threads()
    report = ["# Benchmark\n",
              f"`python -m scripts.tools.benchmark {' '.join(sys.argv[1:] if argv is None else argv)}` on "
              f"{device.type} ({platform.processor() or platform.machine()}, {threads} threads), torch "
              f"{torch.__version__}, batch {args.batch_size}, {args.precision}, base optimizer {args.optimizer}, "
              f"medians of {args.repeats} interleaved rounds, "
              f"{time.time() - started:.0f} s.\n",
              "Overhead = step time / (gradient evaluations x one forward+backward) - 1, the forward+backward "
              "timed on its own model copy in the same rounds. In-step overhead = step time / time spent "
              "inside that step's closure calls - 1: the same cost attributed within each step, free of "
              "differences between model copies. Buffers: the "
              "minimizer's persistent parameter-sized tensors, in units of the model's parameters "
              "(the base optimizer's momentum, 1.0 x params, comes on top for every row).\n",
              markdown(all_rows, cols), "\n".join(summary + args.notes), data_line, ""]
    if args.precision_table:
        prec = bench_precision(args, device)
        report += ["## Precision and memory format (one forward+backward)\n",
                   markdown(prec, [("model", "model", "{}"), ("variant", "variant", "{}"),
                                   ("fwd+bwd ms", "fb_ms", "{:.1f}"), ("speed-up vs fp32", "speedup", "{:.2f}x")])]
    text = "\n".join(report)
    print(text)
    write_atomic(args.out, text)
    import csv
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(all_rows[0]))
    writer.writeheader()
    writer.writerows(all_rows)
    write_atomic(os.path.splitext(args.out)[0] + ".csv", buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
