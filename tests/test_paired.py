"""scripts/reports/paired.py: paired differences, the t-interval against a hand computation and scipy."""
import math

import pandas as pd
import pytest

from scripts.reports import paired
from training import records


def runs_csv(path, values):
    """A collect-style runs.csv: values = {setting run-name part: {seed: final_test_acc}}."""
    rows = []
    for setting, by_seed in values.items():
        for seed, acc in by_seed.items():
            rows.append({"dataset": "CIFAR10", "model": "resnet20", "seed": seed, "status": records.STATUS_COMPLETED,
                         "run_name": f"CIFAR10_resnet20_{setting}_s{seed}", "final_test_acc": acc, "forgetting": -acc})
    rows.append({"dataset": "CIFAR10", "model": "resnet20", "seed": 9, "status": records.STATUS_DIVERGED,
                 "run_name": "CIFAR10_resnet20_SAM_rho0.05_s9", "final_test_acc": 10.0, "forgetting": 0.0})
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_t_quantiles_are_students():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 31):
        assert paired.t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)


def test_differences_interval_and_votes_by_hand(tmp_path, capsys):
    path = runs_csv(tmp_path / "runs.csv", {"Lookbehind_SAM_rho0.05_k2_alpha-1": {0: 61.0, 1: 62.0, 2: 63.0},
                                            "SAM_rho0.05": {0: 60.0, 1: 60.0, 2: 60.0, 3: 70.0}})
    rows = paired.pair_rows(paired.setting_table(path, None), ["Lookbehind*:SAM*"], False)
    (row,) = rows
    assert row["seeds"] == [0, 1, 2] and row["diffs"] == [1.0, 2.0, 3.0]   # seed 3 unpaired, seed 9 diverged
    assert row["mean"] == 2.0 and row["half"] == pytest.approx(4.303 * 1.0 / math.sqrt(3)) and row["favour"] == 3
    rows = paired.pair_rows(paired.setting_table(path, "forgetting"), ["Lookbehind*:SAM*"], True)
    assert rows[0]["favour"] == 3            # A lower by 1, 2, 3 points: all three favour A
    assert paired.main([path, "--pair", "Lookbehind*:SAM*", "--out", str(tmp_path / "t.md")]) == 0
    assert "[-0.48, +4.48]" in capsys.readouterr().out and "3/3" in (tmp_path / "t.md").read_text()


def test_ambiguous_or_unknown_settings_are_one_line(tmp_path, capsys):
    path = runs_csv(tmp_path / "runs.csv", {"SAM_rho0.05": {0: 1.0}, "SAM_rho0.1": {0: 2.0}, "SGD": {1: 3.0}})
    for pair, fragment in (("SAM*:SGD", "matches 2 settings"), ("ASAM:SGD", "matches no setting"),
                           ("SAM_rho0.05:SGD", "share no seed"), ("SAM_rho0.05", "expected A:B")):
        assert paired.main([path, "--pair", pair]) == records.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
