"""SAMPa (Xie, Pethick & Cevher, NeurIPS 2024): SAM whose two gradients are independent.

The algorithm (paper, Algorithm 1; minibatch B_t):

    x~_t    = x_t + rho * grad f(y_t; B_t) / ||grad f(y_t; B_t)||
    y_{t+1} = x_t - eta_t * grad f(y_t; B_t)
    x_{t+1} = x_t - eta_t (1 - lambda) grad f(x~_t; B_t) - eta_t lambda grad f(y_{t+1}; B_{t+1})

with y_0 = x_0.  grad f(x~_t; B_t) and grad f(y_{t+1}; B_{t+1}) only depend on x_t and grad f(y_t), so
the authors compute them on two GPUs at once.  On one device we compute them one after the other,
and to keep both gradients of a batch on that batch without holding on to the previous batch, a
``step(closure)`` on minibatch B_t does (model holding x_{t-1} on entry, gradients stored):

    1. y_t = the base optimizer's step from x_{t-1} with grad f(y_{t-1})  (optimizer state restored)
    2. pass 1: grad f(y_t; B_t)                                            (stored: used twice)
    3. x_t = base optimizer step from x_{t-1} with (1-lambda) grad f(x~_{t-1}) + lambda grad f(y_t)
    4. x~_t = x_t + rho grad f(y_t)/(||grad f(y_t)|| + 1e-16);  pass 2: grad f(x~_t; B_t)   (stored)
    5. the model holds x_t again.

This is Algorithm 1 exactly, every update delayed by one call: after the call on B_t the model holds
x_t (the update that uses grad f(x~_t; B_t) needs grad f(y_{t+1}; B_{t+1}) from the next call).  The
first call has no pending update and y_0 = x_0, so it evaluates grad f(x_0; B_0) and grad f(x~_0; B_0).
Two gradient evaluations per step, both on the step's minibatch.  grad f(y) is stored explicitly, so
lambda = 0 works (the authors' two-GPU code recovers it as (aggregate - perturbed)/lambda).
The returned loss is the training loss at y_t (pass 1).  A run stopped after T calls has applied T-1
updates (the last pending gradient is kept in ``state_dict`` and applied by the next call).

Momentum / weight decay.  Both y_{t+1} and x_{t+1} are steps of the *base optimizer* from x_t: x_{t+1}
a real step with the combined gradient (1-lambda) grad f(x~_t) + lambda grad f(y_{t+1}); y_{t+1} a
look-ahead step with grad f(y_t) whose effect on the optimizer state (momentum buffers, step counts)
is undone.  For SGD this is what the authors' code does (y = x - lr (g + wd x + momentum buf), the
combined gradient handed to SGD); it is generic for any torch optimizer (the state is snapshotted).
The learning rate of both is the one in the optimizer at the call that performs them.

BatchNorm: the y pass updates running statistics; the x~ pass follows ``bn_policy`` (frozen with
"clean").  Defaults: rho=0.1, lam=0.2 (the authors' CIFAR command and the paper's SAMPa-0.2).
There is no exact SAM special case (the ascent direction is grad f(y_t), not grad f(x_t)); rho=0 and
lam=0 is the base optimizer delayed by one call, which the tests check exactly.
"""
import copy

import torch

from .base import BN_NORMAL, Minimizer, check_rho
from .sam import SAMAscent


def check_lam(lam):
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not (0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    return float(lam)


class SAMPa(Minimizer):

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho=0.1, lam=0.2, bn_policy="every"):
        super().__init__(model, optimizer, bn_policy)
        self.ascent = SAMAscent(check_rho(rho))
        self.lam = check_lam(lam)
        self.started = False
        self.grad_y = [torch.zeros_like(p) for p in self.params]        # grad f(y_t; B_t)
        self.grad_tilde = [torch.zeros_like(p) for p in self.params]    # grad f(x~_t; B_t), pending
        self.x_weights = [torch.empty_like(p) for p in self.params]

    def step(self, closure=None):
        params = self.params
        with torch.no_grad():
            torch._foreach_copy_(self.x_weights, params)                 # x_{t-1}
            if self.started:
                self._lookahead_step(self.grad_y)                        # model at y_t
        loss = self._evaluate(closure, bn=BN_NORMAL)                     # grad f(y_t; B_t)
        with torch.no_grad():
            index, _, grads = self._grads()
            torch._foreach_copy_([self.grad_y[i] for i in index], grads)
            if self.started:
                torch._foreach_copy_(params, self.x_weights)
                # (1 - lam) grad f(x~_{t-1}) + lam grad f(y_t)  ->  x_t
                torch._foreach_mul_(grads, self.lam)
                torch._foreach_add_(grads, [self.grad_tilde[i] for i in index], alpha=1.0 - self.lam)
                self.optimizer.step()
                torch._foreach_copy_(self.x_weights, params)             # x_t
            else:
                torch._foreach_copy_(params, self.x_weights)
            self.zero_grad()
            grad_y = [self.grad_y[i] for i in index]
            eps = self.ascent.perturbation([self.param_names[i] for i in index], [params[i] for i in index], grad_y)
            torch._foreach_add_([params[i] for i in index], eps)         # x~_t
        self._evaluate(closure, bn=self._perturbed_bn())                 # grad f(x~_t; B_t)
        with torch.no_grad():
            index, _, grads = self._grads()
            torch._foreach_copy_([self.grad_tilde[i] for i in index], grads)
            torch._foreach_copy_(params, self.x_weights)                 # x_t
        self.zero_grad()
        self.started = True
        return loss

    @torch.no_grad()
    def _lookahead_step(self, grads):
        """Move the model from x to the base optimizer's step with ``grads``; leave the optimizer state as it was."""
        state = self.optimizer.state
        saved = []
        for p in self.params:
            entry = state[p] if p in state else None
            saved.append(None if entry is None else
                         {k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) for k, v in entry.items()})
        for p, g in zip(self.params, grads):
            p.grad = g.clone()
        self.optimizer.step()
        self.zero_grad()
        for p, entry in zip(self.params, saved):
            if entry is None:
                state.pop(p, None)
                continue
            live = state[p]
            for k in [k for k in live if k not in entry]:
                del live[k]
            for k, v in entry.items():
                current = live.get(k)
                if torch.is_tensor(v) and torch.is_tensor(current) and current.shape == v.shape:
                    current.copy_(v)
                else:
                    live[k] = v

    # ------------------------------------------------------------------------------------- state
    def _extra_state(self):
        return {"started": self.started,
                "grad_y": [t.clone() for t in self.grad_y],
                "grad_tilde": [t.clone() for t in self.grad_tilde]}

    def _load_extra_state(self, state):
        self.started = bool(state["started"])
        with torch.no_grad():
            torch._foreach_copy_(self.grad_y, state["grad_y"])
            torch._foreach_copy_(self.grad_tilde, state["grad_tilde"])
