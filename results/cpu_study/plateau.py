"""Did every run of the study reach its plateau? From the collected curves.csv: per run, the train
loss at the last epoch and its relative change over the last W epochs (default 10, the last lr
stage of the study's schedule) and over the W epochs before those; then a Markdown table.

    python results/cpu_study/plateau.py results/cpu_study/curves.csv [--window 10]
"""
import argparse
import re

import pandas as pd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curves")
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    curves = pd.read_csv(args.curves)
    w = args.window
    rows = []
    for name, run in curves.groupby("run_name", sort=False):
        run = run.sort_values("epoch")
        loss = run["train_loss"].to_numpy()
        if len(loss) < 2 * w + 1:
            raise SystemExit(f"error: {name} has {len(loss)} epochs, fewer than 2 x --window + 1")
        rows.append({"setting": re.sub(r"_s\d+$", "", name), "run": name, "epochs": len(loss),
                     "final_train_loss": loss[-1], "final_train_acc": run["train_acc"].iloc[-1],
                     "change_last": (loss[-1] - loss[-1 - w]) / loss[-1 - w],
                     "change_before": (loss[-1 - w] - loss[-1 - 2 * w]) / loss[-1 - 2 * w]})
    frame = pd.DataFrame(rows)
    print(f"| setting | runs | final train loss | final train acc (%) | train-loss change, last {w} epochs "
          f"(max over seeds) | change over the {w} epochs before |")
    print("|---|---|---|---|---|---|")
    for setting, group in frame.groupby("setting", sort=False):
        worst = group["change_last"].abs().idxmax()
        print(f"| {setting} | {len(group)} | {group['final_train_loss'].mean():.3f} ± {group['final_train_loss'].std():.3f} "
              f"| {group['final_train_acc'].mean():.1f} | {100 * frame.loc[worst, 'change_last']:+.2f}% "
              f"| {100 * group['change_before'].mean():+.1f}% (mean) |")


if __name__ == "__main__":
    main()
