"""The paper's figures from the CSVs written by python -m scripts.reports.collect (a few seconds each).

    python -m scripts.reports.figures kalpha results/kalpha           # k x alpha heatmaps
    python -m scripts.reports.figures rho results/rho                 # test accuracy vs rho per minimizer
    python -m scripts.reports.figures curves results/generalization   # learning curves across minimizers

(run from the repository root: the scripts share scripts/common.py).

kalpha  reads grouped.csv; one figure per dataset/model with a heatmap per Lookbehind minimizer:
        rows k, columns alpha (alpha = -1 shown as "adaptive"), colour and text = mean test accuracy
        over completed seeds, "± std" and n under it; cells whose runs all diverged are grey.  When
        the sweep has the plain baseline (SAM for Lookbehind_SAM, ...) its accuracy is in the title.
rho     reads grouped.csv; one figure per dataset/model, a panel per family (SAM-type, ASAM-type),
        mean test accuracy vs rho (log axis) with ± std error bars, one line per minimizer.
curves  reads curves.csv; one figure per dataset/model: test accuracy and train loss per epoch,
        mean over the completed seeds of each minimizer (band = ± std).
alpha   reads curves.csv; one figure per dataset/model: the adaptive alpha (metrics.csv's alpha_mean,
        alpha_min, alpha_max of runs with --alpha -1) per epoch, per run and averaged over seeds.

Writes PNG and PDF (--formats: comma-separated, any format matplotlib can save here, e.g. png,pdf,svg;
checked before any figure is drawn) to <results dir>/figures/ (or --out) and prints the paths.
--metric best|final picks the accuracy for kalpha/rho (default best, as tables.py).
--where COLUMN=VALUE (repeatable) keeps only matching rows (e.g. --where epochs=200).
Errors the user can fix print one line and exit 2.
"""
import argparse
import io
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scripts.common import (Parser, apply_where, check_writable_dir, display_dataset, display_minimizer,  # noqa: E402
                            display_model, epochs_text, minimizer_order, read_whole_csv, run_main, write_atomic)
from training import records
from training.records import STATUS_COMPLETED, STATUS_DIVERGED, UsageError, one_line  # noqa: E402

COLORS = {"SGD": "#7f7f7f", "SAM": "#1f77b4", "ASAM": "#17becf", "Multistep_SAM": "#2ca02c",
          "Multistep_ASAM": "#bcbd22", "Lookahead_SAM": "#9467bd", "Lookahead_ASAM": "#e377c2",
          "Lookahead_SGD": "#8c564b", "Lookbehind_SAM": "#d62728", "Lookbehind_ASAM": "#ff7f0e"}


def fmt_num(v):
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def read_csv(path, need):
    if not os.path.isfile(path):
        raise UsageError(f"{path} not found (run python -m scripts.reports.collect first)")
    df = read_whole_csv(path)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UsageError(f"{path} lacks columns {', '.join(missing)}")
    df = df.dropna(subset=["dataset", "model", "minimizer"])  # e.g. unreadable run dirs
    if df.empty:
        raise UsageError(f"{path} has no rows")
    return df


def extra_setting_text(df):
    """Settings other than the plotted ones that are constant and worth stating (e.g. train_subset)."""
    parts = []
    lr_col = "config_lr" if "config_lr" in df.columns else "lr"  # in curves.csv, lr is per epoch
    for col, label in (("train_subset", "train subset"), ("batch_size", "batch"), (lr_col, "lr")):
        if col in df.columns:
            vals = df[col].dropna().unique()
            if len(vals) == 1 and not (col == "train_subset" and float(vals[0]) <= 0):
                parts.append(f"{label} {fmt_num(vals[0])}")
    return ", ".join(parts)


