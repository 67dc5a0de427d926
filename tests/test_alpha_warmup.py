"""Adaptive-alpha statistics in metrics.csv and the --warmup_epochs linear warm-up.

Tiny runs (resnet8 on the offline sample, 128 images, single thread); the statistics are checked
against the per-step alphas recorded naively, the warm-up against its closed form, and a resumed
warm-up run against the uninterrupted one, weight for weight.
"""
import csv
import os
from contextlib import nullcontext

import pytest
import torch

import data
import example_cifar
import minimizers
import models
from training import lifecycle, records
from training.loop import alpha_columns, lr_schedule, train_one_epoch, warmup_factor
from training.settings import CifarSettings

SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "128",
         "--batch_size", "32", "--device", "cpu", "--seed", "0"]


def tiny_problem(alpha, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    minimizer = minimizers.create("Lookbehind_SAM", model, optimizer, k=3, alpha=alpha, rho=0.2)
    inputs, targets = torch.randn(16, 5), torch.randint(0, 3, (16,))

    def closure():
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss.detach()
    return minimizer, closure


def test_alpha_statistics_match_the_per_step_alphas():
    minimizer, closure = tiny_problem(alpha=-1)
    seen = []
    for _ in range(7):
        minimizer.step(closure)
        seen.append(minimizer.last_alpha.clone())
    everything = torch.cat(seen)
    mean, low, high = minimizer.pop_alpha_statistics()
    assert mean == pytest.approx(everything.mean().item(), rel=1e-6)
    assert (low, high) == (everything.min().item(), everything.max().item())
    assert low < high  # the alphas differ between tensors and steps: a constant would not pass
    assert minimizer.pop_alpha_statistics() is None  # reset after each read
    minimizer.step(closure)
    assert alpha_columns(minimizer) == {"alpha_mean": round(minimizer.last_alpha.mean().item(), 6),
                                        "alpha_min": round(minimizer.last_alpha.min().item(), 6),
                                        "alpha_max": round(minimizer.last_alpha.max().item(), 6)}


def test_fixed_alpha_and_other_minimizers_have_no_alpha_columns():
    minimizer, closure = tiny_problem(alpha=0.5)
    minimizer.step(closure)
    assert alpha_columns(minimizer) == {}
    model = torch.nn.Linear(2, 2)
    assert alpha_columns(minimizers.create("SAM", model, torch.optim.SGD(model.parameters(), lr=0.1))) == {}


def read_rows(out):
    with open(os.path.join(out, records.METRICS_FILE)) as f:
        return list(csv.DictReader(f))


def test_metrics_csv_alpha_columns(tmp_path, capsys):
    adaptive, sgd = str(tmp_path / "lb"), str(tmp_path / "sgd")
    assert example_cifar.main([*SMALL, "--minimizer", "Lookbehind_SAM", "--alpha", "-1", "--epochs", "1",
                               "--out", adaptive]) == 0
    assert example_cifar.main([*SMALL, "--minimizer", "SGD", "--epochs", "1", "--out", sgd]) == 0
    capsys.readouterr()
    (row,) = read_rows(adaptive)
    assert list(row) == records.METRIC_COLUMNS
    low, mean, high = (float(row[c]) for c in ("alpha_min", "alpha_mean", "alpha_max"))
    assert 0 <= low <= mean <= high <= 1
    (row,) = read_rows(sgd)
    assert all(row[c] == "" for c in records.ALPHA_COLUMNS)


def test_warmup_factor_closed_form():
    factors = [warmup_factor(1.5, epoch, index, 4) for epoch in (1, 2, 3) for index in range(1, 5)]
    assert factors[:6] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert factors[6:8] == [1.0, 1.0]          # the rest of the epoch in which warm-up ends
    assert factors[8:] == [None] * 4           # epochs after it: the schedule alone
    assert warmup_factor(0, 1, 1, 4) is None


def test_warmup_rates_seen_by_the_optimizer():
    args, _ = lifecycle.parse_settings(CifarSettings, example_cifar.parser(),
                                       [*SMALL, "--minimizer", "SGD", "--warmup_epochs", "1.5", "--lr", "0.2",
                                        "--epochs", "3"])
    hparams = args.minimizer_hparams
    torch.manual_seed(0)
    model = models.create_model(args.model, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    minimizer = minimizers.create(args.minimizer, model, optimizer, **hparams)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(args))
    dataset = data.load_dataset(args.dataset, args.data_dir, torch.device("cpu"), args.train_subset)
    rates = []
    original_step = optimizer.step
    optimizer.step = lambda *a, **k: (rates.append(optimizer.param_groups[0]["lr"]), original_step(*a, **k))[1]
    for epoch in (1, 2):
        train_one_epoch(epoch, model, minimizer, dataset, args, torch.device("cpu"), nullcontext)
        scheduler.step()
    assert rates == pytest.approx([0.2 * s / 6 for s in range(1, 7)] + [0.2, 0.2])
    assert optimizer.param_groups[0]["lr"] == 0.2  # the schedule's rate again after the warm-up


def test_warmup_run_resumes_bit_for_bit(tmp_path, capsys):
    flags = [*SMALL, "--minimizer", "Lookbehind_SAM", "--alpha", "-1", "--warmup_epochs", "1.5"]
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    assert example_cifar.main([*flags, "--epochs", "2", "--out", straight]) == 0
    assert example_cifar.main([*flags, "--epochs", "1", "--out", resumed]) == 0
    assert example_cifar.main(["--out", resumed, "--resume", "--epochs", "2"]) == 0
    capsys.readouterr()
    a, b = (records.load_checkpoint(os.path.join(out, records.CHECKPOINT_FILE), "cpu") for out in (straight, resumed))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in rows]
    assert strip(read_rows(straight)) == strip(read_rows(resumed))
