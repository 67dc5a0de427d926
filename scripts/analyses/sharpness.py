"""Sharpness of trained models: worst-case loss increase in a neighbourhood, top Hessian eigenvalue.

    python -m scripts.analyses.sharpness RUN_DIR... [--radius 0.01 0.02 0.05 0.1] [--asam_radius 0.1 0.2 0.5 1]
                                [--steps 5] [--images 512] [--power_iterations 20] [--trace_samples 0]

For every run directory, the model at its evaluation weights (Lookbehind's slow weights) is measured on a
fixed subset of its training set (--images, drawn with --subset_seed, no augmentation, the same images
for every run trained on the same data), with BatchNorm in eval mode (its running statistics fixed, so
the loss is a deterministic function of the weights). L is the mean cross-entropy over that subset,
all parameters w are perturbed (SAM's ball):
  (a) worst-case loss increase  max_{||eps|| <= r} L(w + eps) - L(w), for each radius r, in two balls:
      l2:    ||eps||_2 <= r  (SAM's neighbourhood)
      asam:  ||eps / T||_2 <= r with T = |w| + eta on weight tensors, 1 elsewhere (ASAM's
             scale-invariant neighbourhood, as minimizers.ASAMAscent)
      estimated by projected normalized gradient ascent: eps_1 = SAM's step r g/||g|| (in the ball's
      metric), then --steps - 1 ascent steps of length --step_size * r, each projected back onto the
      ball; the reported value is the largest increase seen (a lower bound of the true maximum).
  (b) top Hessian eigenvalue by power iteration with Hessian-vector products (double backward, or
      --hvp finite_difference: central differences of gradients, much faster on the CPU), from a
      seeded random start; the eigenvalue of largest magnitude, as PyHessian; optionally (c) the Hessian
      trace by Hutchinson's estimator with Rademacher vectors (--trace_samples).
The paper's exact protocol (radii, steps, subset) could not be read here: these are the field's standard
definitions and every knob is a flag.

Only completed runs (summary status records.STATUS_COMPLETED) are measured; any other is refused with one
line naming it and its status, unless --include-incomplete, which measures its last checkpoint.

Writes the CSV (one row per run and measure: run_dir, label, seed, status, epoch, measure, ball, radius, value,
seconds; status and epoch = the run's status and the epochs finished at its checkpoint, always written)
and a figure (worst-case increase vs radius per ball, one line per minimizer setting, band = std over
seeds; eigenvalues as a strip) next to it. Nothing is written unless every run was measured; an unwritable
--out is refused before any checkpoint is loaded (one line, exit 2; missing directories are created).
All loops run on the device without host reads; the values are read once per checkpoint. On a terminal,
a progress bar on stderr counts the measures of all runs (tqdm; none when stderr is a file or a pipe).
"""
import contextlib
import io
import os
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

import data
from scripts.common import check_writable_file, minimizer_order, run_main, write_atomic
from scripts.analyses.trained import add_common_flags, figure_path, load_runs, nonnegative_grid, run_note
from training.cli import Parser, autocast_factory, finite_float, integer, positive_int, resolve_device
from training.records import UsageError

BALLS = ("l2", "asam")


def build_parser():
    parser = Parser(description="Sharpness of trained runs: worst-case loss increase and Hessian spectrum.",
                    allow_abbrev=False)
    add_common_flags(parser, "sharpness.csv")
    parser.add_argument("--radius", nargs="+", type=nonnegative_grid("--radius"), default=[0.01, 0.02, 0.05, 0.1],
                        help="radii of the l2 ball (default 0.01 0.02 0.05 0.1; SAM's rho is 0.05)")
    parser.add_argument("--asam_radius", nargs="+", type=nonnegative_grid("--asam_radius"), default=[0.1, 0.2, 0.5, 1.0],
                        help="radii of the ASAM-normalised ball (default 0.1 0.2 0.5 1; ASAM's rho is 0.5)")
    parser.add_argument("--asam_eta", type=finite_float(minimum=0.0), default=0.01, help="ASAM's eta in T = |w| + eta (default 0.01)")
    parser.add_argument("--steps", type=positive_int, default=5, help="loss evaluations of the ascent per radius (default 5)")
    parser.add_argument("--step_size", type=finite_float(strictly_positive=True), default=0.5,
                        help="ascent step length as a fraction of the radius (default 0.5)")
    parser.add_argument("--images", type=positive_int, default=512, help="training images in the fixed subset (default 512)")
    parser.add_argument("--batch_size", type=positive_int, default=256, help="batch size for the passes (default 256)")
    parser.add_argument("--subset_seed", type=integer, default=0, help="seed of the subset (default 0)")
    parser.add_argument("--power_iterations", type=integer, default=20, help="0 = skip the eigenvalue (default 20)")
    parser.add_argument("--trace_samples", type=integer, default=0, help="Hutchinson samples, 0 = skip (default)")
    parser.add_argument("--hvp", default="autograd", choices=list(HVP),
                        help="Hessian-vector products by double backward (default, exact) or by central "
                             "differences of two gradients (finite_difference: ~5x faster on the CPU)")
    parser.add_argument("--seed", type=integer, default=0, help="seed of the power-iteration start and trace probes")
    return parser


