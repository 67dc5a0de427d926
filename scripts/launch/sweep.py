"""Run a grid of training runs: on this machine (CPU or several GPUs) or as one Slurm job array.

    python -m scripts.launch.sweep kalpha --dry-run                       # the commands, nothing run
    python -m scripts.launch.sweep generalization --datasets CIFAR10 --models resnet20 --epochs 2 \\
        --workers 2 -- --train_subset 2000                         # 2 runs at a time on the CPU
    python -m scripts.launch.sweep rho --gpus all                         # one run per GPU at a time
    python -m scripts.launch.sweep kalpha --executor slurm --partition gpu --gpus-per-run 1 --time 24:00:00

Every run is one training-script process (example_cifar.py unless the grid names another) writing
runs/<sweep>/<run name>/ (scripts/launch/grids.py has the grids). Rerunning the same command resumes the
sweep: completed runs are skipped, diverged ones too (unless --retry-diverged), runs another
process is training are left to it ("running elsewhere"), anything else continues from its
checkpoint (every run is started with --resume). On Slurm a run that hits its time limit or is
preempted stops at a safe point and is requeued (submitit), at most --max-requeues times, and
continues from its checkpoint.

Exit status: 0 every run completed or diverged (or was submitted, on Slurm without --wait), 1 some
run failed, crashed or is unfinished, 2 bad input (one line on stderr, nothing run or changed).
"""
import argparse
import datetime
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from scripts.launch import grids
from training import lifecycle, records
from training.cli import Parser, UsageError, positive_int

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STOP_WAIT_S = 120      # how long a stopped run may take to reach its safe point before it is killed
REQUEUE_WAIT_S = 60    # Slurm preemption: SIGTERM first, then (submitit) USR2; wait this long for it


@dataclass(frozen=True)
class RunSpec:
    """One run as the executors see it: where it lives and its exact command (an argument list)."""
    name: str
    run_dir: str
    command: tuple
    sweep: str


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------ one run

def write_record(spec, status, **fields):
    """The sweep's record of a run's last attempt (records.SWEEP_RECORD_FILE), best effort."""
    path = os.path.join(spec.run_dir, records.SWEEP_RECORD_FILE)
    os.makedirs(spec.run_dir, exist_ok=True)
    try:
        old = records.read_json(path) if os.path.exists(path) else {}
    except records.RecordError:
        old = {}
    record = {**old, "run_name": spec.name, "sweep": spec.sweep, "status": status,
              "host": socket.gethostname(), "command": list(spec.command), **fields}
    try:
        records.atomic_write_json(path, record)
    except OSError:
        pass  # a full disk: the training script has said so in train.log


def wait_polling(process):
    """Wait for a child without holding Popen's wait lock (a signal handler may poll it meanwhile)."""
    while process.poll() is None:
        time.sleep(0.5)
    return process.returncode


