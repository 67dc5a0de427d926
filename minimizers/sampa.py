"""SAMPa (Xie, Pethick & Cevher, NeurIPS 2024): SAM whose two gradients are independent.

The algorithm (paper, Algorithm 1; minibatch B_t):

    x~_t    = x_t + rho * grad f(y_t; B_t) / ||grad f(y_t; B_t)||
    y_{t+1} = x_t - eta_t * grad f(y_t; B_t)
    x_{t+1} = x_t - eta_t (1 - lambda) grad f(x~_t; B_t) - eta_t lambda grad f(y_{t+1}; B_{t+1})

grad f(x~_t; B_t) and grad f(y_{t+1}; B_{t+1}) only depend on x_t and grad f(y_t), so the authors
compute them on two GPUs at once (LIONS-EPFL/SAMPa, train.py, commit 01093ef: rank 0 the perturbed
pass on the previous batch, rank 1 the look-ahead pass on the current one).  On one device we compute
them one after the other, and to keep both gradients of a batch on that batch without holding on to
the previous batch, a ``step(closure)`` on minibatch B_t does (model holding x_{t-1} on entry,
gradients stored):

    1. y_t = the base optimizer's step from x_{t-1} with grad f(y_{t-1})  (optimizer state restored)
    2. pass 1: grad f(y_t; B_t)                                            (stored: used twice)
    3. x_t = base optimizer step from x_{t-1} with (1-lambda) grad f(x~_{t-1}) + lambda grad f(y_t)
    4. x~_t = x_t + rho grad f(y_t)/(||grad f(y_t)|| + 1e-12);  pass 2: grad f(x~_t; B_t)   (stored)
    5. the model holds x_t again.

This is Algorithm 1 exactly, every update delayed by one call: the update that uses grad f(x~_t; B_t)
needs grad f(y_{t+1}; B_{t+1}) from the next call.  The returned loss is the training loss at y_t.

First call (``first_step``).  "sgd" (default, the authors' train.py): their gradient buffers start at
zero, so their first iteration evaluates both passes at x_0 unperturbed and takes a plain base
optimizer step with grad f(x_0; B_0), which also serves as the first look-ahead gradient.  Here: pass 1
grad f(x_0; B_0), x_1 = base step with it, x~_1 = x_1 + rho grad f(x_0; B_0)/||.||, pass 2 on B_0; after
the call the model holds x_1 and every later call is the algorithm above, so after T calls the
parameters are those of their code after T iterations.  "paper": y_0 = x_0; the first call evaluates
grad f(x_0; B_0) and grad f(x~_0; B_0) and makes no update (a run stopped after T calls has applied T-1).

Momentum / weight decay.  Both y_{t+1} and x_{t+1} are steps of the *base optimizer* from x_t: x_{t+1}
a real step with the combined gradient; y_{t+1} a look-ahead step with grad f(y_t) whose effect on the
optimizer state (momentum buffers, step counts) is undone.  For SGD this is what their code does
(y = x - lr (g + wd x + momentum buf), the combined gradient handed to SGD); here it is generic for any
torch optimizer (the state is snapshotted).  The learning rate of both is the one in the optimizer at
the call that performs them (theirs: the same, read at the epoch start with a per-epoch scheduler).

BatchNorm (``bn_policy``).  "perturbed" (default): only the x~ pass updates the running statistics,
and on the first call with first_step="sgd" also pass 1 (their rank-0 pass at x_0).  That is their
model: rank 0 runs the perturbed passes, DDP broadcasts rank 0's buffers before every forward, and
rank 0's model is the one evaluated and saved.  Their rank 0 evaluates x~_{t+1} (on B_t) at iteration
t+1, we at call t, so after T calls our buffers are theirs after T iterations plus one perturbed pass.
"every": both passes update them; "clean": only the y pass (y is not a perturbed point).

Differences from their code, deliberate: grad f(y) is stored, so lambda = 0 works as in the paper
(their code recovers it as (aggregate - perturbed)/(lambda + 1e-15), which is zero at lambda = 0: no
perturbation, a plain SGD step with grad f(x~) = grad f(x)); the look-ahead includes weight decay on
the first look-ahead even without a momentum buffer (theirs omits both then; it only happens at their
first iteration, where the look-ahead gradient is zero).  Defaults: rho=0.1, lam=0.2 (their CIFAR
command and the paper's SAMPa-0.2).  No exact SAM special case (the ascent direction is grad f(y_t)).
"""
import copy

import torch

from .base import BN_FROZEN, BN_NORMAL, BN_POLICIES, Minimizer
from .checks import check_choice, check_number
from .gsam import EpsAscent

SAMPA_BN_POLICIES = (*BN_POLICIES, "perturbed")    # "perturbed": statistics of the x~ passes only
FIRST_STEPS = ("sgd", "paper")
SAMPA_EPS = 1e-12


class SAMPa(Minimizer):

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho=0.1, lam=0.2, first_step="sgd", bn_policy="perturbed",
                 eps=SAMPA_EPS):
        super().__init__(model, optimizer)
        self.bn_policy = check_choice("bn_policy", bn_policy, SAMPA_BN_POLICIES)
        self.ascent = EpsAscent(rho, eps)
        self.lam = check_number("lam", lam, low=0, high=1)
        self.first_step = check_choice("first_step", first_step, FIRST_STEPS)
        self.started = False
        self.grad_y = [torch.zeros_like(p) for p in self.params]        # grad f(y_t; B_t)
        self.grad_tilde = [torch.zeros_like(p) for p in self.params]    # grad f(x~_t; B_t), pending
        self.x_weights = [torch.empty_like(p) for p in self.params]

    def _step(self, closure):
        params = self.params
        with torch.no_grad():
            torch._foreach_copy_(self.x_weights, params)                 # x_{t-1}
            if self.started:
                self._lookahead_step(self.grad_y)                        # model at y_t
        sgd_start = not self.started and self.first_step == "sgd"
        loss = self._evaluate(closure, bn=self._y_bn(sgd_start))         # grad f(y_t; B_t)
        with torch.no_grad():
            index, _, grads = self._grads()
            torch._foreach_copy_([self.grad_y[i] for i in index], grads)
            torch._foreach_copy_(params, self.x_weights)
            if self.started:
                # (1 - lam) grad f(x~_{t-1}) + lam grad f(y_t)  ->  x_t
                torch._foreach_mul_(grads, self.lam)
                torch._foreach_add_(grads, [self.grad_tilde[i] for i in index], alpha=1.0 - self.lam)
            if self.started or sgd_start:                                # sgd_start: x_1 = step with grad f(x_0)
                self.optimizer.step()
                torch._foreach_copy_(self.x_weights, params)             # x_t
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

    def _y_bn(self, sgd_start):
        """BatchNorm mode of the y pass (pass 1)."""
        if self.bn_policy == "perturbed" and not sgd_start:
            return BN_FROZEN
        return BN_NORMAL

    def _perturbed_bn(self):
        return BN_FROZEN if self.bn_policy == "clean" else BN_NORMAL

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
    def _step_counters(self):
        return ("started",)

    def _step_tensors(self):          # both are read by the next step
        return [*self.grad_y, *self.grad_tilde]

    def _extra_state(self):
        return {"started": self.started,
                "grad_y": [t.clone() for t in self.grad_y],
                "grad_tilde": [t.clone() for t in self.grad_tilde]}

    def _load_extra_state(self, state):
        self.started = bool(state["started"])
        with torch.no_grad():
            torch._foreach_copy_(self.grad_y, state["grad_y"])
            torch._foreach_copy_(self.grad_tilde, state["grad_tilde"])
