"""--tensorboard / --wandb: the trackers log what metrics.csv records (TensorBoard read back from its
event files), are imported lazily, and a missing package is a one-line usage error."""
import csv
import importlib.util
import os

import pytest

import example_cifar
from training import trackers

SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "32", "--batch_size", "16",
         "--device", "cpu", "--minimizer", "Lookbehind_SAM", "--alpha", "-1"]   # adaptive: alpha columns too


def test_tensorboard_scalars_equal_metrics_csv_across_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = str(tmp_path / "run")
    assert example_cifar.main([*SMALL, "--epochs", "1", "--out", out, "--tensorboard"]) == 0
    assert example_cifar.main(["--epochs", "2", "--out", out, "--resume", "--tensorboard"]) == 0
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    events = EventAccumulator(os.path.join(out, trackers.TENSORBOARD_DIR), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {key for key, value in rows[0].items() if value != ""} - {"epoch"}
    assert "alpha_mean" in tags
    for tag in tags:
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged.keys() == {int(r["epoch"]) for r in rows}, tag
        for row in rows:
            assert logged[int(row["epoch"])] == pytest.approx(float(row[tag]), rel=1e-6, abs=1e-6), tag
    assert "curves" in events.Tags()["images"]
    assert "config/text_summary" in events.Tags()["tensors"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed (optional)")
def test_wandb_offline_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = str(tmp_path / "run")
    assert example_cifar.main([*SMALL, "--epochs", "1", "--out", out, "--wandb"]) == 0
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.path.isdir(os.path.join(out, "wandb"))


def test_missing_tracker_package_is_a_usage_error(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = str(tmp_path / "run")
    assert example_cifar.main([*SMALL, "--epochs", "1", "--out", out, "--wandb"]) == 2
    assert capsys.readouterr().err.strip() == "error: --wandb needs the wandb package (pip install wandb)"
    assert not os.path.exists(out)


def test_continual_run_logs_every_tasks_accuracy_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import example_continual
    out = str(tmp_path / "continual")
    argv = ["--benchmark", "split_cifar10", "--dataset", "CIFAR10_sample", "--num_tasks", "2", "--model",
            "reduced_resnet18", "--width", "4", "--train_per_task", "20", "--test_per_task", "10",
            "--batch_size", "10", "--device", "cpu", "--minimizer", "SAM", "--out", out, "--tensorboard"]
    assert example_continual.main(argv) == 0
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    events = EventAccumulator(os.path.join(out, trackers.TENSORBOARD_DIR), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {key for key, value in rows[0].items() if value != ""} - {"epoch"}
    assert {"acc_task0", "acc_task1", "task", "train_loss"} <= tags
    for tag in tags:
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged == pytest.approx({int(r["epoch"]): float(r[tag]) for r in rows}, rel=1e-6, abs=1e-6), tag
    assert "continual" in events.Tags()["images"]
