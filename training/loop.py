"""The training loop's machinery: one epoch of minimizer steps, evaluation, the LR schedule.

Shared by the training entry points; the loop that calls these stays visible in each script.
No host syncs inside a step: the loss and the correct count accumulate on the device and are
read every LOG_EVERY batches (and at the end), which is also where a non-finite loss is caught.
"""
import bisect
import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import data

LOG_EVERY = 20          # batches between reads of the loss (the only host syncs while training)
EVAL_BATCH_SIZE = 512   # evaluation batch size only changes speed, not results


def train_one_epoch(epoch, model_forward, minimizer, dataset, args, device, autocast):
    """One epoch, one minimizer.step per batch. Returns (loss, acc %, seconds, finite).

    Loss sum and correct count accumulate on the device; they are read (one host sync)
    every LOG_EVERY batches and at the end, which is also where a non-finite loss is caught."""
    minimizer.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = logged = 0
    num_batches = data.num_train_batches(dataset, args.batch_size)
    bar = tqdm(total=num_batches * args.batch_size if num_batches else 0, unit="img", unit_scale=True,
               leave=False, dynamic_ncols=True, disable=None, desc=f"epoch {epoch}/{args.epochs}")
    start = time.perf_counter()
    batches = data.train_batches(dataset, args.batch_size, args.seed, epoch, args.channels_last)
    for index, (inputs, targets) in enumerate(batches, start=1):
        clean_outputs = []

        def closure(objective=None):
            with autocast():
                outputs = model_forward(inputs)
            outputs = outputs.float()  # loss (and any objective) in fp32
            loss = F.cross_entropy(outputs, targets)
            (loss if objective is None else objective(outputs, targets)).backward()
            if not clean_outputs:  # the first call is the clean pass: it gives train accuracy
                clean_outputs.append(outputs.detach())
            return loss.detach()

        loss = minimizer.step(closure)  # the clean-pass loss
        loss_sum += loss * targets.shape[0]
        correct += (clean_outputs[0].argmax(dim=1) == targets).sum()
        seen += targets.shape[0]
        if index % LOG_EVERY == 0 or index == num_batches:
            loss_total, correct_total = torch.stack([loss_sum, correct.float()]).tolist()
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
def evaluate(model_forward, model, dataset, args, device, autocast):
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for inputs, targets in data.test_batches(dataset, EVAL_BATCH_SIZE, args.channels_last):
        with autocast():
            outputs = model_forward(inputs)
        outputs = outputs.float()
        loss_sum += F.cross_entropy(outputs, targets, reduction="sum")
        correct += (outputs.argmax(dim=1) == targets).sum()
    model.train()
    count = dataset.test_labels.shape[0]
    loss_total, correct_total = torch.stack([loss_sum, correct.float()]).tolist()
    return loss_total / count, 100.0 * correct_total / count


def lr_schedule(args):
    """LR factor after `epochs_done` epochs (LambdaLR's last_epoch), as a closed form so that a
    resumed run gets the same rates: multistep = MultiStepLR, cosine = CosineAnnealingLR(eta_min=0)."""
    milestones = sorted(args.milestones)
    if args.schedule == "multistep":
        return lambda epochs_done: args.gamma ** bisect.bisect_right(milestones, epochs_done)
    return lambda epochs_done: 0.5 * (1.0 + math.cos(math.pi * min(epochs_done, args.epochs) / args.epochs))