# ------------------------------------------------------------------------------------ the measures
# A "problem" is (model, params, batches, loss_fn): params the tensors perturbed, batches a list of
# (inputs, targets) on the device, loss_fn(outputs, targets) the mean loss of a batch. L is the
# image-weighted mean over the batches. Functions return device tensors: nothing is read to the host.

def batch_weights(batches):
    total = sum(targets.shape[0] for _, targets in batches)
    return [targets.shape[0] / total for _, targets in batches]


def mean_loss(model, batches, loss_fn, autocast):
    with torch.no_grad():
        total = None
        for (inputs, targets), weight in zip(batches, batch_weights(batches)):
            with autocast():
                outputs = model(inputs)
            loss = loss_fn(outputs.float(), targets) * weight
            total = loss if total is None else total + loss
        return total


def loss_and_gradient(model, params, batches, loss_fn, autocast):
    total, grads = None, [torch.zeros_like(p) for p in params]
    for (inputs, targets), weight in zip(batches, batch_weights(batches)):
        with autocast():
            outputs = model(inputs)
        loss = loss_fn(outputs.float(), targets) * weight
        torch._foreach_add_(grads, torch.autograd.grad(loss, params))
        total = loss.detach() if total is None else total + loss.detach()
    return total, grads


def hessian_vector_product(model, params, batches, loss_fn, vectors):
    """H v by double backward, summed over the batches (fp32: second derivatives need the precision)."""
    out = [torch.zeros_like(p) for p in params]
    for (inputs, targets), weight in zip(batches, batch_weights(batches)):
        loss = loss_fn(model(inputs).float(), targets) * weight
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vectors))
        torch._foreach_add_(out, torch.autograd.grad(dot, params))
    return out


def finite_difference_hvp(model, params, batches, loss_fn, vectors, step=1e-3):
    """H v ~ (g(w + h v) - g(w - h v)) / 2h (central differences: exact for a quadratic loss, error
    O(h^2) otherwise); two gradient passes instead of a double backward, which is ~10x a gradient
    pass for convolutions on the CPU. The parameters are restored afterwards."""
    clean = [p.detach().clone() for p in params]
    h = step / (norm(vectors) + 1e-30)
    grads = []
    try:
        for sign in (1.0, -1.0):
            with torch.no_grad():
                torch._foreach_copy_(params, clean)
                torch._foreach_add_(params, torch._foreach_mul(vectors, sign * h))
            grads.append(loss_and_gradient(model, params, batches, loss_fn, contextlib.nullcontext)[1])
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, clean)
    difference = torch._foreach_sub(grads[0], grads[1])
    return list(torch._foreach_div(difference, 2 * h))


HVP = {"autograd": hessian_vector_product, "finite_difference": finite_difference_hvp}


def dot(xs, ys):
    return sum((x * y).sum() for x, y in zip(xs, ys))


def norm(xs):
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(xs)))


def top_eigenvalue(model, params, batches, loss_fn, iterations, generator, hvp=hessian_vector_product):
    """Power iteration: (Rayleigh quotient of the last iterate, relative change over the last step)."""
    vectors = [torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) for p in params]
    torch._foreach_div_(vectors, norm(vectors))
    eigenvalue = previous = torch.zeros((), device=params[0].device)
    for _ in range(iterations):
        product = hvp(model, params, batches, loss_fn, vectors)
        previous, eigenvalue = eigenvalue, dot(vectors, product)
        vectors = list(torch._foreach_div(product, norm(product) + 1e-30))
    return eigenvalue, (eigenvalue - previous).abs() / (eigenvalue.abs() + 1e-30)


def hutchinson_trace(model, params, batches, loss_fn, samples, generator, hvp=hessian_vector_product):
    """tr(H) ~ mean over Rademacher z of z.Hz."""
    total = torch.zeros((), device=params[0].device)
    for _ in range(samples):
        probes = [torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype).mul_(2).sub_(1)
                  for p in params]
        total = total + dot(probes, hvp(model, params, batches, loss_fn, probes))
    return total / samples


def ball_scales(names, params, ball, asam_eta):
    """T of the ball's metric ||eps / T|| (None for l2): |w| + eta on weight tensors, 1 elsewhere."""
    if ball == "l2":
        return None
    return [p.detach().abs() + asam_eta if "weight" in name else torch.ones_like(p) for name, p in zip(names, params)]


