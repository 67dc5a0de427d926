"""Bilateral SAM (Deng et al., 2024, "Bilateral Sharpness-Aware Minimization for Flatter Minima").

Three gradient evaluations per step on the same minibatch:

    g0    = grad L(w)
    g_max = grad L(w + rho_max     * g0 / (||g0|| + 1e-16))        (max-sharpness side, as SAM)
    g_min = grad L(w - rho_min(t)  * g0 / (||g0|| + 1e-16))        (min-sharpness side)
    base optimizer step from w with  g_max + beta * (g0 - ||g_max|| / (||g_min|| + 1e-16) * g_min)

rho_min(t) is annealed with the learning rate (the authors' ProportionScheduler, as in GSAM):
rho_min(t) = rho_min * (lr_t - lr_min) / (lr_max - lr_min), lr_max = initial lr, lr_min = 0 by default;
``anneal=False`` keeps rho_min fixed.  ``beta`` weighs the min-sharpness term: 1 in the paper; beta=0
is SAM exactly (the third pass is then skipped: two evaluations).

Defaults from the authors' code (ajiaaa/BSAM, train_bsam.py): rho_max=0.05, rho_min=0.05 annealed to
0 with a learning rate decayed to 0.  BatchNorm: the pass at w follows the model's mode; the two
perturbed passes follow ``bn_policy`` (the authors freeze running statistics on both, i.e. "clean").
"""
import torch

from .base import Minimizer, check_rho, global_norm
from .gsam import LRProportional, check_nonneg


class BilateralSAM(Minimizer):

    def __init__(self, model, optimizer, rho_max=0.05, rho_min=0.05, anneal=True, beta=1.0, lr_max=None,
                 lr_min=0.0, bn_policy="every"):
        super().__init__(model, optimizer, bn_policy)
        self.rho_max = check_rho(rho_max)
        self.rho_min = check_rho(rho_min)
        if not isinstance(anneal, bool):
            raise ValueError(f"anneal must be True or False, got {anneal!r}")
        self.anneal = anneal
        self.beta = check_nonneg("beta", beta)
        self.rho_min_schedule = LRProportional(self.rho_min, 0.0, lr_max, lr_min).bind(optimizer)
        self.unperturbed_weights = [torch.empty_like(p) for p in self.params]

    @property
    def gradient_evaluations(self):
        return 2 if self.beta == 0.0 else 3

    def current_rho_min(self):
        return self.rho_min_schedule() if self.anneal else self.rho_min

    def step(self, closure=None):
        # The gradient tensors of each pass are kept by reference (zero_grad only drops .grad).
        params = self.params
        loss = self._evaluate(closure)
        with torch.no_grad():
            index, perturbed, g0 = self._grads()
            norm0 = global_norm(g0) + 1e-16
            torch._foreach_copy_(self.unperturbed_weights, params)
            torch._foreach_add_(perturbed, torch._foreach_mul(g0, self.rho_max / norm0))   # SAM's expression
        self._evaluate(closure, bn=self._perturbed_bn())
        if self.beta != 0.0:
            with torch.no_grad():
                _, _, g_max = self._grads()
                torch._foreach_copy_(params, self.unperturbed_weights)
                torch._foreach_add_(perturbed, torch._foreach_mul(g0, -self.current_rho_min() / norm0))
            self._evaluate(closure, bn=self._perturbed_bn())
            with torch.no_grad():
                _, _, g_min = self._grads()
                ratio = global_norm(g_max) / (global_norm(g_min) + 1e-16)
                # .grad <- g_max + beta * (g0 - ratio * g_min)
                torch._foreach_mul_(g_min, -ratio)
                torch._foreach_add_(g_min, g0)
                if self.beta != 1.0:
                    torch._foreach_mul_(g_min, self.beta)
                torch._foreach_add_(g_min, g_max)
        with torch.no_grad():
            torch._foreach_copy_(params, self.unperturbed_weights)
            self.optimizer.step()
        self.zero_grad()
        return loss
