"""Data-parallel training (torchrun + DDP, gloo on the CPU) against one process.

Two real processes (torch.multiprocessing, gloo) drive the training loop's pieces on a model without
BatchNorm: the weights after a few Lookbehind-SAM steps equal a single process's on the full batch to
float32 rounding and stay identical on both ranks; --ascent_gradient local matches a naive
per-rank-ascent SAM reference. A real `torchrun --nproc_per_node=2 example_cifar.py` run checks the
records (rank 0 alone writes them) and resume. The GPU-count check is a plain function.
"""
import argparse
import csv
import json
import os
import socket
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

import data
import minimizers
from training import distributed, records
from training.cli import UsageError
from training.loop import evaluate, train_one_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD_SIZE = 2
# 37 images in batches of 16: 16, 16, 5 (the last one split 2 + 3 over the ranks, unevenly).
IMAGES, BATCH = 37, 16
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
SCENARIOS = {  # name: (minimizer, hyperparameters, --ascent_gradient)
    "lookbehind": ("Lookbehind_SAM", dict(k=2, alpha=-1, rho=0.05), "global"),
    "lookbehind_local": ("Lookbehind_SAM", dict(k=2, alpha=-1, rho=0.05), "local"),
    "sam_local": ("SAM", dict(rho=0.05), "local"),
}


class TinyNet(torch.nn.Module):
    """A conv + linear classifier without BatchNorm: DDP's result must equal one process's."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


def tiny_dataset():
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (IMAGES + 20, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (IMAGES + 20,), generator=generator)
    spec = data.DATASETS["CIFAR10"]
    return data.Dataset("tiny", images[:IMAGES], labels[:IMAGES], images[IMAGES:], labels[IMAGES:], 10,
                        torch.tensor(spec["mean"]).view(3, 1, 1), torch.tensor(spec["std"]).view(3, 1, 1))


def train(minimizer_name, hparams, parallel, epochs=2):
    """The pieces example_cifar.py puts together, on TinyNet: returns weights and the epochs' metrics."""
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    minimizer = minimizers.create(minimizer_name, model, optimizer, **hparams)
    train_forward = parallel.wrap(model)
    parallel.average_gradients_before_step(optimizer)
    dataset = tiny_dataset()
    args = argparse.Namespace(batch_size=BATCH, seed=0, epochs=epochs, channels_last=False, augment=True,
                              warmup_epochs=0, label_smoothing=0.0)  # what train_one_epoch reads of the settings
    metrics = []
    for epoch in range(1, epochs + 1):
        loss, acc, _, finite = train_one_epoch(epoch, train_forward, minimizer, dataset, args, torch.device("cpu"),
                                               nullcontext, parallel)
        with minimizer.evaluation_weights():
            test = evaluate(model, model, dataset, False, nullcontext, parallel)
        metrics.append((loss, acc, *test))
    return {"params": [p.detach().clone() for p in model.parameters()], "metrics": metrics}


def _worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      LOCAL_WORLD_SIZE=str(WORLD_SIZE), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        _, parallel = distributed.start("cpu")
        for name, (minimizer_name, hparams, ascent_gradient) in SCENARIOS.items():
            result = train(minimizer_name, hparams, distributed.DataParallel(parallel.processes, ascent_gradient))
            torch.save(result, os.path.join(out_dir, f"{name}_rank{rank}.pt"))
        for name in minimizers.available():  # every minimizer, both modes: one epoch each
            weights = {mode: train(name, {}, distributed.DataParallel(parallel.processes, mode), epochs=1)["params"]
                       for mode in distributed.ASCENT_GRADIENTS}
            torch.save(weights, os.path.join(out_dir, f"every_{name}_rank{rank}.pt"))
    finally:
        distributed.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    mp.start_processes(_worker, args=(free_port(), out_dir), nprocs=WORLD_SIZE, start_method="spawn")
    names = [*SCENARIOS, *(f"every_{name}" for name in minimizers.available())]
    return {(name, rank): torch.load(os.path.join(out_dir, f"{name}_rank{rank}.pt"))
            for name in names for rank in range(WORLD_SIZE)}