@torch.no_grad()
def _set(params, clean, scales, delta):
    """params <- clean + T delta."""
    for p, c, i in zip(params, clean, range(len(params))):
        p.copy_(c + (delta[i] if scales is None else scales[i] * delta[i]))


def worst_case_increase(model, params, batches, loss_fn, radius, scales, steps, step_size, autocast):
    """max over the ascent's iterates of L(w + eps) - L(w), ||eps / T|| <= radius (T = 1: l2 ball).

    In delta = eps / T coordinates the ball is an l2 ball and the gradient is T g: normalized ascent
    steps on delta, projected onto ||delta|| <= radius. The parameters are restored afterwards."""
    clean = [p.detach().clone() for p in params]
    base, grads = loss_and_gradient(model, params, batches, loss_fn, autocast)
    best = torch.zeros((), device=base.device)
    if radius == 0:
        return best
    delta = None
    try:
        for step in range(steps):
            direction = grads if scales is None else list(torch._foreach_mul(grads, scales))
            direction = list(torch._foreach_div(direction, norm(direction) + 1e-30))
            if delta is None:                       # SAM's step: straight to the boundary
                delta = list(torch._foreach_mul(direction, radius))
            else:
                torch._foreach_add_(delta, direction, alpha=step_size * radius)
                torch._foreach_mul_(delta, torch.clamp(radius / (norm(delta) + 1e-30), max=1.0))
            _set(params, clean, scales, delta)
            if step == steps - 1:
                loss = mean_loss(model, batches, loss_fn, autocast)
            else:
                loss, grads = loss_and_gradient(model, params, batches, loss_fn, autocast)
            best = torch.maximum(best, loss - base)
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, clean)
    return best


# ------------------------------------------------------------------------------------ the script
def training_subset(dataset, images, seed, batch_size, channels_last):
    """A fixed, seeded subset of the training images, normalised, no augmentation, as device batches."""
    count = dataset.train_labels.shape[0]
    if images > count:
        raise UsageError(f"--images {images}: the run trained on {count} images")
    index = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:images]
    if isinstance(dataset, data.FolderDataset):  # ImageNet: the files, with the evaluation transform
        chunks = [index[i:i + batch_size].tolist() for i in range(0, images, batch_size)]
        return list(data.folder_train_images(dataset, chunks, channels_last))
    index = index.to(dataset.train_labels.device)
    inputs = data.normalize(dataset.train_images[index], dataset.mean, dataset.std)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    labels = dataset.train_labels[index]
    return [(inputs[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, images, batch_size)]


def measure_count(args):
    """How many measures measure() takes of one model (the progress bar's work units)."""
    return (1 + len(args.radius) + len(args.asam_radius) + (args.power_iterations > 0)
            + (args.trace_samples > 0))


def measure(model, batches, args, autocast, progress=None):
    """Every measure of one model as [(measure, ball, radius, device tensor)]; progress.update(1) after
    each of the measure_count(args) measures (on a GPU: once its work is queued)."""
    advance = progress.update if progress is not None else lambda n: None
    model.eval()   # BatchNorm fixed: the loss is a function of the weights alone
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in named], [p for _, p in named]
    loss_fn = F.cross_entropy
    out = [("loss", "", 0.0, mean_loss(model, batches, loss_fn, autocast))]
    advance(1)
    for ball, radii in (("l2", args.radius), ("asam", args.asam_radius)):
        scales = ball_scales(names, params, ball, args.asam_eta)
        for radius in radii:
            out.append(("worst_case_increase", ball, radius,
                        worst_case_increase(model, params, batches, loss_fn, radius, scales, args.steps,
                                            args.step_size, autocast)))
            advance(1)
    generator = torch.Generator(device=params[0].device).manual_seed(args.seed)
    if args.power_iterations > 0:
        eigenvalue, change = top_eigenvalue(model, params, batches, loss_fn, args.power_iterations, generator,
                                            HVP[args.hvp])
        out += [("top_eigenvalue", "", 0.0, eigenvalue), ("top_eigenvalue_last_change", "", 0.0, change)]
        advance(1)
    if args.trace_samples > 0:
        out.append(("hessian_trace", "", 0.0, hutchinson_trace(model, params, batches, loss_fn,
                                                               args.trace_samples, generator, HVP[args.hvp])))
        advance(1)
    return out


def _strip(ax, values_by_label, labels):
    """One column per minimizer: a dot per seed, a bar at the mean."""
    for position, label in enumerate(labels):
        values = values_by_label(label)
        ax.scatter([position] * len(values), values, s=14)
        if len(values):
            ax.plot([position - 0.25, position + 0.25], [values.mean()] * 2, color="black", linewidth=1)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)


