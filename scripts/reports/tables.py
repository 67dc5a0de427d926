"""The generalization table (the paper's Table 1) in Markdown and LaTeX, from a grouped.csv (< 1 s).

    python -m scripts.reports.tables results/generalization
    python -m scripts.reports.tables results/generalization --paper PAPER.csv --metric final

(run from the repository root: the scripts share scripts/common.py).
Reads <results dir>/grouped.csv (written by python -m scripts.reports.collect) and writes <results dir>/table_<metric>.md
and table_<metric>.tex (also printing the Markdown).  Rows: dataset / model; columns: minimizers
(paper order: SGD, SAM, ASAM, Multistep, Lookahead, Lookbehind; others after).  Each cell is
"mean ± std (n)" of the test accuracy over the completed seeds (std: sample std; "–" when n = 1);
the best mean of each row is in bold (all tied cells after rounding); runs that diverged, failed or
are still running are counted in the cell ("1 div.", "1 failed", "1 running"), never averaged in.  --metric best (default, what the original code
prints: the best test accuracy over epochs) or final (test accuracy after the last epoch).
--digits (0 to 10, default 2): decimals of every number.

--paper CSV (columns dataset,model,minimizer,acc[,std]; names matched leniently: CIFAR-10 = CIFAR10,
WRN-28-2 = wrn28_2, Lookbehind-SAM = Lookbehind_SAM) puts the paper's number and our difference
(ours − paper) beside each cell; paper rows matching no result are listed on stderr.  It is the
user's to fill in from the paper; none is shipped.  If the grouped CSV holds several settings of
one dataset/model/minimizer (e.g. a rho sweep), select one with --where rho=0.05 (repeatable).
Errors the user can fix (missing file or columns, ambiguous cells) print one line and exit 2.
"""
import math
import os
import re
import sys

import pandas as pd

from scripts.common import (MAX_DIGITS, Parser, apply_where, check_writable_dir, check_writable_file, decimal_digits,
                            display_dataset, display_minimizer, display_model, epochs_text, minimizer_order, read_whole_csv,
                            run_main, write_atomic)
from training.records import UsageError


