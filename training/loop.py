"""The training loop's machinery: one epoch of minimizer steps, evaluation, the LR schedule.

Shared by the training entry points; the loop that calls these stays visible in each script.
No host syncs inside a step: the loss and the correct count accumulate on the device and are
read every LOG_EVERY batches (and at the end), which is also where a non-finite loss is caught.
"""
import bisect
import math
import signal
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import data
from training import records

from .distributed import SINGLE_PROCESS

LOG_EVERY = 20          # batches between reads of the loss (the only host syncs while training)
EVAL_BATCH_SIZE = 512   # evaluation batch size only changes speed, not results


class StopRequested(Exception):
    """A stop signal arrived; raised at the end of the training step that was running (the safe point:
    the checkpoint of the last finished epoch is intact, the partial epoch is discarded and --resume
    repeats it exactly)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGTERM and SIGUSR2 (what Slurm sends before a preemption or a time limit) and a first Ctrl-C
    set a flag that train_one_epoch checks after every step (a data-parallel run: at the next log
    point, every LOG_EVERY steps, where the ranks agree to stop together); a second Ctrl-C stops at once."""
    SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def install(self):
        self.signum = None
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            hint = " (Ctrl-C again to stop now)" if signum == signal.SIGINT else ""
            print(f"\n{signal.Signals(signum).name}: stopping at the end of this training step{hint}", flush=True)

    def check(self):
        if self.signum is not None:
            raise StopRequested(self.signum)


stop_signals = StopSignals()  # signals are per process: one flag per process


def report_stop(claim, stop):
    """A StopRequested reached an entry point's main(): mark the run interrupted, say so in one line,
    return the exit status (records.EXIT_INTERRUPTED for Ctrl-C, records.EXIT_TERMINATED for SIGTERM/SIGUSR2)."""
    # Raised at the end of a training step: the checkpoint of the last finished epoch is intact.
    claim.mark_summary(records.STATUS_INTERRUPTED)
    print(f"stopped by {stop} at the end of a training step; the checkpoint of the last finished epoch is "
          f"intact; continue with --resume (same --out)", file=sys.stderr)
    return records.EXIT_INTERRUPTED if stop.signum == signal.SIGINT else records.EXIT_TERMINATED


def train_one_epoch(epoch, model_forward, minimizer, dataset, settings, device, autocast, parallel=SINGLE_PROCESS):
    """One epoch, one minimizer.step per batch. Returns (loss, acc %, seconds, finite).

    settings: the run's settings (training/settings.py); read here: batch_size, seed, channels_last,
    augment, warmup_epochs, label_smoothing, and epochs (for the progress bar).

    Loss sum and correct count accumulate on the device; they are read (one host sync)
    every LOG_EVERY batches and at the end, which is also where a non-finite loss is caught.
    In a data-parallel run (parallel, training.distributed) this process trains on its shard of
    each global batch of settings.batch_size images, model_forward is the DDP module, and the sums are
    added over the processes at those same points, so the returned values are global."""
    minimizer.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = logged = 0  # images of the global batches so far
    world_size = parallel.world_size
    num_batches = data.num_train_batches(dataset, settings.batch_size, world_size)
    bar = tqdm(total=num_batches * settings.batch_size if num_batches else 0, unit="img", unit_scale=True,
               leave=False, dynamic_ncols=True, disable=None if parallel.is_main else True,
               desc=f"epoch {epoch}/{settings.epochs}")
    start = time.perf_counter()
    param_groups = minimizer.param_groups
    scaler = minimizer.scaler      # --precision fp16 (attached by the entry point), else None
    label_smoothing = settings.label_smoothing   # the training loss only; evaluation is plain cross-entropy
    epoch_lrs = [group["lr"] for group in param_groups]   # the schedule's rates for this epoch
    batches = data.train_shards(dataset, settings.batch_size, settings.seed, epoch, settings.channels_last,
                                parallel.rank, world_size, augment=settings.augment)
    for index, (inputs, targets, batch_images) in enumerate(batches, start=1):
        factor = warmup_factor(settings.warmup_epochs, epoch, index, num_batches)
        if factor is not None:  # host arithmetic only; the scheduler restores the rates at the epoch's end
            for group, lr in zip(param_groups, epoch_lrs):
                group["lr"] = lr * factor
        clean_outputs = []
        # This shard's weight in the global batch: DDP averages the ranks' gradients, so a mean loss
        # scaled by shard/(batch/world) makes that average the global batch's mean gradient, also
        # for an uneven final batch (1.0, i.e. no scaling, for equal shards and for one process).
        share = targets.shape[0] * world_size / batch_images

        def closure(objective=None):
            with parallel.pass_context():  # DDP's no_sync() for local ascent gradients, else nothing
                with autocast():
                    outputs = model_forward(inputs)
                outputs = outputs.float()  # loss (and any objective) in fp32
                loss = F.cross_entropy(outputs, targets, label_smoothing=label_smoothing)
                backward = loss if objective is None else objective(outputs, targets)
                backward = backward if share == 1.0 else backward * share
                # fp16: the scaler the minimizer holds; it unscales each pass and skips a non-finite step
                (backward if scaler is None else scaler.scale(backward)).backward()
            if not clean_outputs:  # the first call is the clean pass: it gives train accuracy
                clean_outputs.append(outputs.detach())
            return loss.detach()

        loss = minimizer.step(closure)  # the clean-pass loss
        if world_size == 1:
            stop_signals.check()  # a Python flag, not a host sync
        loss_sum += loss * targets.shape[0]
        correct += (clean_outputs[0].argmax(dim=1) == targets).sum()
        seen += batch_images
        if index % LOG_EVERY == 0 or index == num_batches:
            # Data-parallel ranks stop together: whether any rank got a stop signal travels with the sums.
            stop = torch.full((), float(world_size > 1 and stop_signals.signum is not None), device=device)
            totals = parallel.all_reduce_sum(torch.stack([loss_sum, correct.float(), stop]))
            loss_total, correct_total, stops = totals.tolist()
            if stops:
                bar.close()
                raise StopRequested(stop_signals.signum or signal.SIGTERM)
            if not math.isfinite(loss_total):
                bar.close()
                return loss_total / seen, 100.0 * correct_total / seen, time.perf_counter() - start, False
            elapsed = time.perf_counter() - start
            bar.update(seen - logged)
            logged = seen
            bar.set_postfix(loss=f"{loss_total / seen:.4f}", acc=f"{100.0 * correct_total / seen:.2f}%",
                            img_s=f"{seen / elapsed:.0f}")
    bar.close()
    return loss_total / seen, 100.0 * correct_total / seen, time.perf_counter() - start, True


