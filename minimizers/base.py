"""Shared machinery of every minimizer: the closure protocol, BatchNorm policy, multi-tensor helpers.

A minimizer wraps a model and a *base optimizer* (a ``torch.optim`` optimizer over the model's
parameters, usually SGD with momentum and weight decay).  ``step(closure)`` evaluates the closure
as many times as the algorithm needs (zeroing gradients before each call) and lets the base
optimizer take its step(s).  Nothing in a step reads a tensor back to the host: norms, scales and
interpolation weights stay on the device, so on a GPU a step never stalls the CPU.

fp16 mixed precision: ``attach_scaler(torch.amp.GradScaler(...))`` (or ``create(..., scaler=...)``); the
closure back-propagates ``scaler.scale(loss)``; each evaluation is unscaled on the device and a step with a
non-finite gradient in any evaluation is undone as a whole (minimizers/amp.py, docs/fp16.md).  Such a
step reads one flag back to the host, as ``GradScaler.step`` does.
"""
import contextlib
import copy

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from .amp import ScaledStep, Snapshot, copies
from .checks import check_choice, check_scaler

BN_POLICIES = ("every", "clean")

# The guard added to gradient norms before dividing by them (eps = rho g / (||g|| + NORM_EPS)): the
# value of the SAM/ASAM/Lookbehind reference code, so that their trajectories match ours exactly.
NORM_EPS = 1e-16

# Keys of Minimizer.state_dict() beside the base optimizer's standard "state" and "param_groups".
MINIMIZER_KEY = "minimizer"            # the minimizer's own buffers and counters
IDENTITY_KEY = "minimizer_identity"    # its kind and parameter shapes, checked by load_state_dict
SCALER_KEY = "grad_scaler"             # the attached GradScaler's state_dict (only when one is attached)

# BatchNorm handling of one forward pass (see ``Minimizer._bn_mode``).
BN_NORMAL = "normal"  # running statistics updated as usual
BN_FROZEN = "frozen"  # running statistics left untouched (the "clean pass only" policy)
BN_TWICE = "twice"    # update as if the pass had been run twice (one pass standing for two)