def read_grouped(path, metric, where):
    if not os.path.isfile(path):
        raise UsageError(f"{path} not found (run python -m scripts.reports.collect first)")
    df = read_whole_csv(path)
    need = ["dataset", "model", "minimizer", f"{metric}_test_acc_mean", f"{metric}_test_acc_std",
            f"{metric}_test_acc_n", "n_runs", "n_diverged", "n_failed"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UsageError(f"{path} lacks columns {', '.join(missing)} (is it a grouped.csv from collect.py?)")
    df = df.dropna(subset=["dataset", "model", "minimizer"])  # e.g. unreadable run dirs
    df = apply_where(df, where, os.path.basename(path))
    if df.empty:
        raise UsageError(f"no rows in {path}")  # (apply_where reports an empty --where selection)
    dup = df.duplicated(["dataset", "model", "minimizer"], keep=False)
    if dup.any():
        varying = [c for c in df.columns if c not in need and not c.endswith(("_mean", "_std", "_n"))
                   and c not in ("seeds", "n_completed")
                   and df[dup].groupby(["dataset", "model", "minimizer"])[c].nunique(dropna=False).max() > 1]
        raise UsageError(f"several settings per dataset/model/minimizer in {path} (they differ in "
                         f"{', '.join(varying) or 'unknown columns'}); pick one with --where COLUMN=VALUE")
    return df


def read_paper(path):
    if not os.path.isfile(path):
        raise UsageError(f"paper reference file {path} not found")
    ref = pd.read_csv(path, comment="#")
    missing = [c for c in ("dataset", "model", "minimizer", "acc") if c not in ref.columns]
    if missing:
        raise UsageError(f"{path} lacks columns {', '.join(missing)} (need dataset,model,minimizer,acc[,std])")
    out = {}
    for _, r in ref.iterrows():
        std = r["std"] if "std" in ref.columns else float("nan")
        try:
            out[paper_key(r["dataset"], r["model"], r["minimizer"])] = (float(r["acc"]), float(std))
        except (TypeError, ValueError):
            raise UsageError(f"{path}: acc/std must be numbers (row {dict(r)})") from None
    return out


def paper_key(dataset, model, minimizer):
    """Lenient matching: 'CIFAR-10'/'CIFAR10', 'WRN-28-2'/'wrn28_2', 'Lookbehind-SAM'/'Lookbehind_SAM'."""
    return tuple(re.sub(r"[^a-z0-9]", "", str(x).lower()) for x in (dataset, model, minimizer))


def fnum(x, digits):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def build_cells(df, metric, digits, paper):
    """{(dataset, model): {minimizer: cell dict}} and the ordered row keys and minimizers."""
    minimizers = minimizer_order(sorted(df["minimizer"].astype(str).unique()))
    rows = {}
    for _, r in df.iterrows():
        key = (str(r["dataset"]), str(r["model"]))
        mean = float(r[f"{metric}_test_acc_mean"])
        cell = {"mean": mean, "std": float(r[f"{metric}_test_acc_std"]),
                "n": int(r[f"{metric}_test_acc_n"]), "n_runs": int(r["n_runs"]),
                "n_diverged": int(r["n_diverged"]), "n_failed": int(r["n_failed"]),
                "n_running": int(r["n_running"]) if "n_running" in r and not pd.isna(r["n_running"]) else 0,
                "bold": False,
                "paper": paper.get(paper_key(key[0], key[1], r["minimizer"])) if paper else None}
        rows.setdefault(key, {})[str(r["minimizer"])] = cell
    for cells in rows.values():
        means = [round(c["mean"], digits) for c in cells.values() if not math.isnan(c["mean"])]
        if means:
            best = max(means)
            for c in cells.values():
                c["bold"] = not math.isnan(c["mean"]) and round(c["mean"], digits) == best
    order = sorted(rows, key=lambda k: (k[0], k[1]))
    return rows, order, minimizers


def notes(cell):
    parts = []
    if cell["n_diverged"]:
        parts.append(f"{cell['n_diverged']} div.")
    if cell["n_failed"]:
        parts.append(f"{cell['n_failed']} failed")
    if cell["n_running"]:
        parts.append(f"{cell['n_running']} running")
    return parts


def cell_markdown(cell, digits):
    if cell is None:
        return ""
    if math.isnan(cell["mean"]):
        text = "–"
    else:
        text = f"{fnum(cell['mean'], digits)} ± {fnum(cell['std'], digits)}"
        if cell["bold"]:
            text = f"**{text}**"
    text += f" ({cell['n']})"
    extra = notes(cell)
    if extra:
        text += " [" + ", ".join(extra) + "]"
    if cell["paper"] is not None:
        p_acc, p_std = cell["paper"]
        diff = cell["mean"] - p_acc
        p_text = fnum(p_acc, digits) + ("" if math.isnan(p_std) else f" ± {fnum(p_std, digits)}")
        text += f" · paper {p_text}, Δ {'–' if math.isnan(diff) else f'{diff:+.{digits}f}'}"
    return text


def latex_escape(s):
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def cell_latex(cell, digits):
    if cell is None:
        return ""
    if math.isnan(cell["mean"]):
        text = "--"
    else:
        mean = fnum(cell["mean"], digits)
        text = (rf"\textbf{{{mean}}}" if cell["bold"] else mean) + rf" $\pm$ {fnum(cell['std'], digits).replace('–', '--')}"
    text += rf" {{\tiny ({cell['n']})}}"
    extra = notes(cell)
    if extra:
        text += r" {\tiny [" + ", ".join(extra) + "]}"
    if cell["paper"] is not None:
        p_acc, _ = cell["paper"]
        diff = cell["mean"] - p_acc
        text += rf" / {fnum(p_acc, digits)} (${'--' if math.isnan(diff) else f'{diff:+.{digits}f}'}$)"
    return text


def caption(metric, df, paper, latex=False):
    what = "best test accuracy over epochs" if metric == "best" else "test accuracy after the last epoch"
    epochs = epochs_text(df)
    epochs = f", {epochs}" if epochs else ""
    text = (f"Generalization: {what} (%){epochs}; mean ± std (n completed seeds); best mean per row in bold; "
            f"diverged, failed and running runs are counted, not averaged.")
    if paper:
        text += (" Each cell: ours / paper (Δ = ours − paper)." if latex
                 else " 'paper' = reported value, Δ = ours − paper.")
    return text


def markdown_table(rows, order, minimizers, metric, digits, df, paper):
    head = "| Dataset | Model | " + " | ".join(display_minimizer(m) for m in minimizers) + " |"
    sep = "|---|---|" + "|".join("---" for _ in minimizers) + "|"
    lines = ["<!-- generated by scripts/reports/tables.py from grouped.csv; do not edit -->",
             "", caption(metric, df, paper), "", head, sep]
    for key in order:
        cells = [cell_markdown(rows[key].get(m), digits) for m in minimizers]
        lines.append(f"| {display_dataset(key[0])} | {display_model(key[1])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latex_table(rows, order, minimizers, metric, digits, df, paper):
    cols = "ll" + "c" * len(minimizers)
    lines = ["% generated by scripts/reports/tables.py from grouped.csv; needs \\usepackage{booktabs,graphicx}",
             r"\begin{table*}[t]", r"\centering", r"\resizebox{\textwidth}{!}{%",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Dataset & Model & " + " & ".join(latex_escape(display_minimizer(m)) for m in minimizers)
             + r" \\", r"\midrule"]
    for key in order:
        cells = [cell_latex(rows[key].get(m), digits) for m in minimizers]
        lines.append(f"{latex_escape(display_dataset(key[0]))} & {latex_escape(display_model(key[1]))} & "
                     + " & ".join(cells) + r" \\")
    cap = latex_escape(caption(metric, df, paper, latex=True))
    for a, b in (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("−", "$-$")):
        cap = cap.replace(a, b)
    lines += [r"\bottomrule", r"\end{tabular}}", r"\caption{" + cap + "}",
              r"\label{tab:generalization}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def make_tables(grouped_csv, metric="best", digits=2, paper_csv=None, where=None):
    df = read_grouped(grouped_csv, metric, where)
    paper = read_paper(paper_csv) if paper_csv else None
    rows, order, minimizers = build_cells(df, metric, digits, paper)
    if paper:
        ours = {paper_key(d, m, mn) for (d, m), cells in rows.items() for mn in cells}
        unmatched = sorted(set(paper) - ours)
        if unmatched:
            print(f"note: {len(unmatched)} paper row(s) match no result here: "
                  + ", ".join("/".join(k) for k in unmatched), file=sys.stderr)
    return (markdown_table(rows, order, minimizers, metric, digits, df, paper),
            latex_table(rows, order, minimizers, metric, digits, df, paper))


def build_parser():
    parser = Parser(
        description="Generalization table (Markdown + LaTeX) from a grouped.csv; takes under a second.",
        epilog="Example (from the repository root): python -m scripts.reports.tables results/generalization "
               "--paper PAPER.csv")
    parser.add_argument("results", help="results directory holding grouped.csv (or the grouped.csv itself)")
    parser.add_argument("--metric", choices=["best", "final"], default="best",
                        help="best test accuracy over epochs (default, as the original code) or final")
    parser.add_argument("--paper", help="CSV with dataset,model,minimizer,acc[,std]: the paper's numbers, as you "
                        "transcribe them (none ship with the repository)")
    parser.add_argument("--where", action="append", metavar="COLUMN=VALUE",
                        help="keep only grouped rows with this setting (repeatable)")
    parser.add_argument("--digits", type=decimal_digits, default=2,
                        help=f"decimals of the numbers, 0 to {MAX_DIGITS} (default %(default)s)")
    parser.add_argument("--out", help="output directory (default: the results directory)")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    grouped = args.results if args.results.endswith(".csv") else os.path.join(args.results, "grouped.csv")
    out_dir = args.out or os.path.dirname(os.path.abspath(grouped))
    check_writable_dir(out_dir, "output directory")   # before any work: an unusable one is found at once
    for extension in ("md", "tex"):
        check_writable_file(os.path.join(out_dir, f"table_{args.metric}.{extension}"), "output")
    md, tex = make_tables(grouped, args.metric, args.digits, args.paper, args.where)
    write_atomic(os.path.join(out_dir, f"table_{args.metric}.md"), md)
    write_atomic(os.path.join(out_dir, f"table_{args.metric}.tex"), tex)
    print(md)
    print(f"wrote {os.path.join(out_dir, f'table_{args.metric}.md')} and .tex")
    return 0


def main(argv=None):
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