def figure_formats(text):
    """argparse type of --formats: comma-separated file formats (png, pdf, svg, ...) that matplotlib can
    save here, at least one. Each is tried on a small figure with text first, so a format that needs
    a missing tool (pgf: a TeX install) is refused before any figure is drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats:
        raise argparse.ArgumentTypeError(f"expected comma-separated formats such as png,pdf, got {text!r}")
    supported = FigureCanvasAgg.get_supported_filetypes()
    unknown = [f for f in formats if f.lower() not in supported]
    if unknown:
        raise argparse.ArgumentTypeError(f"matplotlib cannot save {', '.join(map(repr, unknown))}; "
                                         f"choose from {', '.join(sorted(supported))}")
    probe = plt.figure(figsize=(1, 1))
    probe.text(0.5, 0.5, "α 1")
    try:
        for f in formats:
            try:
                probe.savefig(io.BytesIO(), format=f)
            except Exception as exc:  # noqa: BLE001  (any failure: this format cannot be written here)
                raise argparse.ArgumentTypeError(f"matplotlib cannot save {f!r} here ({one_line(exc)})") from None
    finally:
        plt.close(probe)
    return formats


def save(fig, out_dir, stem, formats):
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext in formats:
        path = os.path.join(out_dir, f"{stem}.{ext}")
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight")
        write_atomic(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def finish(fig, part, what, fontsize, out_dir, stem, formats):
    """Title "<dataset>, <model>: <what> (<epochs, constant settings>)", lay out, save; the paths."""
    dataset, model = part["dataset"].iloc[0], part["model"].iloc[0]
    setting = ", ".join(x for x in (epochs_text(part), extra_setting_text(part)) if x)
    fig.suptitle(f"{display_dataset(dataset)}, {display_model(model)}: {what}"
                 + (f" ({setting})" if setting else ""), fontsize=fontsize)
    fig.tight_layout()
    return save(fig, out_dir, stem, formats)


def metric_cols(metric):
    return f"{metric}_test_acc_mean", f"{metric}_test_acc_std", f"{metric}_test_acc_n"


def metric_label(metric):
    return "best test accuracy (%)" if metric == "best" else "final test accuracy (%)"


def alpha_label(a):
    return "adaptive" if float(a) == -1 else fmt_num(a)


# ---------------------------------------------------------------------------------------- kalpha
def fig_kalpha(results, out_dir, metric="best", formats=("png", "pdf"), where=None):
    mean_c, std_c, n_c = metric_cols(metric)
    df = read_csv(os.path.join(results, "grouped.csv"),
                  ["dataset", "model", "minimizer", "k", "alpha", mean_c, std_c, n_c, "n_runs", "n_diverged"])
    df = apply_where(df, where, "grouped.csv")
    lb = df[df["minimizer"].astype(str).str.startswith("Lookbehind")]
    if lb.empty:
        raise UsageError("no Lookbehind runs in grouped.csv: the k x alpha heatmap needs them")
    paths = []
    for (dataset, model), part in lb.groupby(["dataset", "model"], sort=True):
        minimizers = minimizer_order(sorted(part["minimizer"].unique()))
        fig, axes = plt.subplots(1, len(minimizers), figsize=(5.2 * len(minimizers), 4.4), squeeze=False)
        for ax, minimizer in zip(axes[0], minimizers):
            m = part[part["minimizer"] == minimizer]
            dup = m.duplicated(["k", "alpha"], keep=False)
            if dup.any():
                raise UsageError(f"{dataset}/{model}/{minimizer}: several settings per (k, alpha) "
                                 f"(e.g. rho or epochs differ); select one with --where")
            ks = sorted(m["k"].dropna().unique())
            alphas = sorted(m["alpha"].dropna().unique(), key=lambda a: (float(a) == -1, float(a)))
            grid = np.full((len(ks), len(alphas)), np.nan)
            for _, r in m.iterrows():
                grid[ks.index(r["k"]), alphas.index(r["alpha"])] = r[mean_c]
            finite = grid[np.isfinite(grid)]
            cmap = plt.get_cmap("viridis").with_extremes(bad="#d0d0d0")
            vmin, vmax = (finite.min(), finite.max()) if finite.size else (0, 1)
            if vmax - vmin < 1e-9:
                vmin, vmax = vmin - 0.5, vmax + 0.5
            im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            for _, r in m.iterrows():
                i, j = ks.index(r["k"]), alphas.index(r["alpha"])
                if math.isnan(r[mean_c]):
                    text = STATUS_DIVERGED if r["n_diverged"] else "no run"
                    color = "black"
                else:
                    std = "" if math.isnan(r[std_c]) else f"\n± {r[std_c]:.2f}"
                    text = f"{r[mean_c]:.2f}{std}\nn={int(r[n_c])}"
                    if r["n_diverged"]:
                        text += f" ({int(r['n_diverged'])} div.)"
                    frac = (r[mean_c] - vmin) / (vmax - vmin)
                    color = "black" if frac > 0.6 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
            ax.set_xticks(range(len(alphas)), [alpha_label(a) for a in alphas])
            ax.set_yticks(range(len(ks)), [fmt_num(k) for k in ks])
            ax.set_xlabel("α (slow-weights step size)")
            ax.set_ylabel("k (ascent steps)")
            title = display_minimizer(minimizer)
            rho = m["rho"].dropna().unique() if "rho" in m.columns else []
            if len(rho) == 1:
                title += f", ρ={fmt_num(rho[0])}"
            base_name = minimizer.replace("Lookbehind_", "")
            base = df[(df["dataset"] == dataset) & (df["model"] == model) & (df["minimizer"] == base_name)]
            if len(base) == 1 and not math.isnan(base[mean_c].iloc[0]):
                b = base.iloc[0]
                title += f"\n{display_minimizer(base_name)} baseline: {b[mean_c]:.2f}" + (
                    "" if math.isnan(b[std_c]) else f" ± {b[std_c]:.2f}") + f" (n={int(b[n_c])})"
            ax.set_title(title, fontsize=11)
            fig.colorbar(im, ax=ax, label=metric_label(metric))
        paths += finish(fig, part, f"{metric_label(metric)} over k and α", 12,
                        out_dir, f"kalpha_{dataset}_{model}_{metric}", formats)
    return paths


# ---------------------------------------------------------------------------------------- rho
def fig_rho(results, out_dir, metric="best", formats=("png", "pdf"), where=None):
    mean_c, std_c, n_c = metric_cols(metric)
    df = read_csv(os.path.join(results, "grouped.csv"), ["dataset", "model", "minimizer", "rho", mean_c, std_c, n_c])
    df = apply_where(df, where, "grouped.csv")
    df = df[df["rho"].notna()]
    if df.empty:
        raise UsageError("no runs with a rho in grouped.csv")
    paths = []
    for (dataset, model), part in df.groupby(["dataset", "model"], sort=True):
        fams = [("SAM-type", part[~part["minimizer"].astype(str).str.contains("ASAM")]),
                ("ASAM-type", part[part["minimizer"].astype(str).str.contains("ASAM")])]
        fams = [(name, f) for name, f in fams if not f.empty]
        fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4.2), squeeze=False)
        for ax, (fam, f) in zip(axes[0], fams):
            for minimizer in minimizer_order(sorted(f["minimizer"].unique())):
                m = f[f["minimizer"] == minimizer]
                others = [c for c in ("k", "alpha", "epochs") if c in m.columns and m[c].nunique() > 1]
                if m.duplicated(["rho"], keep=False).any():
                    raise UsageError(f"{dataset}/{model}/{minimizer}: several settings per rho "
                                     f"(differ in {', '.join(others) or 'other columns'}); select one with --where")
                m = m.sort_values("rho")
                ok = m[m[mean_c].notna()]
                label = display_minimizer(minimizer)
                if "k" in m.columns and minimizer.startswith(("Lookbehind", "Multistep", "Lookahead")):
                    k = m["k"].dropna().unique()
                    if len(k) == 1:
                        label += f" (k={fmt_num(k[0])}"
                        a = m["alpha"].dropna().unique() if "alpha" in m.columns else []
                        if minimizer.startswith(("Lookbehind", "Lookahead")) and len(a) == 1:
                            label += f", α={alpha_label(a[0])}"
                        label += ")"
                ax.errorbar(ok["rho"], ok[mean_c], yerr=ok[std_c].fillna(0), marker="o", capsize=3,
                            label=label, color=COLORS.get(minimizer))
                bad = m[m[mean_c].isna()]
                for _, r in bad.iterrows():
                    ax.axvline(r["rho"], color=COLORS.get(minimizer, "grey"), ls=":", lw=1)
                    ax.annotate(STATUS_DIVERGED, (r["rho"], 0.02), xycoords=("data", "axes fraction"),
                                rotation=90, fontsize=7, color=COLORS.get(minimizer, "grey"))
            ax.set_xscale("log")
            rhos = sorted(f["rho"].unique())
            ax.set_xticks(rhos, [fmt_num(r) for r in rhos])
            ax.minorticks_off()
            ax.set_xlabel("ρ (neighbourhood size)")
            ax.set_ylabel(metric_label(metric))
            ax.set_title(f"{fam} minimizers")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        paths += finish(fig, part, f"{metric_label(metric)} vs ρ, mean ± std over seeds", 11,
                        out_dir, f"rho_{dataset}_{model}_{metric}", formats)
    return paths


# ---------------------------------------------------------------------------------------- curves
def fig_curves(results, out_dir, formats=("png", "pdf"), where=None, minimizers=None):
    df = read_csv(os.path.join(results, "curves.csv"),
                  ["dataset", "model", "minimizer", "epoch", "test_acc", "train_loss", "run_name"])
    df = apply_where(df, where, "curves.csv")
    if minimizers:
        df = df[df["minimizer"].isin(minimizers)]
        if df.empty:
            raise UsageError(f"no curves for minimizers {', '.join(minimizers)}")
    if "status" in df.columns:
        done = df[df["status"] == STATUS_COMPLETED]
        if not done.empty:
            df = done
    paths = []
    for (dataset, model), part in df.groupby(["dataset", "model"], sort=True):
        # One line per setting; the label names the settings that vary within a minimizer.
        setting_cols = [c for c in ("minimizer", *records.NAMED_HPARAMS, "minibatch_switching", "epochs", "config_lr")
                        if c in part.columns]
        fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
        styles = ["-", "--", ":", "-."]
        groups = list(part.groupby(setting_cols, dropna=False, sort=False))
        groups.sort(key=lambda g: (minimizer_order(list(part["minimizer"].unique())).index(g[0][0]), str(g[0])))
        seen = {}
        for values, g in groups:
            values = dict(zip(setting_cols, values))
            minimizer = values["minimizer"]
            varying = [c for c in records.NAMED_HPARAMS
                       if c in part.columns and part[part["minimizer"] == minimizer][c].nunique() > 1]
            label = display_minimizer(minimizer) + "".join(
                f", {'ρ' if c == 'rho' else 'α' if c == 'alpha' else c}="
                f"{alpha_label(values[c]) if c == 'alpha' else fmt_num(values[c])}" for c in varying)
            if values.get("minibatch_switching") is True or str(values.get("minibatch_switching")) == "True":
                label += " + switching"
            n = g["run_name"].nunique()
            label += f" (n={n})"
            stats = g.groupby("epoch").agg(acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
                                           loss_mean=("train_loss", "mean"), loss_std=("train_loss", "std"))
            ls = styles[seen.get(minimizer, 0) % len(styles)]
            seen[minimizer] = seen.get(minimizer, 0) + 1
            color = COLORS.get(minimizer)
            for ax, col in ((ax_acc, "acc"), (ax_loss, "loss")):
                evaluated = stats[f"{col}_mean"].notna()   # --eval_every N > 1: test accuracy at some epochs only
                mean, std = stats[f"{col}_mean"][evaluated], stats[f"{col}_std"][evaluated].fillna(0)
                if len(mean) == 1:  # a single epoch: a point with an error bar
                    ax.errorbar(mean.index, mean, yerr=std, fmt="o", capsize=4, color=color, label=label)
                    continue
                line, = ax.plot(mean.index, mean, ls, marker="o" if len(mean) < 15 else None,
                                ms=3, color=color, label=label)
                ax.fill_between(mean.index, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax_acc.set_ylabel("test accuracy (%)")
        ax_loss.set_ylabel("train loss")
        ax_loss.set_yscale("log")
        for ax in (ax_acc, ax_loss):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            epochs = sorted(int(e) for e in part["epoch"].dropna().unique())
            if len(epochs) <= 12:
                ax.set_xticks(epochs)
                ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
            else:
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax_acc.legend(fontsize=8)
        paths += finish(fig, part, "learning curves, mean ± std over seeds", 11,
                        out_dir, f"curves_{dataset}_{model}", formats)
    return paths


def fig_alpha(results, out_dir, formats=("png", "pdf"), where=None):
    """Adaptive alpha over epochs: per run (thin lines) and the mean over seeds per setting (thick);
    dotted: the mean over seeds of each epoch's smallest and largest per-tensor alpha."""
    df = read_csv(os.path.join(results, "curves.csv"),
                  ["dataset", "model", "minimizer", "epoch", "run_name", "alpha_mean", "alpha_min", "alpha_max"])
    df = apply_where(df, where, "curves.csv")
    df = df[pd.to_numeric(df["alpha_mean"], errors="coerce").notna()]
    if df.empty:
        raise UsageError("curves.csv has no adaptive-alpha values (runs with --alpha -1 write alpha_mean)")
    paths = []
    for (dataset, model), part in df.groupby(["dataset", "model"], sort=True):
        part = part.copy()
        switching = part["minibatch_switching"].astype(str) == "True" if "minibatch_switching" in part else False
        part["label"] = part["minimizer"].map(display_minimizer) + np.where(switching, " + switching", "")
        fig, ax = plt.subplots(figsize=(11, 4.2))
        for index, (label, g) in enumerate(sorted(part.groupby("label"), key=lambda item: item[0])):
            color = plt.rcParams["axes.prop_cycle"].by_key()["color"][index % 10]
            for _, run in g.groupby("run_name"):
                ax.plot(run["epoch"], run["alpha_mean"], color=color, linewidth=0.7, alpha=0.5)
            stats = g.groupby("epoch")[["alpha_mean", "alpha_min", "alpha_max"]].mean()
            ax.plot(stats.index, stats["alpha_mean"], color=color, linewidth=2, marker="o", ms=3,
                    label=f"{label} (n={g['run_name'].nunique()})")
            ax.plot(stats.index, stats["alpha_min"], ":", color=color, linewidth=1)
            ax.plot(stats.index, stats["alpha_max"], ":", color=color, linewidth=1)
        ax.set(xlabel="epoch", ylabel="adaptive α")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("per epoch: mean over slow updates and tensors (thin: runs, thick: mean over seeds; "
                     "dotted: smallest/largest)", fontsize=9)
        paths += finish(fig, part, "adaptive alpha", 10, out_dir, f"alpha_{dataset}_{model}", formats)
    return paths


