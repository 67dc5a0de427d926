"""example_cifar.py end to end on the offline sample: records, resume, kill, divergence, bad input.

Runs are tiny (resnet8, 256 training images, batch 64, 1-2 epochs) and single-threaded: on a
busy 2-core machine several multi-threaded processes slow each other down tenfold, and a fixed
thread count is also what makes CPU runs bit-for-bit reproducible.
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import data
import example_cifar
from training.settings import CifarSettings
from training import lifecycle, records
from training.loop import LOG_EVERY, lr_schedule, train_one_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "256",
         "--batch_size", "64", "--device", "cpu", "--seed", "0"]
LOOKBEHIND = ["--minimizer", "Lookbehind_SAM", "--k", "2", "--alpha", "-1"]
TIMING_COLUMNS = {"epoch_seconds", "images_per_second"}


def cli_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(REPO, "example_cifar.py"), *args], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def checkpoint(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)


def assert_same_weights(a, b):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def assert_one_error_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Lookbehind-SAM (adaptive alpha), 2 uninterrupted epochs: the reference for the resume tests."""
    out = str(tmp_path_factory.mktemp("runs") / "straight")
    result = run_cli(*SMALL, *LOOKBEHIND, "--epochs", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_end_to_end_records(straight_run):
    out, result = straight_run
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "config.json", "curves.png", "metrics.csv",
                                       records.LOCK_FILE, "summary.json"]
    with open(os.path.join(out, "metrics.csv")) as f:
        assert f.readline().strip() == ",".join(records.METRIC_COLUMNS)
    rows = read_metrics(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row["lr"]) == 0.1
        assert 0 <= float(row["train_acc"]) <= 100 and 0 <= float(row["test_acc"]) <= 100
        assert float(row["train_loss"]) > 0 and float(row["images_per_second"]) > 0
    config = read_json(os.path.join(out, "config.json"))
    for key in ("dataset", "model", "minimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs",
                "seed", "schedule", "train_subset", "augment", "precision", "channels_last", "compile", "device",
                "minimizer_hparams", "versions", "git_commit", "command"):
        assert key in config, key
    hparams = config["minimizer_hparams"]   # the one record of the minimizer's hyperparameters, all resolved
    assert not {"rho", "k", "alpha", "eta", "bn_policy", "passes", "hparam"} & set(config)
    assert config["minimizer"] == "Lookbehind_SAM" and hparams["rho"] == 0.05  # library default for SAM-type
    assert hparams["k"] == 2 and hparams["alpha"] == -1 and "eta" not in hparams  # eta: not a SAM hparam
    assert hparams["bn_policy"] == "every" and hparams["passes"] == "shared" and config["device"] == "cpu"
    assert config["channels_last"] is True     # the default memory format on the CPU, resolved and recorded
    assert set(config["versions"]) == {"python", "torch", "torchvision", "numpy"}
    summary = read_json(os.path.join(out, "summary.json"))
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["final_test_acc"] == float(rows[-1]["test_acc"])
    assert summary["final_train_acc"] == float(rows[-1]["train_acc"])
    assert summary["best_test_acc"] == max(float(r["test_acc"]) for r in rows)
    assert summary["wall_seconds"] > 0
    assert (summary["dataset"], summary["model"], summary["minimizer"], summary["k"], summary["seed"]) == \
        ("CIFAR10_sample", "resnet8", "Lookbehind_SAM", 2, 0)
    with open(os.path.join(out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    state = checkpoint(out)
    assert state["epoch"] == 2 and len(state["metrics"]) == 2
    assert "rho=0.05 (default)" in result.stdout  # the resolved default is printed at start
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]  # no temporary file left


def test_resume_equals_uninterrupted_run(straight_run, tmp_path):
    out = str(tmp_path / "resumed")
    first = run_cli(*SMALL, *LOOKBEHIND, "--epochs", "1", "--out", out)
    assert first.returncode == 0, first.stderr
    assert read_json(os.path.join(out, "summary.json"))["status"] == "completed"
    # Typing only --out, --resume and the new epoch count is enough: the rest comes from config.json.
    second = run_cli("--out", out, "--resume", "--epochs", "2")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(straight_run[0]))
    assert_same_weights(checkpoint(out), checkpoint(straight_run[0]))
    assert read_json(os.path.join(out, "summary.json"))["status"] == "completed"
    # Resuming a completed run again is a no-op.
    again = run_cli("--out", out, "--resume", "--epochs", "2")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_killed_run_resumes_to_the_same_result(straight_run, tmp_path):
    out = str(tmp_path / "killed")
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "example_cifar.py"), *SMALL, *LOOKBEHIND,
                                "--epochs", "2", "--out", out], cwd=REPO, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = os.path.join(out, "metrics.csv")
    deadline = time.time() + 240
    try:
        while not os.path.exists(metrics) and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        # Epoch 1's checkpoint is on disk (it is written before metrics.csv): kill during epoch 2.
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    state = checkpoint(out)
    assert state["epoch"] == 1
    assert read_json(os.path.join(out, "summary.json"))["status"] == "running"
    # Without --resume the run directory is protected.
    refused = run_cli(*SMALL, *LOOKBEHIND, "--epochs", "2", "--out", out)
    assert refused.returncode == 2
    assert_one_error_line(refused.stderr)
    resumed = run_cli(*SMALL, *LOOKBEHIND, "--epochs", "2", "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(straight_run[0]))
    assert_same_weights(checkpoint(out), checkpoint(straight_run[0]))


def start_run(*args):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "example_cifar.py"), *args], cwd=REPO,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, seconds=240):
    deadline = time.time() + seconds
    while not os.path.exists(path) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert os.path.exists(path), process.communicate()


