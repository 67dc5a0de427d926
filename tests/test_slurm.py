"""The sweep's Slurm executor against a real Slurm (marker `slurm`; `bash scripts/launch/slurm_local.sh start`
brings up a single-node one as root; .ci/run does). Skipped, with the reason, where no Slurm answers.

1. A 2-run sweep (offline sample, resnet8, 64 images, 1 epoch) submitted as one job array through
   sbatch, waited for, records and collect checked.
2. A forced time limit: once a run's first epoch is checkpointed, the job gets USR2 (`scancel
   --signal=USR2`, what Slurm sends --signal-delay seconds before the time limit): the run stops at
   the end of its training step, submitit requeues the job, and the requeued job resumes from the
   checkpoint and completes. Slurm holds a requeued job about two minutes before starting it again.
3. The same signal with --max-requeues 0: the run stops, is not requeued (the sweep record says
   so), the job ends, and running the same sweep command again continues it from its checkpoint.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from training import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slurm_reachable():
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no sbatch/sinfo on PATH (start one with: bash scripts/launch/slurm_local.sh start)"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if result.returncode != 0 or not any(s in result.stdout for s in ("idle", "mixed", "allocated")):
        return f"no Slurm node answers (sinfo: {(result.stderr or result.stdout).strip()[:200]})"
    return None


REASON = slurm_reachable()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


def sweep(tmp_path, *extra, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "scripts.launch.sweep", "generalization", "--executor", "slurm",
                           "--datasets", "CIFAR10_sample", "--models", "resnet8", "--minimizers", "SGD",
                           "--runs-root", str(tmp_path / "runs"), "--results-root", str(tmp_path / "results"),
                           "--time", "10", *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_slurm_job_array_sweep(tmp_path):
    result = sweep(tmp_path, "--seeds", "0", "1", "--epochs", "1", "--wait",
                   "--", "--train_subset", "64", "--batch_size", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUBMITTED 2 runs as Slurm job array" in result.stdout
    sweep_dir = tmp_path / "runs" / "generalization"
    for seed in (0, 1):
        run = sweep_dir / f"CIFAR10_sample_resnet8_SGD_s{seed}"
        assert json.loads((run / records.SUMMARY_FILE).read_text())["status"] == "completed"
        record = json.loads((run / records.SWEEP_RECORD_FILE).read_text())
        assert record["status"] == "completed" and record["slurm_job_id"].endswith(f"_{seed}")
    assert any((sweep_dir / "slurm").iterdir())  # submitit's logs live under the sweep directory
    runs = pd.read_csv(tmp_path / "results" / "generalization" / "runs.csv")
    assert list(runs["status"]) == ["completed", "completed"]
    again = sweep(tmp_path, "--seeds", "0", "1", "--epochs", "1", "--", "--train_subset", "64", "--batch_size", "32")
    assert again.returncode == 0 and again.stdout.count("SKIP ") == 2 and "nothing to submit" in again.stdout
    bad = sweep(tmp_path, "--seeds", "0", "--epochs", "1", "--name", "other", "--partition", "no_such_partition")
    # sbatch prints its own lines first; the sweep adds one line and exits 2, nothing submitted
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("error: sbatch refused the job array: invalid partition")
    assert "Traceback" not in bad.stderr and not list((tmp_path / "runs" / "other").glob("*/summary.json"))


def test_slurm_time_limit_requeues_and_resumes_from_the_checkpoint(tmp_path):
    result = sweep(tmp_path, "--seeds", "0", "--epochs", "4", "--", "--train_subset", "512", "--batch_size", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "generalization" / "CIFAR10_sample_resnet8_SGD_s0"
    deadline = time.time() + 300
    while not (run / records.CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.2)
    job_id = json.loads((run / records.SWEEP_RECORD_FILE).read_text())["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    summary = {}
    while summary.get("status") != "completed" and time.time() < deadline + 300:
        time.sleep(1)
        try:
            summary = json.loads((run / records.SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            pass
    log = (run / records.RUN_LOG_FILE).read_text()
    assert summary.get("status") == "completed", log
    assert log.count("attempt started") == 2 and "stopped by SIGUSR2 at the end of a training step" in log
    assert "resuming" in log.split("attempt started")[2]  # the requeued attempt continued from the checkpoint
    metrics = pd.read_csv(run / records.METRICS_FILE)
    assert list(metrics["epoch"]) == [1, 2, 3, 4]
    record = json.loads((run / records.SWEEP_RECORD_FILE).read_text())
    assert record["requeues"] == 1 and record["slurm_job_id"] == job_id
    deadline = time.time() + 60
    while record["status"] != "completed" and time.time() < deadline:
        time.sleep(1)
        record = json.loads((run / records.SWEEP_RECORD_FILE).read_text())
    assert record["status"] == "completed"


def test_slurm_stop_without_requeues_left_is_recorded_and_the_same_command_continues(tmp_path):
    """--max-requeues 0: a time-limit signal stops the run at a step, submitit does not requeue it, the
    sweep record says why and the job leaves the queue; the same sweep command again submits it anew
    and it continues from its checkpoint to the end."""
    args = ("--seeds", "0", "--epochs", "3", "--max-requeues", "0", "--", "--train_subset", "512", "--batch_size", "32")
    result = sweep(tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "generalization" / "CIFAR10_sample_resnet8_SGD_s0"
    deadline = time.time() + 300
    while not (run / records.CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.2)
    job_id = json.loads((run / records.SWEEP_RECORD_FILE).read_text())["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    record = {}
    while record.get("status") != records.STATUS_INTERRUPTED and time.time() < deadline:
        time.sleep(0.5)
        record = json.loads((run / records.SWEEP_RECORD_FILE).read_text())
    assert record["status"] == records.STATUS_INTERRUPTED and record["requeues"] == 0, record
    assert "not requeued: --max-requeues 0 used" in record["note"]
    while time.time() < deadline:  # the job ends instead of waiting in the queue for a requeue
        queue = subprocess.run(["squeue", "-h", "-j", job_id.split("_")[0]], capture_output=True, text=True)
        if not queue.stdout.strip():
            break
        time.sleep(0.5)
    assert not queue.stdout.strip(), queue.stdout
    summary = json.loads((run / records.SUMMARY_FILE).read_text())
    assert summary["status"] == records.STATUS_INTERRUPTED and summary["epochs_completed"] < 3
    again = sweep(tmp_path, "--wait", *args)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (run / records.RUN_LOG_FILE).read_text()
    assert json.loads((run / records.SUMMARY_FILE).read_text())["status"] == "completed", again.stdout + log
    assert log.count("attempt started") == 2 and "resuming" in log.split("attempt started")[2]
    assert list(pd.read_csv(run / records.METRICS_FILE)["epoch"]) == [1, 2, 3]
