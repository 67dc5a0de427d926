#!/usr/bin/env bash
# The comparison's paired statistics (final test accuracy; every seed that has both runs of a pair):
#   bash results/comparison_cpu/report.sh SETTING
set -eu
dir="results/comparison_cpu/comparison_cpu_$1"
LB=Lookbehind_SAM_rho0.05_k2_alpha-1
python -m scripts.reports.paired "$dir/runs.csv" --out "$dir/paired_accuracy.md" \
    --pair SAM_rho0.05:SGD --pair ASAM_rho0.5:SGD \
    --pair "$LB:SAM_rho0.05" --pair Lookbehind_ASAM_rho0.5_k2_alpha-1:ASAM_rho0.5 \
    --pair "$LB:Multistep_SAM_rho0.05_k2" --pair "$LB:Lookahead_SAM_rho0.05_k5_alpha0.5" \
    --pair Lookbehind_SAM_rho0.05_k2_alpha0.5:SAM_rho0.05
for metric in final_train_acc; do   # the control's fit criterion, per run
    python -m scripts.reports.paired "$dir/runs.csv" --metric "$metric" --out "$dir/paired_$metric.md" \
        --pair SAM_rho0.05:SGD --pair "$LB:SAM_rho0.05"
done
# Per setting: final test and training accuracy, mean +- std over the completed seeds (grouped.csv)
python - "$dir/grouped.csv" "$dir/summary.md" <<'PY'
import sys
import pandas as pd
from scripts.common import write_atomic
grouped = pd.read_csv(sys.argv[1])
grouped = grouped[grouped["dataset"].notna()].sort_values("final_test_acc_mean", ascending=False)
lines = ["| setting | seeds | final test acc (%) | final train acc (%) | wall (s, mean) |", "|---|---|---|---|---|"]
for _, row in grouped.iterrows():
    name = "_".join(str(part) for part in (row["minimizer"],
                    *(f"{key}{row[key]:g}" for key in ("rho", "k", "alpha") if pd.notna(row[key]))))
    lines.append(f"| {name} | {row['seeds']} | {row['final_test_acc_mean']:.2f} ± {row['final_test_acc_std']:.2f} | "
                 f"{row['final_train_acc_mean']:.2f} ± {row['final_train_acc_std']:.2f} | {row['wall_seconds_mean']:.0f} |")
write_atomic(sys.argv[2], "\n".join(lines) + "\n")
print("\n".join(lines))
PY
