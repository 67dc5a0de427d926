"""Lookahead (Zhang et al., 2019) around any inner minimizer (SGD, SAM, ASAM, ...).

Each ``step`` is one inner-minimizer step on the current minibatch (the fast weights, held by the
model).  Every k steps: slow <- slow + alpha (fast - slow), fast <- slow.  Evaluation uses the slow
weights (``evaluation_weights()``).  Extra memory: one buffer of slow weights.
"""
import contextlib

import torch

from .base import Minimizer
from .checks import check_alpha, check_int


class Lookahead(Minimizer):
    def __init__(self, model, optimizer, inner, k=5, alpha=0.5):
        super().__init__(model, optimizer, inner.bn_policy)
        if inner.model is not model or inner.optimizer is not optimizer:
            raise ValueError("the inner minimizer must wrap the same model and optimizer")
        self.inner = inner
        self.k = check_int("k", k, minimum=1)
        self.alpha = check_alpha(alpha, allow_adaptive=False)
        self.slow_weights = [p.detach().clone() for p in self.params]
        self.fast_steps = 0   # inner steps since the last synchronisation

    @property
    def gradient_evaluations(self):
        return self.inner.gradient_evaluations

    def _step(self, closure):
        if self.fast_steps == 0:
            # The model holds the slow weights right after a synchronisation; read them here so that
            # weights loaded into the model after construction are respected.
            with torch.no_grad():
                torch._foreach_copy_(self.slow_weights, self.params)
        loss = self.inner.step(closure)
        self.fast_steps += 1
        if self.fast_steps == self.k:
            with torch.no_grad():
                torch._foreach_lerp_(self.slow_weights, self.params, self.alpha)
                torch._foreach_copy_(self.params, self.slow_weights)
            self.fast_steps = 0
        return loss

    @contextlib.contextmanager
    def evaluation_weights(self):
        if self.fast_steps == 0:
            yield self.model
            return
        with torch.no_grad():
            fast = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.slow_weights)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, fast)

    def _kind(self):
        return f"Lookahead({self.inner._kind()})"

    def _members(self):
        return [self, *self.inner._members()]

    def _kept_weights(self):
        return self.inner._kept_weights()

    def _step_counters(self):
        return ("fast_steps",)

    def _step_tensors(self):
        # The slow weights change in place only at a synchronisation; when fast_steps is 0 the step rereads them.
        return self.slow_weights if self.fast_steps != 0 and self.fast_steps + 1 == self.k else []

    def _extra_state(self):
        state = {"fast_steps": self.fast_steps, "inner": self.inner._extra_state()}
        if self.fast_steps != 0:
            state["slow_weights"] = [t.clone() for t in self.slow_weights]
        return state

    def _load_extra_state(self, state):
        self.fast_steps = int(state["fast_steps"])
        self.inner._load_extra_state(state["inner"])
        if self.fast_steps != 0:
            with torch.no_grad():
                torch._foreach_copy_(self.slow_weights, state["slow_weights"])
