"""Bilateral SAM (Deng et al., 2024, "Bilateral Sharpness-Aware Minimization for Flatter Minima").

Three gradient evaluations per step on the same minibatch (the paper; the authors' code ajiaaa/BSAM,
bsam.py + train_bsam.py, commit c62a44f, with eps = 1e-12 as there):

    g0    = grad L(w)
    g_max = grad L(w + rho_max     * g0 / (||g0|| + eps))        (max-sharpness side, as SAM)
    g_min = grad L(w - rho_min(t)  * g0 / (||g0|| + eps))        (min-sharpness side)
    base optimizer step from w with  g_max + beta * (g0 - ||g_max|| / ||g_min|| * g_min)

(no guard on ||g_min||, as in their code).  rho_min(t) is annealed with the learning rate (their
ProportionScheduler, as in GSAM): rho_min(t) = rho_min * (lr_t - lr_min) / (lr_max - lr_min), lr_max =
initial lr, lr_min = 0 by default; ``anneal=False`` keeps rho_min fixed.  ``beta`` weighs the
min-sharpness term: 1 in the paper and their code; beta=0 is SAM (the third pass is then skipped).

``official_code=True`` reproduces their bsam.py exactly, where it departs from the paper:
  * the base step starts from the min point w - rho_min(t) g0/(||g0|| + eps), not from w: to_min_point
    restores the weights with ``p.data = old_p``, which makes the parameter share storage with the
    saved copy, so the following in-place ``p.sub_`` also moves the saved weights, and
    opt_max_min_step's ``p.data = old_p`` then "restores" the min point;
  * rho_min(t) = 0 on the first step: their ProportionScheduler is stepped once at construction and
    then reads the lr scheduler's last value, which before the first lr step is their
    CosineScheduler's ``init_value`` (0), while the optimizer's lr is already the initial lr.
We read both as accidents of the code (the paper restores w; the schedule is meant to follow the lr),
so the default follows the paper; the option is there to reproduce their numbers.

Defaults from their code (train_bsam.py): rho_max=0.05, rho_min=0.05 annealed to 0 with a learning
rate decayed to 0.  BatchNorm: their loop sets every BatchNorm momentum to 0 after the first pass and
restores it only at the next step, so both perturbed passes leave the running statistics alone: the
default is ``bn_policy="clean"``.
"""
import torch

from .base import Minimizer, global_norm
from .checks import check_bool, check_number
from .gsam import LRProportional

BSAM_EPS = 1e-12


class BilateralSAM(Minimizer):

    def __init__(self, model, optimizer, rho_max=0.05, rho_min=0.05, anneal=True, beta=1.0, lr_max=None,
                 lr_min=0.0, official_code=False, bn_policy="clean", eps=BSAM_EPS):
        super().__init__(model, optimizer, bn_policy)
        self.rho_max = check_number("rho_max", rho_max, low=0)
        self.rho_min = check_number("rho_min", rho_min, low=0)
        self.anneal = check_bool("anneal", anneal)
        self.official_code = check_bool("official_code", official_code)
        self.beta = check_number("beta", beta, low=0)
        self.eps = check_number("eps", eps, low=0)
        self.rho_min_schedule = LRProportional(self.rho_min, 0.0, lr_max, lr_min).bind(optimizer)
        self.unperturbed_weights = [torch.empty_like(p) for p in self.params]
        self.steps = 0

    @property
    def gradient_evaluations(self):
        return 2 if self.beta == 0.0 else 3

    def current_rho_min(self):
        if self.official_code and self.steps == 0:
            return 0.0
        return self.rho_min_schedule() if self.anneal else self.rho_min

    def _step(self, closure):
        # The gradient tensors of each pass are kept by reference (zero_grad only drops .grad).
        params = self.params
        loss = self._evaluate(closure)
        with torch.no_grad():
            index, perturbed, g0 = self._grads()
            norm0 = global_norm(g0) + self.eps
            torch._foreach_copy_(self.unperturbed_weights, params)
            torch._foreach_add_(perturbed, torch._foreach_mul(g0, self.rho_max / norm0))   # SAM's expression
        self._evaluate(closure, bn=self._perturbed_bn())
        if self.beta != 0.0:
            with torch.no_grad():
                _, _, g_max = self._grads()
                torch._foreach_copy_(params, self.unperturbed_weights)
                torch._foreach_add_(perturbed, torch._foreach_mul(g0, -self.current_rho_min() / norm0))
                if self.official_code:      # the saved weights moved with the parameters (aliasing)
                    torch._foreach_copy_(self.unperturbed_weights, params)
            self._evaluate(closure, bn=self._perturbed_bn())
            with torch.no_grad():
                _, _, g_min = self._grads()
                ratio = global_norm(g_max) / global_norm(g_min)
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
        self.steps += 1
        return loss

    def _kept_weights(self):      # official_code moves the saved weights to the min point
        return None if self.official_code else self.unperturbed_weights

    def _step_counters(self):
        return ("steps",)

    def _extra_state(self):
        return {"steps": self.steps}

    def _load_extra_state(self, state):
        self.steps = int(state.get("steps", 0))
