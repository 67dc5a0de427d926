"""The continual-learning table: A, F, LA (mean ± std over seeds) per minimizer, Markdown + LaTeX + figure.

    python -m scripts.reports.collect runs/continual_cpu --out results/continual_cpu
    python -m scripts.reports.continual_table results/continual_cpu
    python -m scripts.reports.continual_table results/continual_cpu --paired SAM --paired ASAM

(run from the repository root). Reads <results dir>/grouped.csv and runs.csv (python -m
scripts.reports.collect over run directories of example_continual.py) and writes <results dir>/table_continual.md
and .tex (also printing the Markdown), accuracy_matrices.csv (every completed run's accuracy matrix,
long format, read from the run directories), figures/continual_<benchmark>_<model>.png/.pdf (each
seed's A, F, LA as a dot, mean ± std beside them) and figures/continual_matrices_<benchmark>_<model>
.png/.pdf (the accuracy matrix averaged over seeds, one heatmap per minimizer). Rows: minimizers in the paper's order; columns: average
accuracy A, forgetting F, learning accuracy LA (%, definitions in training/continual.py); best mean per
column in bold (highest A and LA, lowest F). Each cell "mean ± std (n completed seeds)"; diverged,
failed and running runs are counted, never averaged.

--paired BASE (repeatable) adds a table of per-seed differences (minimizer - BASE) for the
minimizers of BASE's family (e.g. Lookbehind_SAM, Lookahead_SAM, Multistep_SAM - SAM): with the
default --task_seed = --seed, the same seed gives every minimizer the same class split, task
order and initialisation, so the paired difference removes most of the spread between seeds.
Errors the user can fix (missing file, no continual runs, several settings per minimizer) print
one line and exit 2.
"""
import math
import os
import sys

import pandas as pd

from scripts.common import (MAX_DIGITS, Parser, decimal_digits, display_minimizer, display_model, minimizer_order,
                            read_whole_csv, run_main, write_atomic)
from scripts.reports.tables import fnum, latex_escape, notes
from training.records import (ACCURACY_MATRIX_FILE, CONTINUAL_METRICS, STATUS_COMPLETED, RecordError, UsageError,
                              read_accuracy_matrix)

LABELS = {"average_accuracy": "A (avg. accuracy)", "forgetting": "F (forgetting)",
          "learning_accuracy": "LA (learning accuracy)"}
SHORT = {"average_accuracy": "A", "forgetting": "F", "learning_accuracy": "LA"}
LOWER_IS_BETTER = {"forgetting"}


def read_results(results_dir, where_benchmark=None):
    grouped_path, runs_path = (os.path.join(results_dir, name) for name in ("grouped.csv", "runs.csv"))
    for path in (grouped_path, runs_path):
        if not os.path.isfile(path):
            raise UsageError(f"{path} not found (run python -m scripts.reports.collect on the run directories first)")
    grouped, runs = read_whole_csv(grouped_path), read_whole_csv(runs_path)
    need = [f"{metric}_{stat}" for metric in CONTINUAL_METRICS for stat in ("mean", "std", "n")]
    if any(column not in grouped.columns for column in need) or "benchmark" not in grouped.columns:
        raise UsageError(f"{grouped_path} has no A/F/LA columns: not collected from example_continual.py runs")
    grouped = grouped.dropna(subset=["minimizer", "benchmark"])
    runs = runs.dropna(subset=["minimizer"])
    if grouped.duplicated(["benchmark", "model", "minimizer"]).any():
        raise UsageError(f"several settings per benchmark/model/minimizer in {grouped_path}; collect one "
                         f"setting per results directory")
    return grouped, runs


def cells(grouped):
    """{(benchmark, model): {minimizer: {metric: (mean, std, n), 'notes': [...]}}} with bold marks."""
    table = {}
    for _, row in grouped.iterrows():
        cell = {metric: (float(row[f"{metric}_mean"]), float(row[f"{metric}_std"]), int(row[f"{metric}_n"]))
                for metric in CONTINUAL_METRICS}
        cell["notes"] = notes({"n_diverged": int(row["n_diverged"]), "n_failed": int(row["n_failed"]),
                               "n_running": int(row.get("n_running", 0) or 0)})
        table.setdefault((row["benchmark"], row["model"]), {})[row["minimizer"]] = cell
    return table


