"""One run on several processes: torchrun + DistributedDataParallel (DDP).

    torchrun --nproc_per_node=N example_cifar.py ...    # N GPUs (NCCL), or N CPU processes (gloo)

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
without them (plain `python example_cifar.py`) the run is a single process and nothing here
communicates. Semantics (see docs/ddp.md):

* --batch_size is the GLOBAL batch: each global batch of the epoch's permutation is cut into
  world_size contiguous shards, one per rank, so the ranks together see exactly the batches of a
  single-process run. --batch_size must be divisible by the number of processes; a final partial
  batch is split as evenly as possible and each rank's loss is weighted by its share of the
  batch, so the averaged gradient is the full batch's mean gradient exactly.
* --ascent_gradient global (default): every closure call runs forward and backward through DDP,
  so the ascent and the descent gradients are both averaged over the ranks: the single-GPU
  semantics of the paper at the same global batch.
* --ascent_gradient local: every closure call runs under DDP's no_sync() (forward AND backward),
  so each rank computes its perturbation from its own shard's gradient (m-sharpness with
  m = the per-rank batch, as google-research/sam does per device); the gradients are averaged
  over the ranks (one all_reduce) right before each base-optimizer step, so the descent uses the
  mean of the ranks' gradients, each taken at that rank's perturbed point, and the weights stay
  identical on all ranks. (A Lookbehind pass between two inner steps feeds both an ascent and a
  descent, so the local gradient must survive the backward: hence no_sync plus one explicit
  all_reduce, instead of DDP's own.)
* BatchNorm: without --sync_bn each rank normalises with its own shard's statistics (batch
  statistics over batch_size / world_size images); DDP's default broadcast_buffers copies rank 0's
  running statistics to every rank at the start of each synchronised forward pass, so the running
  statistics follow rank 0's shards; they are what checkpoint.pt stores and what evaluation uses
  (broadcast from rank 0 before each evaluation; with --ascent_gradient local no forward pass is
  synchronised, and the other ranks' running statistics are simply never used). --sync_bn converts BatchNorm to SyncBatchNorm:
  statistics over the whole global batch (the single-GPU semantics) at one extra all_reduce per
  BatchNorm layer per forward pass; torch supports SyncBatchNorm on GPUs only.
* Only rank 0 writes run records and checkpoints; every rank reads the checkpoint on --resume.
  Train loss/accuracy and test loss/accuracy are global values (all_reduce at the log points
  only: no host sync inside a step). Evaluation splits the test set over the ranks.
"""
import contextlib
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from .cli import UsageError, resolve_device