def test_sigterm_stops_at_a_step_and_resumes_to_the_same_result(straight_run, tmp_path):
    """SIGTERM (Slurm's preemption/time-limit signal; SIGUSR2 is handled the same way) stops the run
    at the end of the current training step: exit 143, summary "interrupted", the checkpoint of the
    last finished epoch intact; --resume repeats the partial epoch and ends where an uninterrupted
    run ends, bit for bit."""
    out = str(tmp_path / "terminated")
    process = start_run(*SMALL, *LOOKBEHIND, "--epochs", "2", "--out", out)
    try:
        # The summary is written once the data is loaded, before epoch 1: the signal lands in epoch 1's
        # training (stop after that step, no checkpoint yet) or evaluation (stop before epoch 2).
        wait_for(os.path.join(out, "summary.json"), process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == records.EXIT_TERMINATED, stderr
    assert "stopped by SIGTERM at the end of a training step" in stderr and "Traceback" not in stderr
    summary = read_json(os.path.join(out, "summary.json"))
    assert summary["status"] == records.STATUS_INTERRUPTED
    done = summary["epochs_completed"]
    assert done in (0, 1)
    if done:
        assert checkpoint(out)["epoch"] == len(read_metrics(out)) == 1
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    resumed = run_cli("--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert ("resuming" in resumed.stdout) == bool(done)
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(straight_run[0]))
    assert_same_weights(checkpoint(out), checkpoint(straight_run[0]))


def test_one_process_per_run_directory(tmp_path):
    """A second process on a run directory that one is training: one line, exit 2, the first run is
    untouched and finishes; a killed holder leaves no stale lock."""
    out = str(tmp_path / "busy")
    first = start_run(*SMALL, "--minimizer", "SGD", "--epochs", "3", "--out", out)
    try:
        wait_for(os.path.join(out, "summary.json"), first)
        assert records.run_dir_locked(out)
        second = run_cli(*SMALL, "--minimizer", "SGD", "--epochs", "3", "--out", out, "--resume")
        assert second.returncode == records.EXIT_USAGE
        assert_one_error_line(second.stderr)
        assert "is being trained by another process (pid" in second.stderr and str(first.pid) in second.stderr
        assert first.wait(timeout=240) == 0
    finally:
        first.kill()
    assert read_json(os.path.join(out, "summary.json"))["status"] == "completed"
    assert len(read_metrics(out)) == 3 and not records.run_dir_locked(out)
    # The lock dies with its process, however it ends: SIGKILL a holder, the directory is free.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from training import records; "
                               "claim = records.RunDirClaim().take(sys.argv[1]); print('locked', flush=True); "
                               "time.sleep(300)", out], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert records.run_dir_locked(out)
    finally:
        holder.kill()
        holder.wait()
    assert not records.run_dir_locked(out)
    again = run_cli("--out", out, "--resume")
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 1,000 KiB tmpfs: room for one resnet8 checkpoint (~620 KiB) and the small records, not for
    the temporary copy the next atomic checkpoint write needs. Needs root (mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1000k", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_during_a_checkpoint_write(small_disk, tmp_path):
    """A full disk while writing epoch 2's checkpoint: one line naming the file and the errno, exit 4,
    no temporary file left, epoch 1's checkpoint kept (and usable), summary "failed"; with space
    again --resume continues from epoch 1."""
    out = str(small_disk / "run")
    result = run_cli(*SMALL, "--minimizer", "SGD", "--epochs", "2", "--out", out)
    assert result.returncode == records.EXIT_WRITE_FAILED, result.stderr
    assert_one_error_line(result.stderr)
    assert f"cannot write {os.path.join(out, 'checkpoint.pt')}: [Errno 28]" in result.stderr
    assert "ENOSPC" in result.stderr and "previous checkpoint is kept" in result.stderr
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    assert checkpoint(out)["epoch"] == 1
    assert read_json(os.path.join(out, "summary.json"))["status"] == records.STATUS_FAILED
    moved = str(tmp_path / "moved")
    shutil.copytree(out, moved)
    resumed = run_cli("--out", moved, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and checkpoint(moved)["epoch"] == 2


def test_divergence_stops_cleanly_with_exit_3(tmp_path):
    out = str(tmp_path / "diverged")
    result = run_cli(*SMALL, "--minimizer", "SGD", "--lr", "1e6", "--epochs", "2", "--out", out)
    assert result.returncode == records.EXIT_DIVERGED, result.stderr
    assert "Traceback" not in result.stderr and "diverged" in result.stderr
    summary = read_json(os.path.join(out, "summary.json"))
    assert summary["status"] == "diverged"
    assert summary["epochs_completed"] < 2
    # Resuming a diverged run does not pretend it completed.
    assert run_cli("--out", out, "--resume").returncode == records.EXIT_DIVERGED


def test_corrupted_checkpoint_on_resume_loses_nothing(straight_run, tmp_path):
    out = str(tmp_path / "corrupt")
    shutil.copytree(straight_run[0], out)
    summary = read_json(os.path.join(out, "summary.json"))
    summary["status"] = "running"  # as if killed: --resume would continue from the checkpoint
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)
    garbage = b"this is not a checkpoint" * 100
    with open(os.path.join(out, "checkpoint.pt"), "wb") as f:
        f.write(garbage)
    def records_in(out):  # the lock file only says which process held the directory last
        return {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)
                if name != records.LOCK_FILE}

    before = records_in(out)
    result = run_cli("--out", out, "--resume", "--epochs", "3")
    assert result.returncode == 2
    assert_one_error_line(result.stderr)
    assert "checkpoint.pt" in result.stderr
    assert records_in(out) == before