def assert_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_two_processes_equal_one_process_on_the_full_batch(two_process_results):
    torch.set_num_threads(1)
    single = train(*SCENARIOS["lookbehind"][:2], distributed.SINGLE_PROCESS)
    ranks = [two_process_results["lookbehind", rank] for rank in range(WORLD_SIZE)]
    for rank in ranks:
        assert_close(rank["params"], single["params"])
        # train loss/acc and test loss/acc are the global values
        assert sum(rank["metrics"], ()) == pytest.approx(sum(single["metrics"], ()), rel=1e-5)
    # not trivially equal: the weights moved away from their initialisation
    torch.manual_seed(0)
    assert not torch.allclose(TinyNet().fc.weight, single["params"][2])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ranks_hold_identical_weights(two_process_results, name):
    first, second = (two_process_results[name, rank]["params"] for rank in range(WORLD_SIZE))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", minimizers.available())
def test_every_minimizer_keeps_the_ranks_identical_in_both_modes(two_process_results, name):
    first, second = (two_process_results[f"every_{name}", rank] for rank in range(WORLD_SIZE))
    for mode in distributed.ASCENT_GRADIENTS:
        torch.manual_seed(0)
        assert not torch.equal(first[mode][2], TinyNet().fc.weight)  # trained
        for a, b in zip(first[mode], second[mode], strict=True):
            assert torch.equal(a, b), mode