def draw(frame):
    """The figure (None where nothing was measured that it shows): one panel per ball (a line over the radii, or
    a strip of seeds where the ball has one radius) and one for the top eigenvalue, where those were measured."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = minimizer_order(list(frame["label"].unique()))
    worst = frame[frame["measure"] == "worst_case_increase"]
    eig = frame[frame["measure"] == "top_eigenvalue"]
    balls = [(ball, name) for ball, name in (("l2", "ℓ2 ball (SAM's)"), ("asam", "ASAM-normalised ball"))
             if (worst["ball"] == ball).any()]
    panels = len(balls) + bool(len(eig))
    if not panels:
        return None
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), squeeze=False)
    axes = list(axes[0])
    for ax, (ball, name) in zip(axes, balls):
        part = worst[worst["ball"] == ball]
        radii = sorted(part["radius"].unique())
        if len(radii) == 1:     # a line over one radius is a point: show the seeds instead
            _strip(ax, lambda label: part[part["label"] == label]["value"], labels)
            ax.set(ylabel="max L(w + ε) − L(w)", title=f"worst-case loss increase, {name}, r = {radii[0]:g}\n"
                   "(dots: seeds, bar: mean)")
        else:
            for label in labels:
                stats = part[part["label"] == label].groupby("radius")["value"].agg(["mean", "std"]).fillna(0.0)
                if stats.empty:
                    continue
                line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=label)
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=line.get_color(), alpha=0.15)
            ax.set(xlabel=f"{name}: radius r", ylabel="max L(w + ε) − L(w)",
                   title=f"worst-case loss increase, {name}\n(band: std over seeds)")
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if len(eig):
        ax = axes[-1]
        _strip(ax, lambda label: eig[eig["label"] == label]["value"], labels)
        ax.set(ylabel="top Hessian eigenvalue", title="top eigenvalue\n(dots: seeds, bar: mean)")
        ax.grid(alpha=0.3)
    fig.suptitle("Sharpness on a fixed training subset, BatchNorm in eval mode", fontsize=10)
    fig.tight_layout()
    return fig


def plot(frame, path):
    """draw(frame) as a PNG at path, written atomically."""
    import matplotlib.pyplot as plt

    fig = draw(frame)
    if fig is None:
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def run(argv):
    args = build_parser().parse_args(argv)
    if args.power_iterations < 0 or args.trace_samples < 0:
        raise UsageError("--power_iterations and --trace_samples must be >= 0")
    check_writable_file(args.out)   # before any work: an unusable --out is found at once
    check_writable_file(figure_path(args.out), "figure (next to --out)")
    device = resolve_device(args.device)
    channels_last = device.type == "cpu" if args.channels_last is None else args.channels_last
    autocast = autocast_factory(device, args.precision)
    rows = []
    runs = load_runs(args.run_dirs, device, channels_last, args.data_dir, args.include_incomplete)
    # A bar over every run's measures on stderr, only when it is a terminal (disable=None); the
    # per-run lines go through tqdm.write so that they do not break it.
    with tqdm(total=len(runs) * measure_count(args), desc="sharpness", unit="measure", file=sys.stderr,
              disable=None, dynamic_ncols=True) as progress:
        for trained, dataset in runs:
            progress.set_postfix_str(os.path.basename(os.path.normpath(trained.run_dir)), refresh=False)
            start = time.perf_counter()
            batches = training_subset(dataset, args.images, args.subset_seed, args.batch_size, channels_last)
            results = measure(trained.model, batches, args, autocast, progress)
            values = torch.stack([value.float() for *_, value in results]).tolist()   # the one host read
            seconds = time.perf_counter() - start
            for (name, ball, radius, _), value in zip(results, values):
                rows.append({"run_dir": trained.run_dir, "label": trained.label, "seed": trained.seed,
                             "status": trained.status, "epoch": trained.epochs_completed, "measure": name,
                             "ball": ball, "radius": radius, "value": value, "seconds": round(seconds, 2)})
            summary = {f"{n}{'_' + b if b else ''}{'@' + format(r, 'g') if r else ''}": v
                       for (n, b, r, _), v in zip(results, values)}
            tqdm.write(f"{trained.run_dir}{run_note(trained)}: loss {summary['loss']:.4f}, top eigenvalue "
                       f"{summary.get('top_eigenvalue', float('nan')):.3g} | {seconds:.1f}s", file=sys.stdout)
            sys.stdout.flush()
    frame = pd.DataFrame(rows)
    write_atomic(args.out, frame.to_csv(index=False))
    plot(frame, figure_path(args.out))
    print(f"wrote {args.out} and {figure_path(args.out)}")
    return 0


def main(argv=None):
    return run_main(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
