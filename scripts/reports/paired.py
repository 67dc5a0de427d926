"""Paired comparisons over seeds: per-seed differences, their mean, a 95% t-interval, and how many seeds favour A.

    python -m scripts.reports.paired results/STUDY/runs.csv \
        --pair Lookbehind_SAM_rho0.05_k2_alpha-1:SAM_rho0.05 --pair Lookbehind_ASAM_rho0.5_k2_alpha-1:ASAM_rho0.5
    python -m scripts.reports.paired results/STUDY/noisy_weights.csv --pair Lookbehind-SAM:SAM
    python -m scripts.reports.paired results/STUDY/sharpness.csv --pair Lookbehind-SAM:SAM --lower-is-better
    python -m scripts.reports.paired results/STUDY/runs.csv --metric forgetting --lower-is-better --pair ...

A study runs every setting at the same seeds (one seed = one initialisation and data order), so the
difference A - B at each seed removes the spread the seeds share. Per pair and metric the table gives
every seed's difference, their mean, the 95% confidence interval of the mean difference from Student's t
(mean ± t(0.975, n-1) · sd / sqrt(n); needs n >= 2) and how many seeds favour A (A higher, or lower with
--lower-is-better; ties count for neither).

Inputs (recognised by their columns):
  runs.csv (scripts.reports.collect)   settings named by their run name without dataset, model and seed
                                       (e.g. SAM_rho0.05, Lookbehind_SAM_rho0.05_k2_alpha-1); --metric is
                                       any numeric column (default final_test_acc); completed runs only
  noisy_weights.csv (scripts.analyses.noisy_weights)  settings by label; one metric per noise level:
                                       the mean test accuracy over the draws at each eta
  sharpness.csv (scripts.analyses.sharpness)  settings by label; one metric per measure (and ball, radius)
A pattern with * or ? may stand for a setting's name when it matches exactly one.
"""
import fnmatch
import math
import os
import sys

import pandas as pd

from scripts.common import Parser, check_writable_file, read_whole_csv, run_main, write_atomic
from training import records
from training.records import UsageError

# Two-sided 95% quantiles of Student's t, t(0.975, df) for df = 1..30 (standard table values; the test
# checks them against scipy when it is installed); beyond 30 the normal quantile's 1.96 is within 2%.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t975(df):
    return T975[df - 1] if df <= len(T975) else 1.96


def summary(differences, lower_is_better=False):
    """(mean, half-width of the 95% t-interval, seeds favouring A) of a list of paired differences A - B."""
    n = len(differences)
    mean = sum(differences) / n
    if n > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
    else:
        half = float("nan")
    favour = sum(1 for d in differences if (d < 0 if lower_is_better else d > 0))
    return mean, half, favour


def setting_table(path, metric):
    """{metric name: DataFrame indexed by (setting, seed) with one 'value' column} from one of the inputs."""
    frame = read_whole_csv(path)
    columns = set(frame.columns)
    if {"run_name", "status", "seed"} <= columns:   # collect's runs.csv
        frame = frame[frame["status"] == records.STATUS_COMPLETED].copy()
        metric = metric or "final_test_acc"
        if metric not in columns:
            raise UsageError(f"{path} has no column {metric!r}")
        # a run's name starts with its dataset (a continual run's: its benchmark) and model
        first = frame["benchmark"].where(frame["benchmark"].notna(), frame["dataset"]) if "benchmark" in columns \
            else frame["dataset"]
        prefix = first.astype(str) + "_" + frame["model"].astype(str) + "_"
        frame["setting"] = [name[len(p):].rsplit("_s", 1)[0] if name.startswith(p) else name.rsplit("_s", 1)[0]
                            for name, p in zip(frame["run_name"].astype(str), prefix)]
        frame["value"] = pd.to_numeric(frame[metric], errors="coerce")
        return {metric: frame.set_index(["setting", "seed"])[["value"]]}
    if {"label", "seed", "eta", "test_acc"} <= columns:   # noisy_weights.csv
        means = frame.groupby(["label", "seed", "eta"])["test_acc"].mean().reset_index()
        return {f"test acc at eta {eta:g}": part.rename(columns={"label": "setting", "test_acc": "value"})
                .set_index(["setting", "seed"])[["value"]] for eta, part in means.groupby("eta")}
    if {"label", "seed", "measure", "value"} <= columns:   # sharpness.csv
        frame["name"] = [" ".join(str(x) for x in (m, b, f"r={r:g}" if pd.notna(r) and float(r) else "")
                                  if str(x) and str(x) != "nan").strip()
                         for m, b, r in zip(frame["measure"], frame["ball"], frame["radius"])]
        return {name: part.rename(columns={"label": "setting"}).groupby(["setting", "seed"])[["value"]].mean()
                for name, part in frame.groupby("name")}
    raise UsageError(f"{path}: not a runs.csv, noisy_weights.csv or sharpness.csv (columns: {', '.join(frame.columns)})")


