"""The positive-control pilot table: every run of every setting tried, and the verdict per setting.

    python results/positive_control/pilot_table.py RUNS_DIR [--out results/positive_control/pilot.md]

RUNS_DIR holds one sweep directory per setting (pc_<setting>, run_pilot.sh). For each run: final train
and test accuracy and wall time; for each setting and SAM rho with >= 3 seeds shared with SGD: the
paired difference SAM - SGD per seed, its mean and standard deviation, and the two criteria of the
positive control (issue 18): (a) every SGD and SAM run ends at >= 95% training accuracy, (b) the mean
paired difference exceeds its standard deviation.
"""
import argparse
import os
import statistics
import sys

from training import records

FIT = 95.0


def read_runs(runs_dir):
    rows = []
    for setting in sorted(os.listdir(runs_dir)):
        sweep_dir = os.path.join(runs_dir, setting)
        if not setting.startswith("pc_") or not os.path.isdir(sweep_dir):
            continue
        for name in sorted(os.listdir(sweep_dir)):
            run_dir = os.path.join(sweep_dir, name)
            try:
                config = records.read_json(os.path.join(run_dir, records.CONFIG_FILE))
                summary = records.read_json(os.path.join(run_dir, records.SUMMARY_FILE))
            except records.RecordError:
                continue
            with open(os.path.join(run_dir, records.METRICS_FILE)) as f:
                last = f.read().strip().splitlines()[-1].split(",")
            columns = records.METRIC_COLUMNS
            hparams = config.get("minimizer_hparams") or {}
            rows.append({"setting": setting[3:], "minimizer": config["minimizer"], "rho": hparams.get("rho"),
                         "seed": config["seed"], "status": summary["status"],
                         "epochs": f"{summary['epochs_completed']}/{summary['epochs']}",
                         "train_acc": float(last[columns.index("train_acc")]),
                         "test_acc": float(last[columns.index("test_acc")]),
                         "minutes": summary["wall_seconds"] / 60})
    return rows


def verdicts(rows):
    out = []
    for setting in sorted({r["setting"] for r in rows}):
        mine = [r for r in rows if r["setting"] == setting and r["status"] == records.STATUS_COMPLETED]
        sgd = {r["seed"]: r for r in mine if r["minimizer"] == "SGD"}
        for rho in sorted({r["rho"] for r in mine if r["minimizer"] == "SAM"}):
            sam = {r["seed"]: r for r in mine if r["minimizer"] == "SAM" and r["rho"] == rho}
            seeds = sorted(set(sgd) & set(sam))
            diffs = [sam[s]["test_acc"] - sgd[s]["test_acc"] for s in seeds]
            fits = all(run["train_acc"] >= FIT for s in seeds for run in (sgd[s], sam[s]))
            mean = statistics.mean(diffs) if diffs else float("nan")
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            passed = len(seeds) >= 3 and fits and mean > sd
            out.append({"setting": setting, "rho": rho, "seeds": len(seeds), "diffs": diffs, "mean": mean,
                        "sd": sd, "fits": fits, "verdict": "passes" if passed else
                        ("fails" if len(seeds) >= 3 or not fits else "screened (1-2 seeds)")})
    return out


def markdown(rows, results):
    lines = ["| setting | minimizer | rho | seed | status | epochs | train acc (%) | test acc (%) | wall (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["setting"], r["minimizer"] != "SGD", r["rho"] or 0, r["seed"])):
        lines.append(f"| {r['setting']} | {r['minimizer']} | {'' if r['rho'] is None else r['rho']} | {r['seed']} | "
                     f"{r['status']} | {r['epochs']} | {r['train_acc']:.2f} | {r['test_acc']:.2f} | {r['minutes']:.1f} |")
    lines += ["", "| setting | SAM rho | seeds | SAM - SGD per seed (points) | mean | sd | all fit (>= 95% train) "
                  "| verdict |", "|---|---|---|---|---|---|---|---|"]
    for v in results:
        per_seed = ", ".join(f"{d:+.2f}" for d in v["diffs"])
        lines.append(f"| {v['setting']} | {v['rho']} | {v['seeds']} | {per_seed} | {v['mean']:+.2f} | "
                     f"{v['sd']:.2f} | {'yes' if v['fits'] else 'no'} | {v['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rows = read_runs(args.runs_dir)
    text = markdown(rows, verdicts(rows))
    print(text, end="")
    if args.out:
        records.atomic_write(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
