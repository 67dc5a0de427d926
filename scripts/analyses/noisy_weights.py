"""Robustness to noisy weights: test accuracy of trained models with Gaussian noise added to their weights.

    python -m scripts.analyses.noisy_weights RUN_DIR... [--eta 0 0.01 0.02 0.04 0.08] [--draws 5]
                                    [--noise additive|multiplicative] [--include_batchnorm] [--out CSV]

For every run directory (example_cifar.py's records), the model at its evaluation weights (Lookbehind's
slow weights) is evaluated on the run's test set with noise added to its weights, for each noise level
eta and several independent draws:
  additive (default):  w + eta * (max(w) - min(w)) * N(0, 1), per tensor: the model of noisy analog
                       accelerators used in prior work of the paper's first author (our reading of the
                       paper's protocol, whose exact settings could not be read here);
  multiplicative:      w * (1 + eta * N(0, 1)).
Perturbed tensors: weights and biases of convolutions and linear layers; --include_batchnorm adds the
BatchNorm scale and shift. BatchNorm runs in eval mode with its running statistics from training.
eta = 0 is evaluated once (one draw) and gives exactly the clean accuracy. Draw d uses the same random
numbers for every eta and every run (seed --seed + d), so curves differ by the models, not the noise.

Only completed runs (summary status records.STATUS_COMPLETED) are analysed; any other is refused with one
line naming it and its status, unless --include-incomplete, which evaluates its last checkpoint.

Writes the CSV (run_dir, label, seed, status, epoch, noise, eta, draw, test_acc, seconds = time for this
checkpoint; status and epoch = the run's status and the epochs finished at its checkpoint, always written) and
a figure (accuracy vs eta, one line per minimizer setting, band = std over seeds and draws) next to it.
Nothing is written unless every run was evaluated. Exit 2 with one line on stderr for bad input, an
unwritable --out included (checked before any checkpoint is loaded; missing directories are created).
On the device: every evaluation accumulates on the device; the accuracies are read once per checkpoint.
"""
import io
import sys
import time

import pandas as pd
import torch

from scripts.common import check_writable_file, minimizer_order, run_main, write_atomic
from scripts.analyses.trained import add_common_flags, figure_path, load_runs, nonnegative_grid, run_note
from training.cli import Parser, autocast_factory, positive_int, resolve_device
from training.loop import test_sums
from training.records import UsageError

NOISE_MODELS = ("additive", "multiplicative")


def build_parser():
    parser = Parser(description="Test accuracy of trained runs under Gaussian weight noise.", allow_abbrev=False)
    add_common_flags(parser, "noisy_weights.csv")
    parser.add_argument("--eta", nargs="+", type=nonnegative_grid("--eta"), default=[0.0, 0.01, 0.02, 0.04, 0.08],
                        help="noise levels (default 0 0.01 0.02 0.04 0.08)")
    parser.add_argument("--noise", default="additive", choices=NOISE_MODELS,
                        help="additive: w + eta*(max-min)*N(0,1) per tensor (default); multiplicative: w*(1+eta*N(0,1))")
    parser.add_argument("--draws", type=positive_int, default=5, help="noise draws per level (default %(default)s)")
    parser.add_argument("--include_batchnorm", action="store_true",
                        help="also perturb BatchNorm scale and shift (default: conv/linear weights and biases only)")
    parser.add_argument("--seed", type=int, default=0, help="draw d uses seed + d (default %(default)s)")
    return parser


def perturbed_tensors(model, include_batchnorm=False):
    """The parameters the noise goes into: conv/linear weights and biases (+ BatchNorm affine)."""
    kinds = (torch.nn.Conv2d, torch.nn.Linear) + ((torch.nn.modules.batchnorm._BatchNorm,) if include_batchnorm else ())
    return [p for module in model.modules() if isinstance(module, kinds)
            for p in module.parameters(recurse=False)]


