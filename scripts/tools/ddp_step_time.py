"""Step time of a data-parallel run (torchrun, gloo on the CPU) against one process.

    python -m scripts.tools.ddp_step_time                     # 3 alternated rounds, ~5 min on 2 CPU cores
    python -m scripts.tools.ddp_step_time --rounds 5 --model resnet20 --train_subset 2048

Each round runs, one after the other, the same short example_cifar.py run (offline sample,
Lookbehind-SAM k=2, global batch 128, 2 epochs) as
    one process, 1 thread         python example_cifar.py ...
    one process, N threads        (the same cores as the N processes)
    N processes x 1 thread        torchrun --nproc_per_node=N example_cifar.py ...
and reads the second epoch's training throughput from metrics.csv (the first includes warm-up).
A step's time is batch / throughput; it prints the medians over the rounds and the ratios of the
data-parallel step time to each single-process one.
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

from training import records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_once(launcher, threads, args, out):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [*launcher, os.path.join(REPO, "example_cifar.py"), "--device", "cpu", "--dataset", "CIFAR10_sample",
               "--model", args.model, "--train_subset", str(args.train_subset), "--batch_size", str(args.batch_size),
               "--minimizer", "Lookbehind_SAM", "--k", "2", "--alpha", "-1", "--epochs", "2", "--out", out]
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, records.METRICS_FILE)) as f:
        rows = list(csv.DictReader(f))
    return args.batch_size / float(rows[-1]["images_per_second"])  # seconds per global batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--train_subset", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args(argv)
    n = args.processes
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}"]
    configs = {"1 process x 1 thread": ([sys.executable], 1),
               f"1 process x {n} threads": ([sys.executable], n),
               f"{n} processes x 1 thread (DDP)": (torchrun, 1)}
    times = {label: [] for label in configs}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for index, (label, (launcher, threads)) in enumerate(configs.items()):
                out = os.path.join(scratch, f"r{round_index}_{index}")
                times[label].append(run_once(launcher, threads, args, out))
                print(f"round {round_index + 1}: {label}: {times[label][-1]:.3f} s/step", flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    ddp = medians[f"{n} processes x 1 thread (DDP)"]
    print(f"\n{args.model}, Lookbehind_SAM k=2, global batch {args.batch_size}, median of {args.rounds} alternated rounds:")
    for label, median in medians.items():
        print(f"  {label:32s} {median:.3f} s/step   DDP / this = {ddp / median:.2f}")


if __name__ == "__main__":
    main()
