"""Shared machinery of every minimizer: the closure protocol, BatchNorm policy, multi-tensor helpers.

A minimizer wraps a model and a *base optimizer* (a ``torch.optim`` optimizer over the model's
parameters, usually SGD with momentum and weight decay).  ``step(closure)`` evaluates the closure
as many times as the algorithm needs (zeroing gradients before each call) and lets the base
optimizer take its step(s).  Nothing in a step reads a tensor back to the host: norms, scales and
interpolation weights stay on the device, so on a GPU a step never stalls the CPU.
"""
import contextlib
import math

import torch
from torch.nn.modules.batchnorm import _BatchNorm

BN_POLICIES = ("every", "clean")

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


def check_rho(rho):
    if not isinstance(rho, (int, float)) or isinstance(rho, bool) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    return float(rho)


def check_eta(eta):
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    return float(eta)


def check_k(k):
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return k


def check_alpha(alpha, allow_adaptive=True):
    ok = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if ok and allow_adaptive and alpha == -1:
        return -1.0
    if not ok or not (0 < alpha <= 1):
        extra = " or -1 (adaptive)" if allow_adaptive else ""
        raise ValueError(f"alpha must be in (0, 1]{extra}, got {alpha!r}")
    return float(alpha)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


class Minimizer:
    """Base class.  Subclasses implement ``step(closure)`` and, if they keep weights, the state hooks.

    Attributes
    ----------
    model, optimizer : the wrapped model and base optimizer.
    params, param_names : the model's trainable parameters (``requires_grad``) and their names,
        in ``model.named_parameters()`` order.  Norms are taken over those that have a gradient.
    gradient_evaluations : closure calls per ``step`` (documentation and benchmarks).
    """

    gradient_evaluations = 1

    def __init__(self, model, optimizer, bn_policy="every"):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.bn_policy = check_choice("bn_policy", bn_policy, BN_POLICIES)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in named if id(p) not in optimized]
        if missing:
            raise ValueError(f"the base optimizer does not hold these trainable parameters: {', '.join(missing[:5])}")
        self.batchnorms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]

    # ----------------------------------------------------------------------------------- protocol
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self, closure):  # pragma: no cover - abstract
        raise NotImplementedError

    @contextlib.contextmanager
    def evaluation_weights(self):
        """Context in which the model holds the weights to evaluate (slow weights where there are any)."""
        yield self.model

    def state_dict(self):
        return {"base_optimizer": self.optimizer.state_dict(), "minimizer": self._extra_state()}

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict) or "base_optimizer" not in state_dict or "minimizer" not in state_dict:
            raise ValueError("not a minimizer state_dict (expected keys 'base_optimizer' and 'minimizer')")
        self.optimizer.load_state_dict(state_dict["base_optimizer"])
        self._load_extra_state(state_dict["minimizer"])

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

    def _init_previous_gradient(self):
        """Ascent rules whose descent direction depends on the gradient before the perturbation (GSAM)
        set ``needs_previous_gradient`` and provide ``descent_gradient(previous, grads)``; keep a buffer
        for that gradient.  Subclasses call this once ``self.ascent`` is set."""
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
        """One closure call: zero the gradients, run forward+backward under the given BatchNorm mode."""
        self.zero_grad()
        with torch.enable_grad(), self._bn_mode(bn):
            return closure() if objective is None else closure(objective)

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


def make_closure(model, criterion, inputs, targets):
    """The standard closure for ``Minimizer.step``: forward, loss, backward; returns the detached loss.

    Minimizers whose ascent needs another objective than the training loss (BiSAM) call
    ``closure(objective)``; the closure then back-propagates ``objective(outputs, targets)`` but still
    returns the training loss, so logging is the same for every minimizer.
    """
    def closure(objective=None):
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        (loss if objective is None else objective(outputs, targets)).backward()
        return loss.detach()
    return closure