def global_norm(tensors):
    """L2 norm of the concatenation of ``tensors``, as a 0-dim device tensor (no host sync)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def per_tensor_dots(xs, ys):
    """<x_i, y_i> for each pair of tensors, as one 1-D device tensor (no host sync)."""
    return torch.stack([d.sum() for d in torch._foreach_mul(xs, ys)])


def _shared_with_base(name):
    """A torch.optim.Optimizer attribute that is the base optimizer's own object (not a copy).

    Before the base optimizer is bound (inside torch.optim.Optimizer.__init__) the value is kept
    aside and then discarded."""
    def get(self):
        base = self.__dict__.get("base_optimizer")
        return getattr(base, name) if base is not None else self.__dict__[f"_unbound_{name}"]

    def set(self, value):
        base = self.__dict__.get("base_optimizer")
        if base is None:
            self.__dict__[f"_unbound_{name}"] = value
        else:
            setattr(base, name, value)
    return property(get, set, doc=f"the base optimizer's ``{name}`` (shared, not copied)")


class Minimizer(torch.optim.Optimizer):
    """Base class: a ``torch.optim.Optimizer`` wrapping a model and its base optimizer.

    ``param_groups``, ``state`` and ``defaults`` *are* the base optimizer's (shared objects), so an LR
    scheduler, Lightning or any code that reads or changes ``minimizer.param_groups`` acts on the
    learning rate the base step uses.  Subclasses implement ``step(closure)`` and, if they keep
    weights or counters, ``_extra_state``/``_load_extra_state``.

    Attributes
    ----------
    model, base_optimizer : the wrapped model and base optimizer (``optimizer`` is an alias).
    params, param_names : the model's trainable parameters (``requires_grad``) and their names,
        in ``model.named_parameters()`` order.  Norms are taken over those that have a gradient.
    gradient_evaluations : closure calls per ``step`` (documentation and benchmarks).
    scaler : the attached ``torch.amp.GradScaler`` (fp16 mixed precision) or None; see ``attach_scaler``.
    """

    gradient_evaluations = 1
    scaler = None       # attach_scaler
    _all_reduce = None  # attach_scaler(..., all_reduce=)
    _amp = None         # the ScaledStep while a scaled step runs (set on every member: Lookahead's inner too)

    param_groups = _shared_with_base("param_groups")
    state = _shared_with_base("state")
    defaults = _shared_with_base("defaults")

    def __init__(self, model, optimizer, bn_policy="every"):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer) or isinstance(optimizer, Minimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer over the model's parameters (the base "
                             f"optimizer, e.g. SGD), got {type(optimizer).__name__}")
        self.bn_policy = check_choice("bn_policy", bn_policy, BN_POLICIES)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in named if id(p) not in optimized]
        if missing:
            raise ValueError(f"the base optimizer does not hold these trainable parameters of the model: "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        # torch.optim.Optimizer's bookkeeping (step/state-dict hooks, profiling); the groups it builds
        # here are dropped: from now on param_groups/state/defaults are the base optimizer's.
        super().__init__(self.params, {})
        for name in ("param_groups", "state", "defaults"):
            del self.__dict__[f"_unbound_{name}"]
        self.base_optimizer = optimizer
        self.model = model
        self.batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]

    @property
    def optimizer(self):
        """The base optimizer (alias of ``base_optimizer``)."""
        return self.base_optimizer

    def __getstate__(self):        # torch.optim.Optimizer pickles only defaults/state/param_groups
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"{type(self).__name__}({self.base_optimizer!r})"

    # ----------------------------------------------------------------------------------- protocol
    def add_param_group(self, param_group):
        if "base_optimizer" not in self.__dict__:     # torch.optim.Optimizer.__init__
            return super().add_param_group(param_group)
        raise ValueError("a minimizer cannot take new parameter groups: its buffers are sized when it is built; "
                         "give the base optimizer every parameter group before wrapping it")

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def attach_scaler(self, scaler, all_reduce=None):
        """Use ``scaler`` (a ``torch.amp.GradScaler``; None detaches) in every ``step``: the closure must then
        back-propagate ``scaler.scale(loss)``.  Each gradient evaluation is unscaled on the device before it is
        used; if any evaluation of a step has a non-finite gradient the whole step is undone (weights, model
        buffers, base optimizer state, this minimizer's buffers and counters as before it) and the scale backs
        off; ``step`` calls ``scaler.update()`` once per step (do not call ``scaler.step``/``update`` yourself).
        The scaler's state is saved in ``state_dict()`` and restored by ``load_state_dict``.  A disabled scaler
        (``GradScaler(enabled=False)``) leaves ``step`` as without one.

        ``all_reduce``: for data-parallel runs whose gradients are not all averaged by the backward (DDP
        no_sync passes): a callable that sums a tensor over the processes in place; it is applied to the
        step's found_inf before it is read, so that every process skips the same steps.  Returns self."""
        self.scaler = check_scaler(scaler, self.params)
        self._all_reduce = all_reduce if self.scaler is not None else None
        return self

    def step(self, closure=None):
        """One step of the algorithm: evaluates ``closure`` (zeroing gradients before each call) as many times as
        it needs and lets the base optimizer step.  Returns the closure's value at the first evaluation."""
        scaler = self.scaler
        if scaler is None or not scaler.is_enabled() or self._amp is not None:
            return self._step(closure)
        return self._scaled_step(closure, scaler)

    def _step(self, closure):  # pragma: no cover - abstract
        raise NotImplementedError

    def _scaled_step(self, closure, scaler):
        """``_step`` under the scaler: snapshot, step (each evaluation unscaled, found_inf gathered on the
        device), one host read of found_inf, restore if it is set, ``scaler.update()``."""
        scaled = ScaledStep(scaler, self._all_reduce)
        snapshot = Snapshot(self)
        members = self._members()
        for member in members:
            member._amp = scaled
        try:
            loss = self._step(closure)
        finally:
            for member in members:
                member._amp = None
        if scaled.finish(self):
            snapshot.restore()
        scaler.update()
        return loss

    def _members(self):
        """This minimizer and the minimizers it runs (Lookahead: its inner one): they share a scaled step."""
        return [self]

    def _kept_weights(self):
        """Buffers that hold the weights from before the step once ``_step`` has returned (SAM's unperturbed
        weights), so that a skipped scaled step needs no copy of its own; None: the snapshot copies them."""
        return None

    def _step_counters(self):
        """Names of the attributes (Python values, or tensors that a step replaces rather than modifies) that a
        step may change; a skipped scaled step puts them back."""
        return ()

    def _step_tensors(self):
        """Tensors that this step may modify in place and that a later step reads (copied before a scaled
        step, put back if it is skipped).  Called before the step: may depend on the counters."""
        return []

    @property
    def _snapshot_buffers(self):
        """The copies a scaled step takes (amp.Snapshot), kept between steps so they are allocated once."""
        return self.__dict__.setdefault("_snapshot_cache", {})

    def _step_state(self):
        counters = {name: copy.copy(getattr(self, name)) for name in self._step_counters()}
        tensors = self._step_tensors()
        return counters, tensors, copies(tensors, self._snapshot_buffers, "own")

    def _load_step_state(self, saved):
        counters, tensors, saved_tensors = saved
        for name, value in counters.items():
            setattr(self, name, value)
        if tensors:
            torch._foreach_copy_(tensors, saved_tensors)

    def _check_two_call_style(self):
        """The two-call style (ascent_step/descent_step after the caller's own backward) cannot unscale."""
        if self.scaler is not None and self.scaler.is_enabled() and self._amp is None:
            raise RuntimeError(f"{type(self).__name__}: with a GradScaler attached, use step(closure) (the two-call "
                               "style ascent_step/descent_step does not unscale the gradients)")

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Context in which the model holds the weights to evaluate (slow weights where there are any)."""
        yield self.model

    def state_dict(self):
        """The standard optimizer state_dict of the base optimizer (``state``, ``param_groups``) plus
        ``minimizer`` (this minimizer's buffers and counters) and ``minimizer_identity`` (what it is and
        the shapes of the parameters it holds, checked on loading)."""
        state = super().state_dict()    # torch's packing of the shared state/param_groups
        state[MINIMIZER_KEY] = self._extra_state()
        state[IDENTITY_KEY] = self._identity()
        if self.scaler is not None and self.scaler.is_enabled():
            state[SCALER_KEY] = self.scaler.state_dict()      # one host read (the scale): checkpoint time only
        return state

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()`` of the same minimizer on the same model (also the format before the
        minimizers were torch optimizers: ``{"base_optimizer": ..., "minimizer": ...}``).

        ValueError for anything else (another minimizer or model, not a minimizer state); then
        nothing is changed."""
        state_dict = _upgrade_state_dict(state_dict)
        identity = state_dict.get(IDENTITY_KEY)
        mine = self._identity()
        if identity is not None and identity.get("kind") != mine["kind"]:
            raise ValueError(f"this state_dict is from a {identity.get('kind')} minimizer, not {mine['kind']}")
        if identity is not None and [list(s) for s in identity.get("param_shapes", ())] != mine["param_shapes"]:
            raise ValueError("this state_dict is from another model: its parameter shapes differ from this model's")
        self._check_state_shapes(state_dict["state"], state_dict["param_groups"])
        saved = copy.deepcopy((super().state_dict(), self._extra_state()))
        try:
            self.base_optimizer.load_state_dict({"state": state_dict["state"],
                                                 "param_groups": state_dict["param_groups"]})
            self._load_extra_state(state_dict[MINIMIZER_KEY])
        except Exception as exc:  # put everything back: nothing half-loaded
            self.base_optimizer.load_state_dict(saved[0])
            self._load_extra_state(saved[1])
            raise ValueError(f"cannot load this minimizer state_dict: {type(exc).__name__}: {exc}") from None
        if SCALER_KEY in state_dict and self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state_dict[SCALER_KEY])

    def _identity(self):
        return {"kind": self._kind(), "param_shapes": [list(p.shape) for p in self.params]}

    def _kind(self):
        """What this minimizer is, for checking a state_dict: class, and ascent rule where there is one."""
        ascent = getattr(self, "ascent", None)
        return type(self).__name__ + (f"({type(ascent).__name__})" if ascent is not None else "")

    def _check_state_shapes(self, state, groups):
        """A per-parameter state tensor of more than one element must have its parameter's shape."""
        by_index = [p for group in self.param_groups for p in group["params"]]
        saved_index = [i for group in groups for i in group["params"]]
        if len(saved_index) != len(by_index):
            raise ValueError(f"this state_dict holds {len(saved_index)} parameters, the optimizer {len(by_index)}: "
                             "it is from another model or optimizer")
        position = {i: j for j, i in enumerate(saved_index)}
        for key, entry in state.items():
            if key not in position or not isinstance(entry, dict):
                continue
            param = by_index[position[key]]
            for name, value in entry.items():
                if torch.is_tensor(value) and value.numel() > 1 and value.shape != param.shape:
                    raise ValueError(f"this state_dict is from another model: its {name} of parameter {key} has "
                                     f"shape {tuple(value.shape)}, the parameter {tuple(param.shape)}")

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass

    # ------------------------------------------------------------------------------------ helpers
    def _grads(self):
        """(indices, params, grads) of the parameters that received a gradient in the last pass."""
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        return index, [self.params[i] for i in index], [self.params[i].grad for i in index]

    def _perturbation(self, rho=None):
        """(indices, params, eps) for the parameters with a gradient, from ``self.ascent`` (subclasses
        that perturb set it) applied to the gradients at the model's current point."""
        index, params, grads = self._grads()
        eps = self.ascent.perturbation([self.param_names[i] for i in index], params, grads, rho=rho)
        return index, params, eps

    def _set_ascent(self, ascent):
        """Use the ascent rule ``ascent`` (SAMAscent, ASAMAscent, GSAMAscent, ...): bind it to the base
        optimizer if it reads the learning rate (GSAM).  Ascent rules whose descent direction depends on
        the gradient before the perturbation (GSAM) set ``needs_previous_gradient`` and provide
        ``descent_gradient(previous, grads)``; keep a buffer for that gradient."""
        self.ascent = ascent
        if hasattr(ascent, "bind"):
            ascent.bind(self.base_optimizer)
        self.previous_grads = ([torch.empty_like(p) for p in self.params]
                               if getattr(self.ascent, "needs_previous_gradient", False) else None)

    def _remember_gradient(self):
        """Keep the gradient now in .grad (the point before the next perturbation) for _descent_hook."""
        if self.previous_grads is None:
            return
        index, _, grads = self._grads()
        torch._foreach_copy_([self.previous_grads[j] for j in index], grads)

    def _descent_hook(self, remember=False):
        """Replace .grad (gradient at the perturbed point) by ascent.descent_gradient(previous, grads);
        with ``remember``, the raw gradient becomes the previous one of the next inner step."""
        if self.previous_grads is None:
            return
        index, _, grads = self._grads()
        previous = [self.previous_grads[j] for j in index]
        descent = self.ascent.descent_gradient(previous, grads)
        if remember:
            torch._foreach_copy_(previous, grads)
        torch._foreach_copy_(grads, descent)

    def _evaluate(self, closure, bn=BN_NORMAL, objective=None):
        """One closure call: zero the gradients, run forward+backward under the given BatchNorm mode.
        In a scaled step the gradients are unscaled here, before anything reads them."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that runs forward and backward "
                             "(see minimizers.make_closure); it evaluates the gradient at several points. "
                             "(Under Lightning's precision='16-mixed' use the plugin "
                             "minimizers.lightning.MinimizerPrecision: docs/fp16.md)")
        self.zero_grad()
        with torch.enable_grad(), self._bn_mode(bn):
            loss = closure() if objective is None else closure(objective)
        if self._amp is not None:
            self._amp.unscale_([p.grad for p in self.params if p.grad is not None])
        return loss

    def _perturbed_bn(self):
        """BatchNorm mode of a pass at a perturbed point, following the policy."""
        return BN_FROZEN if self.bn_policy == "clean" else BN_NORMAL

    @contextlib.contextmanager
    def _bn_mode(self, mode):
        """Make one forward pass update BatchNorm running statistics normally, not at all, or twice.

        "twice": a pass at a point that the authors' loop evaluates twice in a row with the same
        batch sees identical batch statistics s both times, so the two updates
        r <- (1-m) r + m s compose to r <- (1-m)^2 r + (1-(1-m)^2) s: one update with momentum
        1-(1-m)^2, and num_batches_tracked advances by 2.
        "frozen": momentum 0 leaves the running statistics exactly as they were; the counter is
        put back so that it counts the passes that did update them.
        Only modules in training mode update statistics, so only they are touched.
        """
        modules = [m for m in self.batchnorms if m.training] if mode != BN_NORMAL else []
        saved = [m.momentum for m in modules]
        for m in modules:
            if m.momentum is None:
                raise ValueError("BatchNorm with momentum=None (cumulative average) cannot share passes; "
                                 "use passes='repeat'")
            m.momentum = 0.0 if mode == BN_FROZEN else 1.0 - (1.0 - m.momentum) ** 2
        try:
            yield
        finally:
            for m, momentum in zip(modules, saved):
                m.momentum = momentum
            if modules:
                counters = [m.num_batches_tracked for m in modules]
                torch._foreach_add_(counters, -1 if mode == BN_FROZEN else 1)


def make_closure(model, criterion, inputs, targets, scaler=None, autocast=None):
    """The standard closure for ``Minimizer.step``: forward, loss, backward; returns the detached loss.

    Minimizers whose ascent needs another objective than the training loss (BiSAM) call
    ``closure(objective)``; the closure then back-propagates ``objective(outputs, targets)`` but still
    returns the training loss, so logging is the same for every minimizer.

    fp16: ``scaler`` (the GradScaler attached to the minimizer) makes it back-propagate
    ``scaler.scale(...)``; ``autocast`` (a context manager factory, e.g.
    ``lambda: torch.autocast("cuda", dtype=torch.float16)``) wraps the forward pass and the loss.
    """
    def closure(objective=None):
        with (autocast() if autocast is not None else contextlib.nullcontext()):
            outputs = model(inputs)
            loss = criterion(outputs, targets)
            backward = loss if objective is None else objective(outputs, targets)
        (backward if scaler is None else scaler.scale(backward)).backward()
        return loss.detach()
    return closure


def _upgrade_state_dict(state_dict):
    """A Minimizer state_dict in the current shape; the earlier {"base_optimizer", "minimizer"} shape is
    converted.  ValueError if it is neither."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"not a minimizer state_dict (got {type(state_dict).__name__})")
    if "base_optimizer" in state_dict and MINIMIZER_KEY in state_dict and "state" not in state_dict:
        base = state_dict["base_optimizer"]
        if not isinstance(base, dict) or "state" not in base or "param_groups" not in base:
            raise ValueError("not a minimizer state_dict: 'base_optimizer' is not an optimizer state_dict")
        return {"state": base["state"], "param_groups": base["param_groups"], MINIMIZER_KEY: state_dict[MINIMIZER_KEY]}
    missing = [key for key in ("state", "param_groups", MINIMIZER_KEY) if key not in state_dict]
    if missing:
        hint = " (a plain optimizer's state_dict? load it into minimizer.base_optimizer)" \
            if missing == [MINIMIZER_KEY] else ""
        raise ValueError(f"not a minimizer state_dict: no {', '.join(map(repr, missing))}{hint}")
    return state_dict