def local_ascent_sam_reference(epochs=2, rho=0.05):
    """SAM where each rank perturbs with its own shard's gradient (m-sharpness) and the descent uses the
    mean over ranks of share-weighted gradients at each rank's perturbed point; written out naively."""
    torch.manual_seed(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    params = list(model.parameters())
    dataset = tiny_dataset()

    def gradient(inputs, targets, weight):
        model.zero_grad()
        (F.cross_entropy(model(inputs), targets) * weight).backward()
        return [p.grad.clone() for p in params]

    for epoch in range(1, epochs + 1):
        shards = [list(data.train_shards(dataset, BATCH, 0, epoch, rank=r, world_size=WORLD_SIZE))
                  for r in range(WORLD_SIZE)]
        for step in zip(*shards):
            w = [p.detach().clone() for p in params]
            descent = [torch.zeros_like(p) for p in params]
            for inputs, targets, batch_images in step:
                weight = targets.shape[0] * WORLD_SIZE / batch_images
                g = gradient(inputs, targets, weight)
                norm = torch.sqrt(sum((x ** 2).sum() for x in g))
                with torch.no_grad():
                    for p, x in zip(params, g):
                        p.add_(x * rho / (norm + 1e-16))
                for total, x in zip(descent, gradient(inputs, targets, weight)):
                    total += x / WORLD_SIZE
                with torch.no_grad():
                    for p, x in zip(params, w):
                        p.copy_(x)
            for p, x in zip(params, descent):
                p.grad = x
            optimizer.step()
    return [p.detach() for p in params]


def test_local_ascent_gradient_is_per_rank_sam(two_process_results):
    torch.set_num_threads(1)
    reference = local_ascent_sam_reference()
    assert_close(two_process_results["sam_local", 0]["params"], reference)
    # and it is not the global-ascent result: the option changes what is computed
    global_sam = train("SAM", dict(rho=0.05), distributed.SINGLE_PROCESS)
    assert not torch.allclose(global_sam["params"][2], reference[2], rtol=1e-4, atol=1e-5)


def test_shards_cover_each_global_batch_exactly():
    dataset = tiny_dataset()
    single = [labels for _, labels in data.train_batches(dataset, BATCH, 0, 1)]
    shards = [list(data.train_shards(dataset, BATCH, 0, 1, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    for batch, parts in zip(single, zip(*shards)):
        assert torch.equal(torch.cat([labels for _, labels, _ in parts]), batch)
        assert {n for _, _, n in parts} == {len(batch)}
    # a final batch smaller than the number of processes is skipped (a rank would get no image)
    assert data.num_train_batches(dataset, 12, world_size=4) == 3 and len(list(
        data.train_shards(dataset, 12, 0, 1, rank=0, world_size=4))) == 3  # 37 = 3 x 12 + 1
    assert data.num_train_batches(dataset, 12, world_size=1) == 3
    test_parts = [torch.cat([y for _, y in data.test_batches(dataset, 8, rank=r, world_size=3)]) for r in range(3)]
    assert torch.equal(torch.cat(test_parts), dataset.test_labels)


def test_more_processes_than_gpus_is_a_usage_error():
    distributed.check_gpu_count(2, 2)
    with pytest.raises(UsageError, match=r"torchrun started 4 processes on this node but 2 CUDA device\(s\) "
                                         r"are visible.*--nproc_per_node 2 or fewer"):
        distributed.check_gpu_count(4, 2)
    with pytest.raises(UsageError, match="global batch and must be divisible by the 3 processes"):
        distributed.check_batch_size(128, 3)
    assert distributed.processes_from_environment({}) == distributed.Processes()
    env = dict(RANK="3", WORLD_SIZE="8", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2")
    assert distributed.processes_from_environment(env) == distributed.Processes(3, 8, 1, 2)


TORCHRUN_ENV = dict(RANK="0", WORLD_SIZE="4", LOCAL_RANK="0", LOCAL_WORLD_SIZE="4")


def test_start_refuses_before_joining_a_process_group(monkeypatch):
    """The checks of start() run before init_process_group (which would wait for the other ranks)."""
    # 4 processes on a node where CUDA shows 2 devices (device_count patched: no GPU on this machine)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("cuda", "auto"):
        with pytest.raises(UsageError, match="torchrun started 4 processes on this node but 2 CUDA"):
            distributed.start(device, environ=TORCHRUN_ENV)
    monkeypatch.undo()
    with pytest.raises(UsageError, match="--sync_bn needs CUDA"):
        distributed.start("cpu", sync_bn=True, environ=TORCHRUN_ENV)
    assert not torch.distributed.is_initialized()
    # one process: no process group, every DataParallel method is a no-op
    device, parallel = distributed.start("cpu", "local", sync_bn=True, environ={})
    assert device == torch.device("cpu") and not parallel.local_ascent and not torch.distributed.is_initialized()


def test_sync_bn_converts_batchnorm_only_in_a_data_parallel_run():
    import models
    model = models.create_model("resnet8")
    parallel = distributed.DataParallel(distributed.Processes(0, 2, 0, 2))
    converted = distributed.convert_sync_batchnorm(model, parallel, sync_bn=True)
    kinds = {type(m) for m in converted.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert distributed.convert_sync_batchnorm(model, distributed.SINGLE_PROCESS, sync_bn=True) is model
    assert distributed.convert_sync_batchnorm(model, parallel, sync_bn=False) is model


# ----------------------------------------------------------------------------- real torchrun

def torchrun(*args, nproc=WORLD_SIZE):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_port", str(free_port()), os.path.join(REPO, "example_cifar.py"), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


SAMPLE_RUN = ["--device", "cpu", "--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "64",
              "--batch_size", "32"]


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "images_per_second")}
                for row in csv.DictReader(f)]


def test_torchrun_end_to_end_records_and_resume(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    first = torchrun(*SAMPLE_RUN, "--epochs", "1", "--out", resumed)
    assert first.returncode == 0, first.stderr[-3000:]
    # rank 0 alone prints (and writes): one header line, one epoch line
    assert first.stdout.count("x 2 processes (batch 16 each, global ascent gradient)") == 1
    assert first.stdout.count("epoch   1/1") == 1
    assert sorted(os.listdir(resumed)) == ["checkpoint.pt", "config.json", "curves.png", "metrics.csv",
                                           records.LOCK_FILE, "summary.json"]
    with open(os.path.join(resumed, "summary.json")) as f:
        assert json.load(f)["status"] == "completed"
    with open(os.path.join(resumed, "config.json")) as f:
        config = json.load(f)
    assert config["world_size"] == 2 and config["ascent_gradient"] == "global" and config["sync_bn"] is False

    second = torchrun(*SAMPLE_RUN, "--epochs", "2", "--out", resumed, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("resuming") == 1
    whole = torchrun(*SAMPLE_RUN, "--epochs", "2", "--out", straight)
    assert whole.returncode == 0, whole.stderr[-3000:]
    rows = read_metrics(resumed)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows == read_metrics(straight)  # the resumed run is the uninterrupted one, on every rank's weights
    a, b = (torch.load(os.path.join(d, "checkpoint.pt"), weights_only=True)["model"] for d in (resumed, straight))
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("rank", [0, 1])
def test_usage_errors_under_torchrun_are_one_line_from_rank_0(rank, monkeypatch, capsys, tmp_path):
    """Every process finds the same bad input before joining the process group; rank 0 alone says so."""
    import example_cifar
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    out = tmp_path / "bad"
    assert example_cifar.main([*SAMPLE_RUN, "--batch_size", "33", "--out", str(out)]) == 2
    expected = ("error: --batch_size 33 is the global batch and must be divisible by the 2 processes "
                "(e.g. --batch_size 32)\n")
    assert capsys.readouterr().err == (expected if rank == 0 else "")
    assert not out.exists()
