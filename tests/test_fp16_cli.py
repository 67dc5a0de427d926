"""--precision fp16 in both training scripts: fp16 autocast and a GradScaler held by the minimizer (docs/fp16.md).

On the CPU (torch has fp16 autocast there): the scaler's state is in the checkpoint and an interrupted run
resumes bit for bit (1 epoch + --resume == 2 epochs, the scale included); a device without fp16 autocast
is refused with one 'error:' line, exit status 2, nothing written.
"""
import os

import torch

import example_cifar
import example_continual
from minimizers.base import SCALER_KEY
from training import cli, records

SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "128", "--batch_size", "32",
         "--device", "cpu", "--precision", "fp16", "--minimizer", "Lookbehind_SAM", "--alpha", "-1"]
CONTINUAL = ["--benchmark", "split_cifar10", "--dataset", "CIFAR10_sample", "--num_tasks", "2",
             "--model", "reduced_resnet18", "--width", "4", "--train_per_task", "40", "--test_per_task", "20",
             "--batch_size", "10", "--device", "cpu", "--seed", "1", "--precision", "fp16", "--minimizer", "SAM"]


def checkpoint(out):
    return torch.load(os.path.join(out, records.CHECKPOINT_FILE), weights_only=True)


def test_fp16_run_resumes_bit_for_bit_with_the_scaler_state(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert example_cifar.main([*SMALL, "--epochs", "2", "--out", straight]) == 0
    assert example_cifar.main([*SMALL, "--epochs", "1", "--out", resumed]) == 0
    first = checkpoint(resumed)[("minimizer")][SCALER_KEY]
    assert set(first) >= {"scale", "_growth_tracker"} and first["scale"] <= 2.0 ** 16
    assert example_cifar.main(["--out", resumed, "--resume", "--epochs", "2"]) == 0
    a, b = checkpoint(straight), checkpoint(resumed)
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    assert a["minimizer"][SCALER_KEY] == b["minimizer"][SCALER_KEY]
    assert records.read_json(os.path.join(straight, records.CONFIG_FILE))["precision"] == "fp16"
    metrics = [open(os.path.join(d, records.METRICS_FILE)).read().splitlines() for d in (straight, resumed)]
    strip = lambda lines: [",".join(line.split(",")[:6]) for line in lines]   # noqa: E731  (no timings)
    assert strip(metrics[0]) == strip(metrics[1])


def test_fp16_continual_run_keeps_the_scaler_in_its_checkpoint(tmp_path):
    out = str(tmp_path / "continual")
    assert example_continual.main([*CONTINUAL, "--out", out]) == 0
    assert checkpoint(out)["minimizer"][SCALER_KEY]["scale"] <= 2.0 ** 16


def test_fp16_is_refused_where_the_device_has_no_fp16_autocast(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "fp16_autocast_available", lambda device_type: False)
    for entry, argv in ((example_cifar, SMALL), (example_continual, CONTINUAL)):
        out = str(tmp_path / entry.__name__)
        code = entry.main([*argv, "--out", out])
        err = capsys.readouterr().err
        assert code == records.EXIT_USAGE == 2
        assert err.startswith("error: --precision fp16") and err.count("\n") == 1, err
        assert not os.path.exists(out)


def test_fp16_autocast_availability():
    assert cli.fp16_autocast_available("cpu")          # torch 2.x runs fp16 autocast on the CPU
    assert not cli.fp16_autocast_available("meta")
    assert cli.grad_scaler(torch.device("cpu"), "bf16") is None
    assert isinstance(cli.grad_scaler(torch.device("cpu"), "fp16"), torch.amp.GradScaler)