@torch.no_grad()
def add_noise(tensors, clean, eta, noise, generator):
    """tensors <- clean with noise of level eta (in place, on the device, no host reads)."""
    for tensor, original in zip(tensors, clean):
        epsilon = torch.randn(original.shape, generator=generator, device=original.device, dtype=original.dtype)
        if noise == "additive":
            scale = (original.max() - original.min()) * eta
            tensor.copy_(original + scale * epsilon)
        else:
            tensor.copy_(original * (1.0 + eta * epsilon))


@torch.no_grad()
def noisy_accuracies(model, dataset, etas, draws, noise, include_batchnorm, seed, channels_last, autocast):
    """Test accuracies (%) as a host list of lists [eta][draw] (one draw for eta = 0); one host read."""
    model.eval()   # BatchNorm with its running statistics
    tensors = perturbed_tensors(model, include_batchnorm)
    clean = [t.detach().clone() for t in tensors]
    device = dataset.test_labels.device
    generator = torch.Generator(device=device)
    correct = []
    try:
        for eta in etas:
            for draw in range(1 if eta == 0 else draws):
                generator.manual_seed(seed + draw)
                add_noise(tensors, clean, eta, noise, generator)
                correct.append(test_sums(model, dataset, channels_last, autocast)[1])
    finally:
        for tensor, original in zip(tensors, clean):
            tensor.copy_(original)
    counts = torch.stack(correct).double().mul_(100.0 / dataset.test_labels.shape[0]).tolist()
    out, position = [], 0
    for eta in etas:
        n = 1 if eta == 0 else draws
        out.append(counts[position:position + n])
        position += n
    return out


def plot(frame, path, noise):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label in minimizer_order(list(frame["label"].unique())):
        stats = frame[frame["label"] == label].groupby("eta")["test_acc"].agg(["mean", "std"]).fillna(0.0)
        line, = ax.plot(stats.index, stats["mean"], marker="o", markersize=3, label=label)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        color=line.get_color(), alpha=0.15)
    scale = "η · (max − min) per tensor" if noise == "additive" else "w · (1 + η·N(0, 1))"
    ax.set(xlabel=f"noise level η ({noise}: {scale})", ylabel="test accuracy (%)",
           title="Robustness to weight noise (mean ± std over seeds and draws)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def run(argv):
    args = build_parser().parse_args(argv)
    if not args.eta:
        raise UsageError("--eta: the grid is empty")
    check_writable_file(args.out)   # before any work: an unusable --out is found at once
    check_writable_file(figure_path(args.out), "figure (next to --out)")
    etas = sorted(set(args.eta))
    device = resolve_device(args.device)
    channels_last = device.type == "cpu" if args.channels_last is None else args.channels_last
    autocast = autocast_factory(device, args.precision)
    rows = []
    for trained, dataset in load_runs(args.run_dirs, device, channels_last, args.data_dir, args.include_incomplete):
        start = time.perf_counter()
        accuracies = noisy_accuracies(trained.model, dataset, etas, args.draws, args.noise,
                                      args.include_batchnorm, args.seed, channels_last, autocast)
        seconds = time.perf_counter() - start
        for eta, values in zip(etas, accuracies):
            for draw, acc in enumerate(values):
                rows.append({"run_dir": trained.run_dir, "label": trained.label, "seed": trained.seed,
                             "status": trained.status, "epoch": trained.epochs_completed, "noise": args.noise,
                             "eta": eta, "draw": draw, "test_acc": round(acc, 4), "seconds": round(seconds, 2)})
        evaluations = sum(len(v) for v in accuracies)
        print(f"{trained.run_dir}{run_note(trained)}: clean {accuracies[0][0] if etas[0] == 0 else float('nan'):.2f}%, "
              f"eta {etas[-1]:g}: {sum(accuracies[-1]) / len(accuracies[-1]):.2f}% | {evaluations} evaluations "
              f"of {dataset.test_labels.shape[0]} images in {seconds:.1f}s", flush=True)
    frame = pd.DataFrame(rows)
    write_atomic(args.out, frame.to_csv(index=False))
    plot(frame, figure_path(args.out), args.noise)
    print(f"wrote {args.out} and {figure_path(args.out)}")
    return 0


def main(argv=None):
    return run_main(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