def best_means(row_cells, digits):
    best = {}
    for metric in CONTINUAL_METRICS:
        means = [round(c[metric][0], digits) for c in row_cells.values() if not math.isnan(c[metric][0])]
        if means:
            best[metric] = min(means) if metric in LOWER_IS_BETTER else max(means)
    return best


def paired_differences(runs, base):
    """{minimizer: {metric: (mean, std, n)}} of per-seed (minimizer - base) over the seeds both completed,
    for the minimizers whose name ends with _<base> (Lookbehind_SAM, Lookahead_SAM, ... for SAM)."""
    done = runs[runs["status"] == STATUS_COMPLETED]
    base_runs = done[done["minimizer"] == base].set_index("seed")
    out = {}
    for minimizer in minimizer_order(sorted(done["minimizer"].unique())):
        if not minimizer.endswith(f"_{base}"):
            continue
        other = done[done["minimizer"] == minimizer].set_index("seed")
        seeds = sorted(set(other.index) & set(base_runs.index))
        if not seeds:
            continue
        out[minimizer] = {}
        for metric in CONTINUAL_METRICS:
            diffs = [float(other.loc[s, metric]) - float(base_runs.loc[s, metric]) for s in seeds]
            mean = sum(diffs) / len(diffs)
            std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else float("nan")
            out[minimizer][metric] = (mean, std, len(diffs))
    return out


def caption(grouped):
    settings = []
    for column, text in (("num_tasks", "{} tasks"), ("classes_per_task", "{} classes each"),
                         ("epochs_per_task", "{} epoch(s) per task"), ("train_per_task", "{} training images per task"),
                         ("test_per_task", "{} test images per task")):
        if column in grouped.columns and grouped[column].notna().any():
            values = sorted({int(v) for v in grouped[column].dropna()})
            settings.append(text.format("/".join(str(v) for v in values)))
    heads = "single-head" if "single_head" in grouped.columns and grouped["single_head"].astype(str).eq("True").all() \
        else "multi-head"
    return (f"Continual learning ({heads}; {', '.join(settings)}): average accuracy A, forgetting F and learning "
            f"accuracy LA (%), mean ± std (n completed seeds); best mean per column in bold (lowest F).")