def stop_process(process, seconds=STOP_WAIT_S):
    """SIGTERM: the run stops at the end of its current training step; SIGKILL if it takes too long."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    deadline = time.time() + seconds
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
        process.wait()


class RunAttempt:
    """Start one run's command with its output appended to the run's train.log, and record the outcome."""

    def __init__(self, spec, env=None, device="", on_start=None):
        self.spec, self.env, self.device, self.on_start = spec, env, device, on_start
        self.process = None

    def __call__(self):
        spec = self.spec
        os.makedirs(spec.run_dir, exist_ok=True)
        started = time.time()
        write_record(spec, records.STATUS_RUNNING, exit_code=None, device=self.device, started_at=now(),
                     ended_at=None, wall_seconds=None, runner_pid=os.getpid())
        with open(os.path.join(spec.run_dir, records.RUN_LOG_FILE), "a") as log:
            log.write(f"\n===== attempt started {now()} on {socket.gethostname()} {self.device}\n"
                      f"===== {shlex.join(spec.command)}\n")
            log.flush()
            self.process = subprocess.Popen(spec.command, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
            if self.on_start:
                self.on_start(self)
            code = wait_polling(self.process)
        status = records.status_of_exit(code)
        if code == records.EXIT_USAGE and records.run_dir_locked(spec.run_dir):
            status = records.STATUS_RUNNING_ELSEWHERE  # another process got the directory first
        elif code == records.EXIT_COMPLETED and read_summary_status(spec.run_dir) != records.STATUS_COMPLETED:
            status = records.STATUS_CRASHED  # exit 0 without a completed summary
        if status != records.STATUS_RUNNING_ELSEWHERE:
            write_record(spec, status, exit_code=code, ended_at=now(),
                         wall_seconds=round(time.time() - started, 1))
        return status, code


def read_summary_status(run_dir):
    try:
        return records.read_json(os.path.join(run_dir, records.SUMMARY_FILE)).get("status")
    except records.RecordError:
        return None


class SlurmRun:
    """What submitit runs in each task of the job array: one run (RunAttempt), and checkpoint(), which
    submitit calls on the time-limit/preemption signal (USR2): it stops the run at a safe point and
    returns the same run, requeued, until max_requeues requeues have been used."""

    def __init__(self, max_requeues, requeues=0):
        self.max_requeues, self.requeues = max_requeues, requeues
        self._attempt = None

    def __call__(self, spec):
        env = dict(os.environ)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = cpus
        import submitit
        job_id = submitit.JobEnvironment().job_id  # "<array>_<task>", or "<job>" for a one-run array
        attempt = RunAttempt(spec, env=env, device=f"slurm job {job_id}")
        write_record(spec, records.STATUS_RUNNING, slurm_job_id=job_id, requeues=self.requeues)
        self._attempt = attempt
        status, code = attempt()
        if code == records.EXIT_TERMINATED:
            # Preemption sends SIGTERM (the run has stopped) and then USR2, whose handler requeues us.
            time.sleep(REQUEUE_WAIT_S)
        return status

    def checkpoint(self, spec):
        stop_process(self._attempt.process if self._attempt else None)
        if self.requeues >= self.max_requeues:
            write_record(spec, records.STATUS_INTERRUPTED, ended_at=now(), requeues=self.requeues,
                         note=f"not requeued: --max-requeues {self.max_requeues} used")
            return None
        write_record(spec, records.STATUS_INTERRUPTED, ended_at=now(), requeues=self.requeues + 1,
                     note="stopped by Slurm (time limit or preemption); requeued")
        import submitit
        return submitit.helpers.DelayedSubmission(SlurmRun(self.max_requeues, self.requeues + 1), spec)


# ------------------------------------------------------------------------------ planning

def decide(run_dir, retry_diverged):
    """(action, reason): 'run' or 'skip', from the run directory's records."""
    status = read_summary_status(run_dir)
    if status == records.STATUS_COMPLETED:
        return "skip", records.STATUS_COMPLETED
    if records.run_dir_locked(run_dir):
        return "skip", records.STATUS_RUNNING_ELSEWHERE
    if status == records.STATUS_DIVERGED:
        return ("run", f"{records.STATUS_DIVERGED}: retried") if retry_diverged else ("skip", records.STATUS_DIVERGED)
    if os.path.exists(os.path.join(run_dir, records.CHECKPOINT_FILE)):
        return "run", f"{status or 'unfinished'}: continues from its checkpoint"
    return "run", "new" if not os.path.exists(run_dir) else f"{status or 'unfinished'}: starts over"


