"""One markdown table from the noisy-weights and sharpness CSVs: mean ± std over seeds per minimizer setting.

    python -m scripts.reports.analysis_table --noisy results/cpu_study/noisy_weights.csv \
        --sharpness results/cpu_study/sharpness.csv [--out results/cpu_study/analyses.md]

Columns: seeds, clean test accuracy (eta = 0, the run's final test accuracy), test accuracy at each
noise level (mean ± std over seeds and draws), and per sharpness measure the mean ± std over seeds
(loss on the fixed subset, worst-case loss increase per ball and radius, top Hessian eigenvalue,
Hessian trace). Rows in the paper's minimizer order.

With the noisy-weights CSV a second table follows: the accuracy lost to the noise, in points, per seed
against that seed's own clean accuracy (clean minus the mean over draws), then mean ± std over seeds.
It separates robustness from clean accuracy when the minimizers' clean accuracies differ.
Prints the tables; --out also writes them.
"""
import sys

import pandas as pd

from scripts.common import Parser, check_writable_file, minimizer_order, read_whole_csv, run_main, write_atomic
from training.records import UsageError


def cell(values):
    values = pd.Series(values).dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.3g}"
    return f"{values.mean():.3g} ± {values.std():.2g}"


def accuracy_cell(values):
    values = pd.Series(values).dropna()
    if values.empty:
        return ""
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def read(path, need):
    frame = read_whole_csv(path)   # a CSV cut off mid-row is refused, naming the line
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise UsageError(f"{path} lacks the columns {', '.join(missing)}")
    return frame


def build_table(noisy=None, sharp=None):
    frames = [f for f in (noisy, sharp) if f is not None]
    labels = minimizer_order(sorted(set().union(*(set(f["label"]) for f in frames))))
    header, rows = ["minimizer", "seeds"], {label: [] for label in labels}
    for label in labels:
        seeds = set().union(*(set(f[f["label"] == label]["seed"]) for f in frames))
        rows[label].append(str(len(seeds)))
    if noisy is not None:
        for eta in sorted(noisy["eta"].unique()):
            header.append("clean test acc (%)" if eta == 0 else f"acc, noise η={eta:g}")
            for label in labels:
                rows[label].append(accuracy_cell(noisy[(noisy["label"] == label) & (noisy["eta"] == eta)]["test_acc"]))
    if sharp is not None:
        names = {"loss": "subset loss", "top_eigenvalue": "top Hessian eigenvalue", "hessian_trace": "Hessian trace"}
        keys = sharp[sharp["measure"] != "top_eigenvalue_last_change"][["measure", "ball", "radius"]]
        for measure, ball, radius in keys.drop_duplicates().itertuples(index=False):
            part = sharp[(sharp["measure"] == measure) & (sharp["ball"].fillna("") == ("" if pd.isna(ball) else ball))
                         & (sharp["radius"] == radius)]
            header.append(names.get(measure, f"worst-case Δloss {ball} r={radius:g}"))
            for label in labels:
                rows[label].append(cell(part[part["label"] == label]["value"]))
    return markdown(header, labels, rows)


def markdown(header, labels, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([label, *rows[label]]) + " |" for label in labels]
    return "\n".join(lines) + "\n"


def drop_table(noisy):
    """Accuracy lost to each noise level (points): per seed, clean minus the mean over draws; mean ± std over seeds."""
    per_seed = noisy.groupby(["label", "seed", "eta"])["test_acc"].mean().unstack("eta")
    if 0 not in per_seed.columns:
        return ""
    etas = [eta for eta in sorted(per_seed.columns) if eta != 0]
    labels = minimizer_order(sorted(set(noisy["label"])))
    header = ["minimizer", "seeds", *(f"accuracy lost, η={eta:g} (points)" for eta in etas)]
    rows = {}
    for label in labels:
        seeds = per_seed.loc[label]
        rows[label] = [str(len(seeds))] + [accuracy_cell(seeds[0] - seeds[eta]) for eta in etas]
    return markdown(header, labels, rows)


def build_parser():
    parser = Parser(description="Markdown table of the noisy-weights and sharpness CSVs.")
    parser.add_argument("--noisy", help="CSV of python -m scripts.analyses.noisy_weights")
    parser.add_argument("--sharpness", help="CSV of python -m scripts.analyses.sharpness")
    parser.add_argument("--out", help="also write the table to this file")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    if not args.noisy and not args.sharpness:
        raise UsageError("give --noisy and/or --sharpness")
    if args.out:
        check_writable_file(args.out)
    noisy = read(args.noisy, ["label", "seed", "eta", "test_acc"]) if args.noisy else None
    sharp = read(args.sharpness, ["label", "seed", "measure", "ball", "radius", "value"]) if args.sharpness else None
    table = build_table(noisy, sharp)
    drops = drop_table(noisy) if noisy is not None else ""
    if drops:
        table += "\n" + drops
    print(table, end="")
    if args.out:
        write_atomic(args.out, table)
    return 0


def main(argv=None):
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