def resolve(pattern, settings):
    matches = [s for s in settings if fnmatch.fnmatchcase(s, pattern)]
    if len(matches) != 1:
        found = "no setting" if not matches else f"{len(matches)} settings ({', '.join(matches)})"
        raise UsageError(f"--pair: {pattern!r} matches {found}; the settings are: {', '.join(sorted(settings))}")
    return matches[0]


def pair_rows(tables, pairs, lower_is_better):
    rows = []
    for metric, table in tables.items():
        settings = sorted(set(table.index.get_level_values(0)))
        for spec in pairs:
            a_pattern, sep, b_pattern = spec.partition(":")
            if not sep:
                raise UsageError(f"--pair {spec!r}: expected A:B")
            a, b = resolve(a_pattern, settings), resolve(b_pattern, settings)
            a_values, b_values = table.loc[a]["value"].dropna(), table.loc[b]["value"].dropna()
            seeds = sorted(set(a_values.index) & set(b_values.index))
            if not seeds:
                raise UsageError(f"--pair {spec}: {a} and {b} share no seed")
            diffs = [float(a_values[s] - b_values[s]) for s in seeds]
            mean, half, favour = summary(diffs, lower_is_better)
            rows.append({"metric": metric, "a": a, "b": b, "seeds": seeds, "diffs": diffs, "mean": mean,
                         "half": half, "favour": favour})
    return rows


def markdown(rows, lower_is_better, digits=2):
    better = "lower" if lower_is_better else "higher"
    lines = [f"Paired differences A − B over seeds (the same seed = the same initialisation and data order); "
             f"95% CI = mean ± t(0.975, n−1)·sd/√n; 'favour A' counts the seeds where A is {better}.", "",
             "| metric | A | B | A − B per seed | mean | 95% CI | favour A |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"s{s}: {d:+.{digits}f}" for s, d in zip(r["seeds"], r["diffs"]))
        ci = "—" if math.isnan(r["half"]) else f"[{r['mean'] - r['half']:+.{digits}f}, {r['mean'] + r['half']:+.{digits}f}]"
        lines.append(f"| {r['metric']} | {r['a']} | {r['b']} | {per_seed} | {r['mean']:+.{digits}f} | {ci} | "
                     f"{r['favour']}/{len(r['seeds'])} |")
    return "\n".join(lines) + "\n"


def build_parser():
    parser = Parser(description="Paired per-seed differences with 95% t-intervals (runs, noisy-weights or "
                                "sharpness CSVs).")
    parser.add_argument("csv", help="runs.csv, noisy_weights.csv or sharpness.csv")
    parser.add_argument("--pair", action="append", required=True, metavar="A:B",
                        help="the settings compared, A − B (repeatable; * and ? patterns allowed)")
    parser.add_argument("--metric", help="runs.csv column (default final_test_acc)")
    parser.add_argument("--lower-is-better", action="store_true", help="A is favoured where it is lower "
                                                                       "(forgetting, sharpness)")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    return parser


def run(argv):
    args = build_parser().parse_args(argv)
    if args.out:
        check_writable_file(args.out)
    if not os.path.isfile(args.csv):
        raise UsageError(f"{args.csv}: no such file")
    text = markdown(pair_rows(setting_table(args.csv, args.metric), args.pair, args.lower_is_better),
                    args.lower_is_better)
    print(text, end="")
    if args.out:
        write_atomic(args.out, text)
    return 0


def main(argv=None):
    return run_main(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