def retire(run_dir, sweep_dir):
    """A diverged run to retry: keep the old attempt in <sweep>/.retired/ instead of deleting it."""
    target = os.path.join(sweep_dir, ".retired", f"{os.path.basename(run_dir)}.{time.strftime('%Y%m%dT%H%M%S')}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(run_dir, target)


def check_sweep_dir(sweep_dir, grid):
    """A sweep directory holds one grid's runs (its SWEEP_FILE says which)."""
    path = os.path.join(sweep_dir, records.SWEEP_FILE)
    if os.path.exists(path):
        try:
            owner = records.read_json(path, "sweep record").get("grid")
        except records.RecordError as exc:
            raise UsageError(str(exc)) from None
        if owner != grid:
            raise UsageError(f"{sweep_dir} holds the runs of the {owner!r} sweep ({records.SWEEP_FILE}), not "
                             f"{grid!r}; choose another --name or --sweep-dir")


class Log:
    """Lines to stdout and <sweep>/sweep.log."""

    def __init__(self, sweep_dir, write):
        self.path = os.path.join(sweep_dir, "sweep.log") if write else None
        self.lock = threading.Lock()

    def __call__(self, message):
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        with self.lock:
            print(line, flush=True)
            if self.path:
                with open(self.path, "a") as f:
                    f.write(line + "\n")


# ------------------------------------------------------------------------------ executors

def local_workers(args):
    """[(label, environment changes, --device)] one entry per concurrent run."""
    if args.gpus:
        if args.gpus == ["all"]:
            import torch
            count = torch.cuda.device_count()
            if count == 0:
                raise UsageError("--gpus all: no CUDA device is visible")
            ids = [str(i) for i in range(count)]
        else:
            ids = args.gpus
            for gpu in ids:
                if not gpu.isdigit():
                    raise UsageError(f"--gpus: expected GPU numbers or 'all', got {gpu!r}")
        return [(f"cuda:{gpu}", {"CUDA_VISIBLE_DEVICES": gpu}, "cuda") for gpu in ids]
    workers = args.workers or 1
    env = {}
    if "OMP_NUM_THREADS" not in os.environ:  # concurrent CPU runs share the cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return [(f"{args.device}#{i}", env, args.device) for i in range(workers)]


def run_local(specs, args, log):
    """A small pool: each worker runs one run at a time, taking the next one when it finishes."""
    workers = local_workers(args)
    queue = list(specs)
    results = {}
    lock = threading.Lock()
    running = set()
    stopping = threading.Event()

    def work(label, env_changes, device):
        while not stopping.is_set():
            with lock:
                if not queue:
                    return
                spec = queue.pop(0)
            command = spec.command + ("--device", device)
            attempt = RunAttempt(RunSpec(spec.name, spec.run_dir, command, spec.sweep),
                                 env={**os.environ, **env_changes}, device=label,
                                 on_start=lambda a: running.add(a))
            log(f"START {spec.name} on {label}")
            status, code = attempt()
            running.discard(attempt)
            results[spec.name] = status
            tail = "" if code in (0, records.EXIT_DIVERGED) else last_lines(spec.run_dir)
            log(f"DONE {spec.name} status={status} exit={code}{tail}")

    threads = [threading.Thread(target=work, args=w, daemon=True) for w in workers]
    log(f"SWEEP {args.name}: {len(specs)} runs on {len(workers)} worker(s): {', '.join(w[0] for w in workers)}")
    previous = {s: signal.signal(s, lambda signum, frame: stopping.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if stopping.is_set():  # stop every run at its safe point; they resume next time
                log("stopping: every running run stops at the end of its current training step")
                for attempt in list(running):
                    stop_process(attempt.process)
                break
            time.sleep(0.2)
        for thread in threads:
            thread.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return results, stopping.is_set()


def last_lines(run_dir, count=5):
    try:
        with open(os.path.join(run_dir, records.RUN_LOG_FILE)) as f:
            lines = f.read().splitlines()[-count:]
    except OSError:
        return ""
    return "  -- last lines of its train.log:\n" + "\n".join(f"    | {line}" for line in lines)


SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")
SLURM_MEM = re.compile(r"^\d+[KMGT]?$")
SBATCH_KEY = re.compile(r"^[a-z][a-z0-9-]*$")


def slurm_minutes(text):
    """Slurm's time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) -> whole minutes."""
    match = SLURM_TIME.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a Slurm time (e.g. 90, 24:00:00, 2-00:00:00), got {text!r}")
    days, a, b, c = match.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:   # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:   # MM:SS
        seconds = int(a) * 60 + int(b)
    else:                 # minutes
        seconds = int(a) * 60
    if seconds < 60:
        raise argparse.ArgumentTypeError(f"must be at least one minute, got {text!r}")
    return (seconds + 59) // 60


def slurm_memory(text):
    if not SLURM_MEM.match(text):
        raise argparse.ArgumentTypeError(f"expected a Slurm memory size (e.g. 32G, 16000M), got {text!r}")
    return text


def sbatch_arg(text):
    key, sep, value = text.partition("=")
    key = key.lstrip("-")
    if not SBATCH_KEY.match(key):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an sbatch option without dashes), got {text!r}")
    return key, value if sep else None


def submit_slurm(specs, args, sweep_dir, log):
    """One job array for the runs to do; returns the submitit jobs."""
    if shutil.which("sbatch") is None:
        raise UsageError("--executor slurm: sbatch is not on PATH (not a Slurm login node?); "
                         "use --executor local")
    import submitit
    executor = submitit.SlurmExecutor(folder=os.path.join(sweep_dir, "slurm", "%j"),
                                      max_num_timeout=args.max_requeues)
    extra = dict(args.sbatch_arg)
    for key, value in (("account", args.account), ("qos", args.qos), ("constraint", args.constraint)):
        if value:
            extra[key] = value
    # The jobs import scripts.launch.sweep (the pickled SlurmRun): the repository must be on their path.
    setup = [f"export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}"]
    executor.update_parameters(
        job_name=f"sweep-{args.name}", time=args.time, partition=args.partition, gpus_per_node=args.gpus_per_run,
        cpus_per_task=args.cpus_per_run, mem=args.mem, array_parallelism=args.array_parallelism,
        signal_delay_s=args.signal_delay, additional_parameters=extra, setup=setup, stderr_to_stdout=True)
    device = "cuda" if args.gpus_per_run else args.device
    payload = [RunSpec(s.name, s.run_dir, s.command + ("--device", device), s.sweep) for s in specs]
    try:
        jobs = executor.map_array(SlurmRun(args.max_requeues), payload)
    except Exception as exc:  # sbatch's refusal (bad partition, account, ...): its first error line
        message = " ".join(str(exc).split())
        found = re.search(r"sbatch: error: ([^\n]*?)(?:\s*sbatch: error|$)", str(exc))
        raise UsageError(f"sbatch refused the job array: {found.group(1) if found else message[:300]}") from None
    array_id = jobs[0].job_id.split("_")[0] if jobs else "-"
    log(f"SUBMITTED {len(jobs)} runs as Slurm job array {array_id} (logs: {os.path.join(sweep_dir, 'slurm')})")
    return jobs


def wait_slurm(jobs, log):
    results = {}
    for job in jobs:
        try:
            results[job.job_id] = job.result()
        except Exception as exc:
            results[job.job_id] = records.STATUS_CRASHED
            log(f"job {job.job_id}: {' '.join(str(exc).split())[:300]}")
    return results


# ------------------------------------------------------------------------------ command line

def build_parser():
    parser = Parser(prog="python -m scripts.launch.sweep", description="Run a grid of training runs (scripts/launch/grids.py) "
                    "on this machine or as one Slurm job array; rerun the same command to resume.",
                    allow_abbrev=False)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    where = common.add_argument_group("where")
    where.add_argument("--name", help="sweep name (default: the grid's): runs go to RUNS_ROOT/NAME/<run>/")
    where.add_argument("--runs-root", default=os.path.join(REPO, "runs"), help="default <repo>/runs")
    where.add_argument("--results-root", default=os.path.join(REPO, "results"),
                       help="collect writes RESULTS_ROOT/NAME/ at the end (default <repo>/results)")
    where.add_argument("--data-dir", help="passed to every run as --data_dir")
    how = common.add_argument_group("how")
    how.add_argument("--executor", default="local", choices=["local", "slurm"], help="default local")
    how.add_argument("--dry-run", action="store_true", help="print each run's command and whether it would be "
                     "skipped; run nothing, write nothing")
    how.add_argument("--retry-diverged", action="store_true",
                     help="run diverged runs again (the old attempt is moved to <sweep>/.retired/)")
    how.add_argument("--no-collect", dest="collect", action="store_false", help="do not run scripts.reports.collect at the end")
    local = common.add_argument_group("local executor")
    local.add_argument("--gpus", nargs="+", metavar="ID", help="one run per GPU at a time: GPU numbers, or 'all'")
    local.add_argument("--workers", type=positive_int, help="CPU: this many runs at a time, sharing the cores "
                       "(OMP_NUM_THREADS = cores / workers unless set); default 1")
    local.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                       help="--device of each run without --gpus (default auto)")
    slurm = common.add_argument_group("slurm executor (one job array per sweep, one run per task)")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--constraint")
    slurm.add_argument("--time", type=slurm_minutes, default=slurm_minutes("24:00:00"),
                       help="time limit per attempt (Slurm format; default 24:00:00)")
    slurm.add_argument("--gpus-per-run", type=int, default=0, help="GPUs per run (default 0: a CPU run)")
    slurm.add_argument("--cpus-per-run", type=positive_int, default=None, help="CPUs per run")
    slurm.add_argument("--mem", type=slurm_memory, help="memory per run, e.g. 32G")
    slurm.add_argument("--array-parallelism", type=positive_int, default=64,
                       help="at most this many runs at once (slurm_array_parallelism; default 64)")
    slurm.add_argument("--max-requeues", type=int, default=3,
                       help="requeues after a time limit or preemption, per run (default 3)")
    slurm.add_argument("--signal-delay", type=positive_int, default=90,
                       help="seconds before the time limit at which Slurm signals the run to stop (default 90)")
    slurm.add_argument("--sbatch-arg", type=sbatch_arg, action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option (repeatable), e.g. --sbatch-arg exclude=node12")
    slurm.add_argument("--wait", action="store_true", help="wait for the job array to end, then collect")

    grid_parsers = parser.add_subparsers(dest="grid", metavar="GRID", required=True,
                                         parser_class=Parser)
    for grid in grids.GRIDS.values():
        sub = grid_parsers.add_parser(grid.name, parents=[common], help=grid.description,
                                      description=grid.description, allow_abbrev=False,
                                      epilog="Flags after '--' go to every run's training script.")
        options = {option.name: option for option in grid.options}  # a later option overrides
        group = sub.add_argument_group(f"the {grid.name} grid")
        for option in options.values():
            kwargs = {"default": option.default, "help": f"{option.help} (default: {format_default(option.default)})"}
            if option.type is not str:
                kwargs["type"] = option.type
            if option.nargs:
                kwargs["nargs"] = option.nargs
            if option.repeatable:
                kwargs["action"] = "extend"
            group.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name, **kwargs)
    return parser


def format_default(value):
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def parse(argv):
    argv = list(argv)
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    args.extra = extra
    args.name = args.name or args.grid
    if not re.match(r"^[A-Za-z0-9._-]+$", args.name):
        raise UsageError(f"--name {args.name!r}: use letters, digits, '.', '_' or '-'")
    if args.executor == "slurm" and (args.gpus or args.workers):
        raise UsageError("--gpus/--workers are for --executor local; on Slurm use --gpus-per-run/--array-parallelism")
    if args.gpus_per_run < 0 or args.max_requeues < 0:
        raise UsageError("--gpus-per-run and --max-requeues must be >= 0")
    return args


def specs_for(args, sweep_dir):
    runs = grids.GRIDS[args.grid].build(args)
    if not runs:
        raise UsageError("the grid has no runs (check its options)")
    seen, specs = set(), []
    for run in runs:
        if run.name in seen:
            continue  # a grid may list a run twice (e.g. a baseline shared by two families)
        seen.add(run.name)
        entry = os.path.join(REPO, run.entry)
        if not os.path.isfile(entry):
            raise UsageError(f"the {args.grid} grid's training script {run.entry} is not in the repository")
        run_dir = os.path.join(sweep_dir, run.name)
        command = (sys.executable, entry, *run.args,
                   *(["--data_dir", os.path.abspath(args.data_dir)] if args.data_dir else []),
                   *args.extra, "--out", run_dir, "--resume")
        specs.append(RunSpec(run.name, run_dir, tuple(command), args.name))
        # Every run's command is checked as its script will check it, before any run starts or anything is
        # written: a bad value (--epochs 0, --lb-alpha nan, -- --lr nan) is one line now, not N failed runs.
        try:
            lifecycle.check_command(run.entry, command[2:], planned_device(args))
        except UsageError as exc:
            raise UsageError(f"run {run.name}: {exc}") from None
    return specs


def planned_device(args):
    """The device type the runs will train on: CUDA with GPUs (--gpus, Slurm --gpus-per-run), else --device."""
    if args.gpus or (args.executor == "slurm" and args.gpus_per_run > 0):
        return "cuda"
    if args.executor == "slurm":
        return "cpu"
    return None if args.device == "auto" else args.device   # None: --device auto, resolved on this machine


def main(argv=None):
    try:
        return sweep(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return records.EXIT_USAGE


def sweep(argv):
    args = parse(argv)
    sweep_dir = os.path.join(os.path.abspath(args.runs_root), args.name)
    specs = specs_for(args, sweep_dir)
    check_sweep_dir(sweep_dir, args.grid)
    if args.executor == "slurm" and not args.dry_run and shutil.which("sbatch") is None:
        raise UsageError("--executor slurm: sbatch is not on PATH (not a Slurm login node?); use --executor local")

    plan = [(spec, *decide(spec.run_dir, args.retry_diverged)) for spec in specs]
    if args.dry_run:
        for spec, action, reason in plan:
            device = () if args.executor == "slurm" or args.gpus else ("--device", args.device)
            print(f"{'SKIP' if action == 'skip' else 'RUN '} {spec.name} ({reason}): "
                  f"{shlex.join(spec.command + device)}")
        return 0

    os.makedirs(sweep_dir, exist_ok=True)
    records.atomic_write_json(os.path.join(sweep_dir, records.SWEEP_FILE),
                              {"grid": args.grid, "name": args.name, "runs": [spec.name for spec in specs]})
    log = Log(sweep_dir, write=True)
    todo = []
    for spec, action, reason in plan:
        if action == "skip":
            log(f"SKIP {spec.name} ({reason})")
            continue
        if reason.startswith(records.STATUS_DIVERGED):
            retire(spec.run_dir, sweep_dir)
            log(f"RETIRE {spec.name} (diverged; the old attempt is in .retired/)")
        todo.append(spec)

    if args.executor == "slurm":
        if not todo:
            log("nothing to submit")
        else:
            jobs = submit_slurm(todo, args, sweep_dir, log)
            if not args.wait:
                print(f"watch: squeue -r -n sweep-{args.name}; when done: python -m scripts.reports.collect {sweep_dir}")
                return 0
            wait_slurm(jobs, log)
        stopped = False
    else:
        _, stopped = run_local(todo, args, log)

    statuses = {spec.name: final_status(spec) for spec in specs}
    counts = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    log(f"END {args.name}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) +
        f" of {len(specs)}")
    if args.collect:
        from scripts.reports import collect
        try:
            collect.collect([sweep_dir], args.name, os.path.join(os.path.abspath(args.results_root), args.name))
        except Exception as exc:  # the runs are on disk; collecting can be done again by hand
            log(f"WARNING scripts.reports.collect failed: {exc}")
    if stopped:
        return records.EXIT_INTERRUPTED
    unfinished = [name for name, status in statuses.items()
                  if status not in records.FINISHED_STATUSES + (records.STATUS_RUNNING_ELSEWHERE, records.STATUS_RUNNING)]
    return 1 if unfinished else 0


def final_status(spec):
    try:
        sweep_status = records.read_json(os.path.join(spec.run_dir, records.SWEEP_RECORD_FILE)).get("status")
    except records.RecordError:
        sweep_status = None
    locked = records.run_dir_locked(spec.run_dir)
    status = records.resolve_status(read_summary_status(spec.run_dir), locked, sweep_status)
    return records.STATUS_RUNNING_ELSEWHERE if status == records.STATUS_RUNNING else status


if __name__ == "__main__":
    sys.exit(main())
