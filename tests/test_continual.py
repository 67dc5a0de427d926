"""Continual learning: metrics against hand-computed matrices, task splits, multi-head masking,
example_continual.py end to end on the offline sample, resume equality, bad input.

Runs are tiny (reduced ResNet-18 at width 4, 40 training and 20 test images per task, 2 tasks)
and single-threaded, which also makes CPU runs bit-for-bit reproducible.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data
import example_continual
import models
from training import continual, records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--benchmark", "split_cifar10", "--dataset", "CIFAR10_sample", "--num_tasks", "2",
         "--model", "reduced_resnet18", "--width", "4", "--train_per_task", "40", "--test_per_task", "20",
         "--batch_size", "10", "--device", "cpu", "--seed", "1"]
LOOKBEHIND = ["--minimizer", "Lookbehind_SAM", "--k", "2", "--alpha", "-1"]
# two epochs per task, cosine within each task and a per-task decay: the LR differs at every epoch
SCHEDULE = ["--epochs_per_task", "2", "--schedule", "cosine", "--task_lr_decay", "0.5", "--lr", "0.05",
            "--momentum", "0.9"]
TIMING_COLUMNS = {"epoch_seconds", "images_per_second"}


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def call_main(capsys, *argv):
    code = example_continual.main(list(argv))
    return code, capsys.readouterr()


def assert_one_error_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr


# ------------------------------------------------------------------------------------- metrics

def test_metrics_match_a_hand_computed_matrix():
    R = [[90.0, 10.0, 20.0],
         [70.0, 85.0, 30.0],
         [60.0, 65.0, 80.0]]
    # A = (60 + 65 + 80) / 3; F = ((90 - 60) + (85 - 65)) / 2; LA = (90 + 85 + 80) / 3
    assert continual.average_accuracy(R) == pytest.approx(205 / 3)
    assert continual.forgetting(R) == pytest.approx(25.0)
    assert continual.learning_accuracy(R) == pytest.approx(85.0)
    # max over every earlier row l < T-1 (the definition), not only the row after learning the task
    R2 = [[50.0, 95.0], [40.0, 90.0]]
    assert continual.forgetting(R2) == pytest.approx(10.0)
    # a task that got better later counts as negative forgetting (backward transfer)
    assert continual.forgetting([[60.0, 0.0], [70.0, 80.0]]) == pytest.approx(-10.0)
    assert continual.forgetting([[75.0]]) is None


def test_sequence_metrics_on_the_rows_finished_so_far():
    rows = [[90.0, 10.0, 20.0], [70.0, 85.0, 30.0]]
    metrics = continual.sequence_metrics(rows)  # the 2-task prefix: R[:2, :2]
    assert metrics == pytest.approx({"average_accuracy": 77.5, "forgetting": 20.0, "learning_accuracy": 87.5})
    assert continual.sequence_metrics([]) == {"average_accuracy": None, "forgetting": None, "learning_accuracy": None}


def test_sequence_lr_factor():
    reset = continual.sequence_lr_factor(2, 3, "cosine", True, 0.5)
    assert [reset(e) for e in range(6)] == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25, 0.125])
    whole = continual.sequence_lr_factor(2, 3, "cosine", False, 1.0)
    assert [whole(e) for e in range(6)] == pytest.approx([0.5 * (1 + np.cos(np.pi * e / 6)) for e in range(6)])
    constant = continual.sequence_lr_factor(1, 4, "constant", True, 1.0)
    assert [constant(e) for e in range(4)] == [1.0] * 4


# ------------------------------------------------------------------------------------- splits

@pytest.mark.parametrize("num_classes,per_task", [(10, 2), (100, 5), (10, 5)])
def test_task_splits_are_disjoint_covering_and_seeded(num_classes, per_task):
    num_tasks = num_classes // per_task
    for seed in range(3):
        tasks = continual.task_classes(num_classes, per_task, num_tasks, seed)
        assert len(tasks) == num_tasks and all(len(t) == per_task for t in tasks)
        flat = [c for t in tasks for c in t]
        assert sorted(flat) == list(range(num_classes))       # covering and disjoint
        assert tasks == continual.task_classes(num_classes, per_task, num_tasks, seed)  # seeded
        # a shorter sequence is the start of the full one
        assert continual.task_classes(num_classes, per_task, 2, seed) == tasks[:2]
    assert continual.task_classes(num_classes, per_task, num_tasks, 0) != \
        continual.task_classes(num_classes, per_task, num_tasks, 1)


def test_task_splits_reject_impossible_sequences():
    with pytest.raises(ValueError, match="need 12 classes"):
        continual.task_classes(10, 2, 6, 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        continual.task_classes(10, 1, 5, 0)


def synthetic_dataset(per_class_train=6, per_class_test=4, num_classes=6):
    def split(per_class, offset):
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(offset))]
        # pixel value = an image id, so a test can trace each image back
        images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).clone()
        return images + offset, labels
    train_x, train_y = split(per_class_train, 0)
    test_x, test_y = split(per_class_test, 100)
    return data.Dataset("synthetic", train_x, train_y, test_x, test_y, num_classes,
                        torch.zeros(3, 1, 1), torch.ones(3, 1, 1)), (train_x, train_y, test_x, test_y)


def test_split_dataset_keeps_each_task_its_classes():
    dataset, (train_x, train_y, test_x, test_y) = synthetic_dataset()
    classes = continual.task_classes(6, 2, 3, seed=4)
    tasks = continual.split_dataset(dataset, classes, multi_head=True)
    seen = set()
    for task in tasks:
        ids = task.dataset.train_images[:, 0, 0, 0].long()
        assert torch.equal(torch.tensor(task.classes)[task.dataset.train_labels], train_y[ids])  # local -> global
        assert set(task.dataset.train_labels.tolist()) == {0, 1} and task.dataset.num_classes == 2
        assert not seen & set(ids.tolist())
        seen |= set(ids.tolist())
        test_ids = (task.dataset.test_images[:, 0, 0, 0] - 100).long()
        assert torch.equal(torch.tensor(task.classes)[task.dataset.test_labels], test_y[test_ids])
    assert seen == set(range(len(train_y)))  # every training image in exactly one task
    single = continual.split_dataset(dataset, classes, multi_head=False)
    for task in single:  # class-incremental: global labels, all classes' outputs
        assert set(task.dataset.train_labels.tolist()) == set(task.classes) and task.dataset.num_classes == 6


def test_split_subsets_are_class_balanced():
    dataset, _ = synthetic_dataset()
    tasks = continual.split_dataset(dataset, [[0, 3], [1, 5]], True, train_per_task=5, test_per_task=4)
    for task in tasks:
        assert torch.bincount(task.dataset.train_labels).tolist() == [3, 2]
        assert torch.bincount(task.dataset.test_labels).tolist() == [2, 2]
    with pytest.raises(data.DataError, match="test_per_task 10"):
        continual.split_dataset(dataset, [[0, 3]], True, test_per_task=10)


# ------------------------------------------------------------------------------------- heads

def test_multi_head_uses_only_the_tasks_logits():
    torch.manual_seed(0)
    model = models.create_model("reduced_resnet18", 10, width=4)
    classes = [2, 7]
    head = continual.TaskHead(model, classes, torch.device("cpu"))
    inputs, targets = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 1, 0, 1, 0])
    model.eval()
    full = model(inputs)
    assert torch.equal(head(inputs), full[:, classes])
    # = cross-entropy over all 10 logits with the other tasks' logits masked to -inf
    masked = torch.full_like(full, float("-inf"))
    masked[:, classes] = full[:, classes]
    global_targets = torch.tensor(classes)[targets]
    assert torch.allclose(F.cross_entropy(head(inputs), targets), F.cross_entropy(masked, global_targets))
    # the other tasks' output units get no gradient
    model.train()
    F.cross_entropy(head(inputs), targets).backward()
    others = [c for c in range(10) if c not in classes]
    assert torch.count_nonzero(model.linear.weight.grad[others]) == 0
    assert torch.count_nonzero(model.linear.bias.grad[others]) == 0
    assert torch.count_nonzero(model.linear.weight.grad[classes]) > 0


def test_reduced_resnet18_is_the_continual_learning_model():
    model = models.create_model("reduced_resnet18", 100)
    assert model.conv1.out_channels == 20 and model.linear.in_features == 160
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.3e6  # ~1.1M as in GEM / A-GEM
    assert models.create_model("reduced_resnet18", 10, width=8).conv1.out_channels == 8
    assert models.create_model("resnet18", 10).conv1.out_channels == 64  # unchanged


# ------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("continual") / "straight")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert example_continual.main([*SMALL, *LOOKBEHIND, *SCHEDULE, "--out", out]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_two_task_run_end_to_end(straight_run):
    out = straight_run
    assert sorted(os.listdir(out)) == sorted([records.ACCURACY_MATRIX_FILE, records.CHECKPOINT_FILE, records.CONFIG_FILE,
                                              records.CONTINUAL_FIGURE_FILE, records.LOCK_FILE, records.METRICS_FILE,
                                              records.SUMMARY_FILE])
    rows = read_csv(os.path.join(out, records.METRICS_FILE))
    assert list(rows[0]) == records.continual_metric_columns(2)
    assert [(int(r["epoch"]), int(r["task"]), int(r["task_epoch"])) for r in rows] == \
        [(1, 0, 1), (2, 0, 2), (3, 1, 1), (4, 1, 2)]
    # cosine over each task's 2 epochs, task 1 at half the rate
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.05, 0.025, 0.025, 0.0125])
    matrix = records.read_accuracy_matrix(os.path.join(out, records.ACCURACY_MATRIX_FILE))
    # R's rows are every task's accuracy at the end of each task
    expected_rows = [[float(rows[1]["acc_task0"]), float(rows[1]["acc_task1"])],
                     [float(rows[3]["acc_task0"]), float(rows[3]["acc_task1"])]]
    assert np.allclose(matrix, expected_rows, atol=1e-4)
    for row in rows:  # test_acc: mean over the tasks trained so far; 20 test images -> multiples of 5 %
        seen = [float(row[f"acc_task{j}"]) for j in range(int(row["task"]) + 1)]
        assert float(row["test_acc"]) == pytest.approx(sum(seen) / len(seen))
        assert all(value % 5 == 0 for value in seen)
    summary = read_json(os.path.join(out, records.SUMMARY_FILE))
    assert summary["status"] == "completed" and summary["tasks_completed"] == 2 and summary["epochs"] == 4
    expected = continual.sequence_metrics(matrix)
    for key in records.CONTINUAL_METRICS:
        assert summary[key] == pytest.approx(expected[key], abs=1e-3)
    config = read_json(os.path.join(out, records.CONFIG_FILE))
    assert config["task_classes"] == continual.task_classes(10, 2, 2, 1)  # --task_seed defaults to --seed
    assert config["task_seed"] == 1 and config["classes_per_task"] == 2 and config["single_head"] is False
    with open(os.path.join(out, records.CONTINUAL_FIGURE_FILE), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_interrupted_run_resumes_at_the_right_task_and_epoch(straight_run, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "resumed")
    real_epoch = example_continual.train_one_epoch
    calls = []

    def interrupt_in_epoch_3(epoch, *args):
        calls.append(epoch)
        if epoch == 3:  # the first epoch of task 1: Ctrl-C
            raise KeyboardInterrupt
        return real_epoch(epoch, *args)

    monkeypatch.setattr(example_continual, "train_one_epoch", interrupt_in_epoch_3)
    code, output = call_main(capsys, *SMALL, *LOOKBEHIND, *SCHEDULE, "--out", out)
    assert code == records.EXIT_INTERRUPTED and "--resume" in output.err
    assert read_json(os.path.join(out, records.SUMMARY_FILE))["status"] == "running"
    assert len(records.read_accuracy_matrix(os.path.join(out, records.ACCURACY_MATRIX_FILE))) == 1
    monkeypatch.setattr(example_continual, "train_one_epoch", real_epoch)
    # only --out and --resume: every other setting comes from config.json
    code, output = call_main(capsys, "--out", out, "--resume")
    assert code == 0, output.err
    assert "after epoch 2 (task 1, epoch 2 of it)" in output.out
    assert without_timing(read_csv(os.path.join(out, records.METRICS_FILE))) == \
        without_timing(read_csv(os.path.join(straight_run, records.METRICS_FILE)))
    a = torch.load(os.path.join(out, records.CHECKPOINT_FILE), weights_only=True)
    b = torch.load(os.path.join(straight_run, records.CHECKPOINT_FILE), weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in records.CONTINUAL_METRICS:
        assert read_json(os.path.join(out, records.SUMMARY_FILE))[key] == \
            read_json(os.path.join(straight_run, records.SUMMARY_FILE))[key]
    code, output = call_main(capsys, "--out", out, "--resume")
    assert code == 0 and "nothing to do" in output.out


def test_sigterm_stops_at_a_step_and_resumes_to_the_same_result(straight_run, tmp_path):
    """SIGTERM (Slurm's preemption / time-limit signal) in a real process: exit 143, summary
    "interrupted", no temporary files; --resume ends where the uninterrupted run ends, bit for bit."""
    out = str(tmp_path / "terminated")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "example_continual.py"), *SMALL, *LOOKBEHIND,
                                *SCHEDULE, "--out", out], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        summary_path = os.path.join(out, records.SUMMARY_FILE)
        deadline = time.time() + 240
        # the summary is written once the data is loaded, before the first epoch
        while not os.path.exists(summary_path) and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == records.EXIT_TERMINATED, stderr
    assert "stopped by SIGTERM at the end of a training step" in stderr and "Traceback" not in stderr
    assert read_json(summary_path)["status"] == records.STATUS_INTERRUPTED
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    resumed = subprocess.run([sys.executable, os.path.join(REPO, "example_continual.py"), "--out", out, "--resume"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert without_timing(read_csv(os.path.join(out, records.METRICS_FILE))) == \
        without_timing(read_csv(os.path.join(straight_run, records.METRICS_FILE)))
    a = torch.load(os.path.join(out, records.CHECKPOINT_FILE), weights_only=True)
    b = torch.load(os.path.join(straight_run, records.CHECKPOINT_FILE), weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_single_head_run(tmp_path, capsys):
    out = str(tmp_path / "single")
    code, output = call_main(capsys, *SMALL, "--minimizer", "SGD", "--single_head", "--out", out)
    assert code == 0, output.err
    config = read_json(os.path.join(out, records.CONFIG_FILE))
    assert config["single_head"] is True
    assert len(records.read_accuracy_matrix(os.path.join(out, records.ACCURACY_MATRIX_FILE))) == 2


@pytest.mark.parametrize("argv,fragment", [
    (["--benchmark", "split_mnist"], "unknown benchmark"),
    (["--num_tasks", "6"], "need 12 classes"),
    (["--classes_per_task", "1"], "--classes_per_task"),
    (["--dataset", "CIFAR100"], "split_cifar10 is built from"),
    (["--train_per_task", "5000"], "train_per_task 5000"),
    (["--model", "wrn16_8", "--width", "4"], "--width does not apply"),
    (["--minimizer", "Adam"], "unknown minimizer"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, fragment):
    code, output = call_main(capsys, *SMALL, "--out", str(tmp_path / "run"), *argv)
    assert code == records.EXIT_USAGE
    assert_one_error_line(output.err)
    assert fragment in output.err
    assert not os.path.exists(tmp_path / "run" / records.SUMMARY_FILE)


def test_a_busy_run_directory_is_refused(capsys, tmp_path):
    out = str(tmp_path / "busy")
    holder = records.RunDirClaim().take(out)  # as another process training this run would
    try:
        code, output = call_main(capsys, *SMALL, "--minimizer", "SGD", "--out", out)
    finally:
        holder.release()
    assert code == records.EXIT_USAGE
    assert_one_error_line(output.err)
    assert "another process" in output.err
    assert not os.path.exists(os.path.join(out, records.SUMMARY_FILE))


def test_split_cifar100_without_data_or_network(tmp_path, monkeypatch, capsys):
    # Refused connection = an offline machine, answered at once.
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    code, output = call_main(capsys, "--benchmark", "split_cifar100", "--data_dir", str(tmp_path / "data"),
                             "--width", "4", "--device", "cpu", "--out", str(tmp_path / "run"))
    assert code == records.EXIT_USAGE
    assert_one_error_line(output.err)
    assert "cifar-100-python" in output.err and "download" in output.err
    assert not os.path.exists(tmp_path / "run")


def test_errors_are_one_line_in_a_real_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, os.path.join(REPO, "example_continual.py"), "--benchmark",
                             "split_cifar100", "--data_dir", str(tmp_path), "--no-download",
                             "--out", str(tmp_path / "run")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert_one_error_line(result.stderr)
    assert "CIFAR100 not found" in result.stderr


# ------------------------------------------------------------------------------------- table

def write_run(root, minimizer, seed, metrics, status="completed"):
    """A run directory as example_continual.py leaves it (config + summary), with chosen metrics."""
    out = os.path.join(root, f"{minimizer}_s{seed}")
    os.makedirs(out)
    config = {"benchmark": "split_cifar10", "dataset": "CIFAR10", "model": "reduced_resnet18",
              "minimizer": minimizer, "seed": seed, "task_seed": seed, "num_tasks": 5, "classes_per_task": 2,
              "epochs_per_task": 1, "train_per_task": 500, "test_per_task": 200, "single_head": False,
              "epochs": 5, "lr": 0.01}
    records.atomic_write_json(os.path.join(out, records.CONFIG_FILE), config)
    records.atomic_write_json(os.path.join(out, records.SUMMARY_FILE), records.summary_record(
        status, config, [], 1.0, dict(zip(records.CONTINUAL_METRICS, metrics))))
    records.atomic_write(os.path.join(out, records.ACCURACY_MATRIX_FILE),
                         records.accuracy_matrix_text([[seed + 70.0, 50.0], [seed + 60.0, 80.0]], 2))


def test_continual_table_means_stds_and_paired_differences(tmp_path, capsys):
    from scripts.reports import collect, continual_table
    runs = str(tmp_path / "runs")
    # (A, F, LA) per seed
    write_run(runs, "SAM", 0, (60.0, 20.0, 70.0))
    write_run(runs, "SAM", 1, (62.0, 10.0, 74.0))
    write_run(runs, "Lookbehind_SAM", 0, (64.0, 14.0, 71.0))
    write_run(runs, "Lookbehind_SAM", 1, (70.0, 8.0, 77.0))
    write_run(runs, "Lookbehind_SAM", 2, (50.0, 0.0, 50.0), status="diverged")  # counted, not averaged
    results = str(tmp_path / "results")
    collect.collect([runs], "continual", results, quiet=True)
    assert continual_table.main([results, "--paired", "SAM"]) == 0
    capsys.readouterr()
    with open(os.path.join(results, "table_continual.md")) as f:
        table = f.read()
    std_a = np.std([64.0, 70.0], ddof=1)
    assert f"| SAM | 61.00 ± {np.std([60.0, 62.0], ddof=1):.2f} (2) | 15.00 ± 7.07 (2) | 72.00 ± 2.83 (2) |" in table
    # best mean per column in bold: highest A and LA, lowest F
    assert (f"| Lookbehind-SAM [1 div.] | **67.00 ± {std_a:.2f}** (2) | **11.00 ± 4.24** (2) | "
            f"**74.00 ± 4.24** (2) |") in table
    # paired: seed 0: (+4, -6, +1), seed 1: (+8, -2, +3)
    assert "| Lookbehind-SAM − SAM | +6.00 ± 2.83 (2) | -4.00 ± 2.83 (2) | +2.00 ± 1.41 (2) |" in table
    with open(os.path.join(results, "table_continual.tex")) as f:
        assert r"\textbf{67.00} $\pm$" in f.read()
    assert os.path.exists(os.path.join(results, "figures", "continual_split_cifar10_reduced_resnet18.png"))
    assert os.path.exists(os.path.join(results, "figures", "continual_matrices_split_cifar10_reduced_resnet18.png"))
    matrices = read_csv(os.path.join(results, "accuracy_matrices.csv"))
    assert len(matrices) == 4 * 4  # the 4 completed runs' 2 x 2 matrices, not the diverged one
    assert {"minimizer": "SAM", "seed": "1", "after_task": "1", "task": "0", "accuracy": "61.0"}.items() <= \
        next(r for r in matrices if (r["minimizer"], r["seed"], r["after_task"], r["task"]) == ("SAM", "1", "1", "0")).items()


def test_continual_table_needs_continual_runs(tmp_path, capsys):
    from scripts.reports import continual_table
    assert continual_table.main([str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_continual_sweep_grid_end_to_end(tmp_path, capsys):
    """python -m scripts.launch.sweep continual (the shared sweep machinery) runs a real tiny grid; collect and the
    table read it."""
    from scripts.reports import continual_table
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    extra = ["--dataset", "CIFAR10_sample", "--num_tasks", "2", "--width", "4", "--train_per_task", "20",
             "--test_per_task", "10", "--batch_size", "10"]
    result = subprocess.run([sys.executable, "-m", "scripts.launch.sweep", "continual", "--benchmark", "split_cifar10",
                             "--seeds", "0", "--minimizers", "SGD", "Lookbehind_SAM", "--name", "continual_test",
                             "--device", "cpu", "--runs-root", str(tmp_path / "runs"),
                             "--results-root", str(tmp_path / "results"), "--", *extra],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "runs" / "continual_test" / "split_cifar10_reduced_resnet18_Lookbehind_SAM_k2_alpha-1_s0"
    config = read_json(run_dir / records.CONFIG_FILE)
    hparams = config["minimizer_hparams"]
    assert (config["minimizer"], hparams["k"], hparams["alpha"], config["num_tasks"]) == ("Lookbehind_SAM", 2, -1, 2)
    results = str(tmp_path / "results" / "continual_test")
    assert continual_table.main([results]) == 0
    assert "| Lookbehind-SAM |" in capsys.readouterr().out
