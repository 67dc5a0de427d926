"""fp16 mixed precision: a ``torch.amp.GradScaler`` attached to a minimizer (docs/fp16.md).

The closure back-propagates ``scaler.scale(loss)`` (the usual AMP idiom; Lightning's ``manual_backward``
and its automatic backward do it for you).  During ``step`` every gradient evaluation is unscaled on the
device right after its closure returns, before any norm, perturbation or descent reads it, and a
device-side ``found_inf`` collects whether any evaluation had a non-finite gradient.  At the end of the
step one host read of ``found_inf`` (what ``GradScaler.step`` reads too) decides: a finite step stands;
otherwise the snapshot taken at the start is put back, so the whole step is a no-op.  Then
``scaler.update()`` runs once, with that ``found_inf``: the scale backs off once per skipped step.

This module holds the scaler bookkeeping (``ScaledStep``) and the snapshot (``Snapshot``); the step
logic is ``Minimizer.step`` (minimizers/base.py).  The scaler's own state is read through
``GradScaler._get_scale_async`` and recorded through ``_per_optimizer_states``: what ``GradScaler.step``
itself uses (torch 2.x); ``tests/test_amp.py`` pins the behaviour.
"""
import copy
from collections import defaultdict

import torch
from torch.amp.grad_scaler import OptState


class ScaledStep:
    """The scaler's side of one minimizer step: the step's scale (constant during the step) and a
    device-side found_inf (0.0, or 1.0 once an evaluation had a non-finite gradient)."""

    def __init__(self, scaler, all_reduce=None):
        self.scaler = scaler
        self.all_reduce = all_reduce
        self.found_inf = {}     # device -> 0-dim float32 tensor
        self._scale = None
        self._inv_scale = {}    # device -> 1 / scale (computed in float64 then rounded, as GradScaler.unscale_)

    @property
    def scale(self):
        """The scale of this step (a 0-dim device tensor)."""
        if self._scale is None:
            scale = self.scaler._get_scale_async()
            if scale is None:
                raise RuntimeError("a GradScaler is attached to the minimizer, but the closure did not call "
                                   "scaler.scale(loss): back-propagate scaler.scale(loss) in the closure "
                                   "(see docs/fp16.md)")
            self._scale = scale
        return self._scale

    def _found(self, device):
        if device not in self.found_inf:
            self.found_inf[device] = torch.zeros((), dtype=torch.float32, device=device)
        return self.found_inf[device]

    def _inv(self, device):
        if device not in self._inv_scale:
            scale = self.scale
            inv = scale.reciprocal() if scale.device.type == "mps" else scale.double().reciprocal().float()
            self._inv_scale[device] = inv.to(device, non_blocking=True)
        return self._inv_scale[device]

    @torch.no_grad()
    def unscale_(self, grads):
        """Divide ``grads`` by the scale in place and fold any non-finite entry into found_inf (no host sync)."""
        groups = defaultdict(list)
        for g in grads:
            if g.is_sparse:
                raise ValueError("sparse gradients are not supported with a GradScaler")
            groups[(g.device, g.dtype)].append(g)
        for (device, _), group in groups.items():
            torch._amp_foreach_non_finite_check_and_unscale_(group, self._found(device), self._inv(device))

    @torch.no_grad()
    def check_finite(self, tensor):
        """Fold 'tensor has a non-finite entry' into found_inf (no host sync)."""
        found = self._found(tensor.device)
        torch.maximum(found, (~torch.isfinite(tensor)).any().to(found.dtype), out=found)

    def finish(self, optimizer):
        """Record found_inf for ``scaler.update()`` as GradScaler.step does; return whether the step must be
        undone.  The one host read of a scaled step (the read GradScaler.step makes)."""
        if not self.found_inf:       # no gradient at all (nothing was unscaled)
            self._found(self.scale.device)
        if self.all_reduce is not None:
            for found in self.found_inf.values():
                self.all_reduce(found)
        state = self.scaler._per_optimizer_states[id(optimizer)]
        state["found_inf_per_device"] = dict(self.found_inf)
        state["stage"] = OptState.STEPPED
        return bool(sum(v.item() for v in self.found_inf.values()))


def copies(tensors, cache=None, key=None):
    """Copies of ``tensors`` made by one multi-tensor copy.  With a ``cache`` (a dict) the copies are kept
    under ``key`` and reused by the next call with tensors of the same shapes: allocated once, not per step."""
    sources = tuple(map(id, tensors))           # the same tensors as last time: the same copies fit
    hit = None if cache is None else cache.get(key)
    if hit is not None and hit[0] == sources:
        out = hit[1]
    else:
        out = [torch.empty_like(t) for t in tensors]
        if cache is not None:
            cache[key] = (sources, out, list(tensors))      # the sources held too: their ids stay theirs
    if out:
        torch._foreach_copy_(out, tensors)
    return out


class Snapshot:
    """What a step may change, taken before it: the model's weights (unless the minimizer keeps them
    anyway), the model's buffers, the base optimizer's state, and each minimizer's counters and
    persistent tensors (``Minimizer._step_state``).  ``restore()`` puts all of it back exactly.  The copies
    live in ``minimizer._snapshot_buffers`` between steps (allocated once)."""

    @torch.no_grad()
    def __init__(self, minimizer):
        self.minimizer = minimizer
        cache = minimizer._snapshot_buffers
        self.kept = minimizer._kept_weights()       # buffers that still hold the pre-step weights after a step
        self.weights = None if self.kept is not None else copies(minimizer.params, cache, "weights")
        self.buffers = [b for b in minimizer.model.buffers()]
        self.buffer_copies = copies(self.buffers, cache, "buffers")
        state = minimizer.base_optimizer.state
        self.base = []          # (param, None | {key: python value}, [keys of tensors], [tensor copies])
        live = []
        for p in minimizer.params:
            entry = state.get(p)
            if entry is None:
                self.base.append((p, None, [], None))
                continue
            keys = [k for k, v in entry.items() if torch.is_tensor(v)]
            values = {k: copy.deepcopy(v) for k, v in entry.items() if not torch.is_tensor(v)}
            self.base.append((p, values, keys, None))
            live.extend(entry[k] for k in keys)
        saved = iter(copies(live, cache, "base"))
        self.base = [(p, values, keys, None if values is None else [next(saved) for _ in keys])
                     for p, values, keys, _ in self.base]
        self.own = [(m, m._step_state()) for m in minimizer._members()]

    @torch.no_grad()
    def restore(self):
        m = self.minimizer
        torch._foreach_copy_(m.params, self.kept if self.kept is not None else self.weights)
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.buffer_copies)
        state = m.base_optimizer.state
        dst, src = [], []
        for p, values, keys, copies in self.base:
            if values is None:
                state.pop(p, None)
                continue
            live = state[p]
            for k in [k for k in live if k not in values and k not in keys]:
                del live[k]
            live.update(values)
            for k, saved in zip(keys, copies):
                current = live.get(k)
                if torch.is_tensor(current) and current.shape == saved.shape and current.dtype == saved.dtype \
                        and current.device == saved.device:
                    dst.append(current)
                    src.append(saved)
                else:
                    live[k] = saved.clone()     # not the snapshot buffer itself: it is reused
        if dst:
            torch._foreach_copy_(dst, src)
        for member, saved in self.own:
            member._load_step_state(saved)