def call_main(capsys, *argv):
    code = example_cifar.main(list(argv))
    return code, capsys.readouterr()


@pytest.mark.parametrize("argv, fragment", [
    (["--minimizer", "Lookbehind_FOO"], "unknown minimizer"),
    (["--model", "vgg11"], "unknown model"),
    (["--dataset", "MNIST"], "unknown dataset"),
    (["--minimizer", "SAM", "--rho", "-0.1"], "rho"),
    (["--minimizer", "Lookbehind_SAM", "--k", "0"], "--k"),
    (["--minimizer", "Lookbehind_SAM", "--alpha", "2"], "alpha"),
    (["--lr", "abc"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--batch_size", "0"], "--batch_size"),
    (["--batch_size", "1"], "BatchNorm"),
    (["--k", "2.5"], "--k"),
    (["--epochs", "1.5"], "--epochs"),
    (["--device", "tpu"], "--device"),
    (["--passes", "three"], "--passes"),
    (["--schedule", "linear"], "--schedule"),
    (["--hparam", "rho=0.1"], "--rho"),
    (["--hparam", "nonsense"], "KEY=VALUE"),
    (["--hparam", "beta=1"], "not a hyperparameter"),
    (["--train_subset", "999999"], "train_subset"),
    (["--mom", "0.5"], "unrecognized"),  # no abbreviations
    (["--eval", "print(1)"], "unrecognized"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, fragment):
    code, output = call_main(capsys, *SMALL, "--epochs", "1", "--out", str(tmp_path / "run"), *argv)
    assert code == 2
    assert_one_error_line(output.err)
    assert fragment in output.err
    assert not os.path.exists(tmp_path / "run" / "summary.json")


def test_unusable_run_directory(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code, output = call_main(capsys, *SMALL, "--epochs", "1", "--out", str(tmp_path / "file" / "run"))
    assert code == 2 and "run directory" in output.err
    assert_one_error_line(output.err)


def test_missing_cifar100_without_network(capsys, tmp_path, monkeypatch):
    # Refused connection = offline machine, answered at once.
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    code, output = call_main(capsys, "--dataset", "CIFAR100", "--data_dir", str(tmp_path / "data"),
                             "--model", "resnet8", "--minimizer", "SGD", "--device", "cpu",
                             "--out", str(tmp_path / "run"))
    assert code == 2
    assert_one_error_line(output.err)
    assert "cifar-100-python" in output.err and "download" in output.err
    assert not os.path.exists(tmp_path / "run")


def test_cli_errors_are_one_line_in_a_real_process(tmp_path):
    result = run_cli("--dataset", "CIFAR100", "--data-dir", str(tmp_path), "--no-download", "--model", "resnet8",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert_one_error_line(result.stderr)
    assert "CIFAR100 not found" in result.stderr
    result = run_cli("--minimizer", "nope")
    assert result.returncode == 2
    assert_one_error_line(result.stderr)


def test_resume_refuses_changed_settings_and_finished_runs_are_protected(straight_run, capsys, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(straight_run[0], out)
    code, output = call_main(capsys, "--out", out, "--resume", "--k", "3")
    assert code == 2 and "--k 3" in output.err
    assert_one_error_line(output.err)
    code, output = call_main(capsys, *SMALL, *LOOKBEHIND, "--epochs", "2", "--out", out)
    assert code == 2 and "--resume" in output.err


def settings_of(*argv):
    return lifecycle.parse_settings(CifarSettings, example_cifar.parser(), list(argv))


def test_flags_aliases_and_hparam_resolution(capsys):
    settings, ignored = settings_of("--weight-decay", "0.1", "--batch-size", "32", "--minimizer", "lookbehind-asam",
                                    "--no-minibatch-switching", "--alpha", "-1")
    assert (settings.weight_decay, settings.batch_size, settings.minimizer) == (0.1, 32, "Lookbehind_ASAM")
    hparams = settings.minimizer_hparams
    assert hparams["rho"] == 0.5 and hparams["eta"] == 0.01 and hparams["alpha"] == -1  # ASAM-type defaults
    assert hparams["minibatch_switching"] is False and ignored == []
    settings, ignored = settings_of("--minimizer", "SGD", "--rho", "0.2", "--k", "3")
    assert "rho" not in settings.minimizer_hparams and ignored == ["k", "rho"] and settings.hparam("rho") is None
    settings, _ = settings_of("--minimizer", "Multistep_SAM", "--descent_gradient", "mean", "--split_rho")
    assert settings.hparam("descent_gradient") == "mean" and settings.hparam("split_rho") is True


def test_lr_schedules_match_torch():
    for flags, reference in (
            (["--epochs", "200"], lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [50, 100, 150], 0.1)),
            (["--epochs", "30", "--schedule", "cosine"],
             lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 30))):
        args, _ = settings_of(*flags)
        ours_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        ours = torch.optim.lr_scheduler.LambdaLR(ours_opt, lr_schedule(args))
        ref = reference(ref_opt)
        for _ in range(args.epochs):
            assert ours_opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
            ours_opt.step(), ref_opt.step(), ours.step(), ref.step()


def test_resume_with_the_same_hparam_command(tmp_path, capsys):
    """A sweep resumes with its full command line: repeated --hparam entries must not pile up."""
    out = str(tmp_path / "gsam")
    command = [*SMALL, "--train_subset", "128", "--minimizer", "GSAM", "--hparam", "alpha_g=0.02",
               "--epochs", "1", "--out", out]
    assert call_main(capsys, *command)[0] == 0
    code, output = call_main(capsys, *command[:-4], "--epochs", "2", "--out", out, "--resume")
    assert code == 0, output.err
    assert read_json(os.path.join(out, "config.json"))["minimizer_hparams"]["alpha_g"] == 0.02
    assert read_json(os.path.join(out, "summary.json"))["epochs_completed"] == 2
    code, output = call_main(capsys, "--out", out, "--resume", "--epochs", "3", "--hparam", "alpha_g=0.5")
    assert code == 2 and "hparam" in output.err
    assert_one_error_line(output.err)


def test_training_epoch_reads_the_device_only_at_log_points(monkeypatch):
    """Between log points nothing in the loop (data, minimizer, metrics) reads a tensor back to the host."""
    from contextlib import nullcontext

    import minimizers
    import models

    args, _ = settings_of(*SMALL, *LOOKBEHIND, "--train_subset", "200", "--batch_size", "4", "--epochs", "1")
    hparams = args.minimizer_hparams
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = models.create_model(args.model, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    minimizer = minimizers.create(args.minimizer, model, optimizer, **hparams)
    dataset = data.load_dataset(args.dataset, args.data_dir, device, args.train_subset)

    reads = []
    for name in ["item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"]:
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _name=name, _original=original, **k: (reads.append(_name),
                                                                                  _original(self, *a, **k))[1])
    loss, acc, _, finite = train_one_epoch(1, model, minimizer, dataset, args, device, nullcontext)
    monkeypatch.undo()
    batches = data.num_train_batches(dataset, args.batch_size)          # 50 batches
    assert finite and 0 < acc <= 100
    assert len(reads) == -(-batches // LOG_EVERY), reads   # one read per log point