def build_parser():
    parser = Parser(
        description="The paper's figures (PNG + PDF) from collect.py's CSVs; a few seconds each.",
        epilog="Example (from the repository root): python -m scripts.reports.figures kalpha results/kalpha")
    parser.add_argument("kind", choices=["kalpha", "rho", "curves", "alpha"])
    parser.add_argument("results", help="results directory with grouped.csv / curves.csv")
    parser.add_argument("--out", help="output directory (default: <results>/figures)")
    parser.add_argument("--metric", choices=["best", "final"], default="best")
    parser.add_argument("--formats", type=figure_formats, default="png,pdf",
                        help="comma-separated file formats matplotlib saves: png, pdf, svg, eps, jpg, ... "
                             "(default png,pdf)")
    parser.add_argument("--where", action="append", metavar="COLUMN=VALUE")
    parser.add_argument("--minimizers", nargs="+", help="curves: only these minimizers")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    out = args.out or os.path.join(args.results, "figures")
    check_writable_dir(out, "output directory")
    formats = args.formats
    if args.kind == "kalpha":
        paths = fig_kalpha(args.results, out, args.metric, formats, args.where)
    elif args.kind == "rho":
        paths = fig_rho(args.results, out, args.metric, formats, args.where)
    elif args.kind == "alpha":
        paths = fig_alpha(args.results, out, formats, args.where)
    else:
        paths = fig_curves(args.results, out, formats, args.where, args.minimizers)
    for p in paths:
        print(p)
    return 0


def main(argv=None):
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