def markdown(table, grouped, digits, paired):
    lines = ["<!-- generated by scripts/reports/continual_table.py from grouped.csv and runs.csv; do not edit -->", "",
             caption(grouped), ""]
    for (benchmark, model), row_cells in sorted(table.items()):
        best = best_means(row_cells, digits)
        lines += [f"**{benchmark}, {display_model(model)}**", "",
                  "| Minimizer | " + " | ".join(LABELS[m] for m in CONTINUAL_METRICS) + " |",
                  "|---|" + "---|" * len(CONTINUAL_METRICS)]
        for minimizer in minimizer_order(list(row_cells)):
            cell = row_cells[minimizer]
            texts = []
            for metric in CONTINUAL_METRICS:
                mean, std, n = cell[metric]
                text = f"{fnum(mean, digits)} ± {fnum(std, digits)}"
                if metric in best and not math.isnan(mean) and round(mean, digits) == best[metric]:
                    text = f"**{text}**"
                texts.append(f"{text} ({n})")
            extra = f" [{', '.join(cell['notes'])}]" if cell["notes"] else ""
            lines.append(f"| {display_minimizer(minimizer)}{extra} | " + " | ".join(texts) + " |")
        lines.append("")
    for base, differences in paired.items():
        if not differences:
            continue
        lines += [f"Paired differences to {display_minimizer(base)} (same seed = same class split, task order and "
                  f"initialisation): mean ± std over seeds (n) of minimizer − {display_minimizer(base)}, in points.", "",
                  "| Minimizer | " + " | ".join(f"Δ{SHORT[m]}" for m in CONTINUAL_METRICS) + " |",
                  "|---|" + "---|" * len(CONTINUAL_METRICS)]
        for minimizer, values in differences.items():
            lines.append(f"| {display_minimizer(minimizer)} − {display_minimizer(base)} | " + " | ".join(
                f"{values[m][0]:+.{digits}f} ± {fnum(values[m][1], digits)} ({values[m][2]})" for m in CONTINUAL_METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def latex(table, grouped, digits):
    lines = ["% generated by scripts/reports/continual_table.py; needs \\usepackage{booktabs}", r"\begin{table}[t]",
             r"\centering", r"\begin{tabular}{lccc}", r"\toprule"]
    for (benchmark, model), row_cells in sorted(table.items()):
        best = best_means(row_cells, digits)
        lines += [rf"\multicolumn{{4}}{{l}}{{{latex_escape(benchmark)}, {latex_escape(display_model(model))}}} \\",
                  r"Minimizer & A & F & LA \\", r"\midrule"]
        for minimizer in minimizer_order(list(row_cells)):
            cell = row_cells[minimizer]
            texts = []
            for metric in CONTINUAL_METRICS:
                mean, std, n = cell[metric]
                value = fnum(mean, digits)
                if metric in best and not math.isnan(mean) and round(mean, digits) == best[metric]:
                    value = rf"\textbf{{{value}}}"
                texts.append(rf"{value} $\pm$ {fnum(std, digits).replace('–', '--')} {{\tiny ({n})}}")
            lines.append(latex_escape(display_minimizer(minimizer)) + " & " + " & ".join(texts) + r" \\")
        lines.append(r"\midrule")
    lines[-1] = r"\bottomrule"
    cap = latex_escape(caption(grouped)).replace("±", r"$\pm$")
    lines += [r"\end{tabular}", r"\caption{" + cap + "}", r"\label{tab:continual}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def figure(runs, grouped, out_dir):
    """Per benchmark/model: one panel per metric, each seed a dot, mean ± std beside them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    done = runs[runs["status"] == STATUS_COMPLETED]
    for (benchmark, model), part in done.groupby(["benchmark", "model"]):
        order = minimizer_order(sorted(part["minimizer"].unique()))
        fig, axes = plt.subplots(1, len(CONTINUAL_METRICS), figsize=(4.2 * len(CONTINUAL_METRICS), 4))
        for ax, metric in zip(axes, CONTINUAL_METRICS):
            for x, minimizer in enumerate(order):
                values = part.loc[part["minimizer"] == minimizer, metric].astype(float)
                color = "tab:red" if minimizer.startswith("Lookbehind") else "tab:blue"
                # a marker, not a bar: the axis does not start at 0
                ax.errorbar(x + 0.15, values.mean(), yerr=values.std() if len(values) > 1 else 0, color=color,
                            fmt="s", markersize=6, capsize=4)
                ax.scatter([x - 0.1] * len(values), values, color=color, s=12, alpha=0.6, zorder=3)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([display_minimizer(m) for m in order], rotation=40, ha="right", fontsize=8)
            ax.set_ylabel(f"{LABELS[metric]} (%)")
            ax.set_title(LABELS[metric] + (" - lower is better" if metric in LOWER_IS_BETTER else ""), fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(f"{benchmark}, {display_model(model)}: small dots = seeds, square = mean ± std "
                     f"(red: Lookbehind)", fontsize=9)
        fig.tight_layout()
        for extension in ("png", "pdf"):
            path = os.path.join(out_dir, "figures", f"continual_{benchmark}_{model}.{extension}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fig.savefig(path, dpi=110)
            paths.append(path)
        plt.close(fig)
    return paths


def gather_matrices(runs):
    """Long table (benchmark, model, minimizer, seed, after_task, task, accuracy) of every completed
    run's accuracy_matrix.csv (read from its run_dir, where that still exists)."""
    rows = []
    for _, run in runs[runs["status"] == STATUS_COMPLETED].iterrows():
        path = os.path.join(str(run["run_dir"]), ACCURACY_MATRIX_FILE)
        if not os.path.isfile(path):
            continue
        try:
            matrix = read_accuracy_matrix(path)
        except RecordError as exc:
            raise UsageError(str(exc)) from None
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                rows.append({"benchmark": run["benchmark"], "model": run["model"], "minimizer": run["minimizer"],
                             "seed": int(run["seed"]), "after_task": i, "task": j, "accuracy": value})
    return pd.DataFrame(rows, columns=["benchmark", "model", "minimizer", "seed", "after_task", "task", "accuracy"])


def matrix_figure(matrices, out_dir):
    """Per benchmark/model: the accuracy matrix R averaged over seeds, one heatmap per minimizer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for (benchmark, model), part in matrices.groupby(["benchmark", "model"]):
        order = minimizer_order(sorted(part["minimizer"].unique()))
        size = int(part["task"].max()) + 1
        fig, axes = plt.subplots(1, len(order), figsize=(2.6 * len(order), 2.9), squeeze=False)
        for ax, minimizer in zip(axes[0], order):
            mean = part[part["minimizer"] == minimizer].groupby(["after_task", "task"])["accuracy"].mean()
            grid = np.full((size, size), np.nan)
            for (i, j), value in mean.items():
                grid[i, j] = value
            image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
            if size <= 10:
                for i in range(size):
                    for j in range(size):
                        if not np.isnan(grid[i, j]):
                            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                                    color="black" if grid[i, j] > 60 else "white")
            seeds = part.loc[part["minimizer"] == minimizer, "seed"].nunique()
            ax.set_title(f"{display_minimizer(minimizer)} ({seeds} seeds)", fontsize=8)
            ax.set_xlabel("tested on task j", fontsize=7)
            ax.set_ylabel("after task i", fontsize=7)
            ax.tick_params(labelsize=6)
        fig.colorbar(image, ax=list(axes[0]), fraction=0.01, pad=0.01, label="accuracy (%)")
        fig.suptitle(f"{benchmark}, {display_model(model)}: accuracy matrix R[i, j], mean over seeds", fontsize=9)
        for extension in ("png", "pdf"):
            path = os.path.join(out_dir, "figures", f"continual_matrices_{benchmark}_{model}.{extension}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fig.savefig(path, dpi=110, bbox_inches="tight")
            paths.append(path)
        plt.close(fig)
    return paths


def build_parser():
    parser = Parser(description="Continual-learning table (A, F, LA) from collected runs.")
    parser.add_argument("results", help="results directory holding grouped.csv and runs.csv (from scripts.reports.collect)")
    parser.add_argument("--paired", action="append", default=[], metavar="BASE",
                        help="add per-seed differences to BASE for its family (e.g. SAM, ASAM; repeatable)")
    parser.add_argument("--digits", type=decimal_digits, default=2,
                        help=f"decimals of the numbers, 0 to {MAX_DIGITS} (default %(default)s)")
    parser.add_argument("--no-figure", dest="figure", action="store_false", help="tables only")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    grouped, runs = read_results(args.results)
    table = cells(grouped)
    paired = {base: paired_differences(runs, base) for base in args.paired}
    matrices = gather_matrices(runs)
    md = markdown(table, grouped, args.digits, paired)
    write_atomic(os.path.join(args.results, "table_continual.md"), md)
    write_atomic(os.path.join(args.results, "table_continual.tex"), latex(table, grouped, args.digits))
    print(md)
    written = []
    if len(matrices):
        write_atomic(os.path.join(args.results, "accuracy_matrices.csv"), matrices.to_csv(index=False))
        written.append(os.path.join(args.results, "accuracy_matrices.csv"))
    if args.figure:
        written += figure(runs, grouped, args.results) + matrix_figure(matrices, args.results)
    print(f"wrote {os.path.join(args.results, 'table_continual.md')} and .tex" +
          (f", {', '.join(written)}" if written else ""))
    return 0


def main(argv=None):
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