@torch.no_grad()
def test_sums(model_forward, dataset, channels_last, autocast, parallel=SINGLE_PROCESS):
    """Summed test loss and correct count (this process's share of the test set) as device tensors,
    with no host read: callers that evaluate many times, like the noisy-weights analysis, read them
    once at the end. The model must be in eval mode."""
    device = dataset.test_labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for inputs, targets in data.test_batches(dataset, EVAL_BATCH_SIZE, channels_last,
                                             parallel.rank, parallel.world_size):
        with autocast():
            outputs = model_forward(inputs)
        outputs = outputs.float()
        loss_sum += F.cross_entropy(outputs, targets, reduction="sum")
        correct += (outputs.argmax(dim=1) == targets).sum()
    return loss_sum, correct


@torch.no_grad()
def evaluate(model_forward, model, dataset, channels_last, autocast, parallel=SINGLE_PROCESS):
    """(test loss, test acc %) of `model` (run through model_forward, the plain or compiled module,
    never the DDP one). In a data-parallel run every process evaluates its share of the test set
    with rank 0's buffers (BatchNorm running statistics, broadcast first) and the sums are added."""
    parallel.broadcast_buffers(model)
    model.eval()
    loss_sum, correct = test_sums(model_forward, dataset, channels_last, autocast, parallel)
    model.train()
    count = dataset.test_labels.shape[0]
    loss_total, correct_total = parallel.all_reduce_sum(torch.stack([loss_sum, correct.float()])).tolist()
    return loss_total / count, 100.0 * correct_total / count


def warmup_factor(warmup_epochs, epoch, index, num_batches):
    """Linear warm-up (--warmup_epochs W > 0): the rate of training step s (1-based, counted over the
    whole run) is multiplied by min(1, s / (W * batches per epoch)); None in epochs that start after
    the warm-up (or W = 0). A closed form of (epoch, batch index), so a resumed run gets the same rates."""
    warmup_steps = warmup_epochs * num_batches
    if warmup_steps <= 0 or (epoch - 1) * num_batches >= warmup_steps:
        return None
    return min(1.0, ((epoch - 1) * num_batches + index) / warmup_steps)


def alpha_columns(minimizer):
    """metrics.csv's adaptive-alpha columns (records.ALPHA_COLUMNS) for the epoch just trained: one
    host read per epoch; {} (empty cells) for minimizers without adaptive alpha."""
    pop = getattr(minimizer, "pop_alpha_statistics", None)
    stats = pop() if pop is not None else None
    if stats is None:
        return {}
    return {column: round(value, 6) for column, value in zip(records.ALPHA_COLUMNS, stats)}


def lr_schedule(settings):
    """LR factor after `epochs_done` epochs (LambdaLR's last_epoch), as a closed form so that a
    resumed run gets the same rates: multistep = MultiStepLR, cosine = CosineAnnealingLR(eta_min=0)."""
    milestones, gamma, epochs = sorted(settings.milestones), settings.gamma, settings.epochs
    if settings.schedule == "multistep":
        return lambda epochs_done: gamma ** bisect.bisect_right(milestones, epochs_done)
    return lambda epochs_done: 0.5 * (1.0 + math.cos(math.pi * min(epochs_done, epochs) / epochs))