ASCENT_GRADIENTS = ("global", "local")


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the run (torchrun's environment); a single process by default."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def processes_from_environment(environ=None):
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", "1"))
    return Processes(rank=int(environ.get("RANK", "0")), world_size=world_size,
                     local_rank=int(environ.get("LOCAL_RANK", "0")),
                     local_world_size=int(environ.get("LOCAL_WORLD_SIZE", str(world_size))))


def check_gpu_count(processes_on_node, visible_gpus):
    """One process per GPU: UsageError when torchrun started more processes than there are GPUs."""
    if processes_on_node > visible_gpus:
        raise UsageError(f"torchrun started {processes_on_node} processes on this node but {visible_gpus} CUDA "
                         f"device(s) are visible; a data-parallel run uses one GPU per process: use "
                         f"--nproc_per_node {visible_gpus} or fewer (or --device cpu)")


def check_batch_size(batch_size, world_size):
    if batch_size % world_size:
        raise UsageError(f"--batch_size {batch_size} is the global batch and must be divisible by the "
                         f"{world_size} processes (e.g. --batch_size {batch_size - batch_size % world_size or world_size})")


class DataParallel:
    """The processes of one run. Built by start(); DataParallel() is the single process, where every
    method is a no-op, so the training loop is the same code for one process and for many."""

    def __init__(self, processes=Processes(), ascent_gradient="global"):
        self.processes = processes
        self.rank, self.world_size = processes.rank, processes.world_size
        self.is_main = processes.is_main
        self.local_ascent = ascent_gradient == "local" and processes.enabled
        self.ddp = None

    def wrap(self, model, sync_bn=False):
        """The module the closures call: DDP around `model` (same parameters) in a data-parallel run.
        Call before building the optimizer when sync_bn converts BatchNorm layers."""
        if not self.processes.enabled:
            return model
        device = next(model.parameters()).device
        # broadcast_buffers (DDP's default): rank 0's BatchNorm running statistics reach every rank at
        # each synchronised forward. gradient_as_bucket_view stays off: minimizers keep .grad tensors
        # of earlier passes by reference (Bilateral), which bucket views would overwrite.
        self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        return self.ddp

    def pass_context(self):
        """Context around one closure call (forward and backward): no_sync() for local ascent gradients."""
        return self.ddp.no_sync() if self.local_ascent and self.ddp is not None else contextlib.nullcontext()

    def average_gradients_before_step(self, optimizer):
        """Local ascent gradients: average .grad over the ranks right before every base-optimizer step."""
        if self.local_ascent:
            optimizer.register_step_pre_hook(self._average_gradients)

    def _average_gradients(self, optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = _flatten_dense_tensors(grads)  # one all_reduce for all gradients
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        torch._foreach_copy_(grads, list(_unflatten_dense_tensors(flat, grads)))

    def all_reduce_sum(self, tensor):
        """Sum `tensor` over the ranks (in place) and return it; a collective: every rank must call it."""
        if self.processes.enabled:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_buffers(self, model):
        """Give every rank rank 0's buffers (BatchNorm running statistics): what checkpoints hold."""
        if self.processes.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self):
        if self.processes.enabled:
            dist.barrier()


def close(synchronize=False):
    """Leave the process group, if this process joined one.

    synchronize=True (every rank returned normally from the run: completed or diverged, which all
    ranks decide together) first waits for all ranks, so that no rank tears down its connections while another
    still uses them (rank 0 writes the figure and summary after the last collective). gc.collect()
    then frees DDP's reducer, which sits in reference cycles with the model's gradient hooks and
    holds gloo work objects and tensors: left to the interpreter's own teardown, their destruction
    can abort the process ("terminate called without an active exception", SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


SINGLE_PROCESS = DataParallel()


def forwards(parallel, model, optimizer, compile=False):
    """(evaluation forward, training forward) of `model`. The minimizer holds the plain model (its parameters);
    a compiled module only runs forwards. In a data-parallel run the training closures call the DDP module
    around the same model (every backward averages the gradients over the processes; with a local ascent
    gradient one all_reduce before each base step instead) and evaluation calls the plain one."""
    model_forward = torch.compile(model) if compile else model
    train_forward = parallel.wrap(model)
    if train_forward is model:
        return model_forward, model_forward
    parallel.average_gradients_before_step(optimizer)  # --ascent_gradient local only
    return model_forward, (torch.compile(train_forward) if compile else train_forward)


def start(requested_device, ascent_gradient="global", sync_bn=False, environ=None):
    """Resolve this process's device and join torchrun's process group. Returns (device, DataParallel).

    NCCL on CUDA (rank r on cuda:LOCAL_RANK), gloo on the CPU; UsageError for more processes than GPUs,
    an MPS device or --sync_bn without CUDA."""
    processes = processes_from_environment(environ)
    device = resolve_device(requested_device)
    if not processes.enabled:
        return device, DataParallel(processes, ascent_gradient)
    if device.type == "cuda":
        check_gpu_count(processes.local_world_size, torch.cuda.device_count())
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"--device {device.type}: a data-parallel run uses CUDA (NCCL) or the CPU (gloo)")
    if sync_bn and device.type != "cuda":
        raise UsageError("--sync_bn needs CUDA: torch's SyncBatchNorm runs on GPUs only")
    dist.init_process_group(backend, rank=processes.rank, world_size=processes.world_size,
                            device_id=device if device.type == "cuda" else None)
    return device, DataParallel(processes, ascent_gradient)


def convert_sync_batchnorm(model, parallel, sync_bn):
    """SyncBatchNorm in place of BatchNorm for --sync_bn in a data-parallel run (else `model` as it is)."""
    if sync_bn and parallel.processes.enabled:
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model
