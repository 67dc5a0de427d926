"""GSAM (Zhuang et al., ICLR 2022): surrogate-gap guided SAM.  Two gradient evaluations per step.

With g = grad L_B(w) and the radius rho_t of the current learning rate,

    eps   = rho_t * g / (||g|| + 1e-16)                      (the SAM ascent, same expression)
    g_p   = grad L_B(w + eps)
    g_perp = g - (<g, g_p> / (||g_p||^2 + 1e-16)) * g_p      (the part of g orthogonal to g_p)
    base optimizer step from w with the gradient  g_p - alpha_g * g_perp

rho_t follows the learning rate linearly (the GSAM code's ProportionScheduler):

    rho_t = rho_min + (rho_max - rho_min) * (lr_t - lr_min) / (lr_max - lr_min)

with lr_t = ``optimizer.param_groups[0]['lr']`` (a Python float: no host sync), lr_max the initial
learning rate (``param_groups[0]['initial_lr']`` once a torch LR scheduler has set it, else the lr
when the minimizer was built) and lr_min = 0 unless given.  A constant learning rate (lr_max <=
lr_min) gives rho_max.  alpha_g = 0 with rho_max = rho_min is SAM exactly (the decomposition is
skipped, the perturbation is the SAM expression), which the tests check bit for bit.

The orthogonal part uses the projection coefficient <g, g_p>/||g_p||^2; the GSAM code writes the same
quantity as cos(g, g_p) * ||g|| / ||g_p|| (its 1e-12 guards differ from our 1e-16 only in rounding).

Defaults (registry): rho_max=0.04, rho_min=0.02, alpha_g=0.01.  Source: the values a public PyTorch
reimplementation uses for ResNets (non-adaptive GSAM), which we read as the paper's ResNet/ImageNet
setting; not checked against the paper's table here.  The paper has no CIFAR setting for plain GSAM;
the authors' PyTorch CIFAR example (juntang-zhuang/GSAM, example/train.py) runs *adaptive* GSAM with
rho_max=rho_min=2.0, alpha=0.2 and a linearly decaying rho, an ASAM-style perturbation we do not
register.  Sweep rho_max/alpha_g for CIFAR.

The ascent rule ``GSAMAscent`` also plugs into ``Lookbehind`` (``Lookbehind_GSAM``): it sets
``needs_previous_gradient`` and provides ``descent_gradient(previous, grads)``, which Lookbehind
applies to every inner descent (previous = gradient at the point before that inner perturbation).
"""
import math

import torch

from .base import check_rho, global_norm, per_tensor_dots
from .sam import SAM, SAMAscent


def check_nonneg(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_optional_lr(name, value):
    if value is None:
        return None
    return check_nonneg(name, value)


class LRProportional:
    """value_t = low + (high - low) * (lr_t - lr_min) / (lr_max - lr_min), lr_t read from the optimizer.

    lr_max None: ``param_groups[0]['initial_lr']`` if a scheduler set it, else the lr at bind time."""

    def __init__(self, high, low, lr_max=None, lr_min=0.0):
        self.high, self.low = float(high), float(low)
        self.lr_max = check_optional_lr("lr_max", lr_max)
        self.lr_min = check_nonneg("lr_min", lr_min)
        self.optimizer = None
        self._bind_lr = None

    def bind(self, optimizer):
        self.optimizer = optimizer
        self._bind_lr = optimizer.param_groups[0]["lr"]
        return self

    def __call__(self):
        if self.optimizer is None or self.high == self.low:
            return self.high
        group = self.optimizer.param_groups[0]
        lr_max = self.lr_max if self.lr_max is not None else group.get("initial_lr", self._bind_lr)
        if not lr_max > self.lr_min:
            return self.high
        return self.low + (self.high - self.low) * (group["lr"] - self.lr_min) / (lr_max - self.lr_min)


class GSAMAscent(SAMAscent):
    """eps = rho_t g/(||g|| + 1e-16); descent direction g_p - alpha_g g_perp (see the module docstring)."""

    needs_previous_gradient = True      # per instance: False when alpha_g = 0 (plain SAM descent)

    def __init__(self, rho_max=0.04, rho_min=0.02, alpha_g=0.01, lr_max=None, lr_min=0.0):
        self.rho_max = check_rho(rho_max)
        self.rho_min = check_rho(rho_min)
        if self.rho_min > self.rho_max:
            raise ValueError(f"rho_min must be <= rho_max, got rho_min={rho_min!r} > rho_max={rho_max!r}")
        self.alpha_g = check_nonneg("alpha_g", alpha_g)
        self.needs_previous_gradient = self.alpha_g != 0.0
        self.schedule = LRProportional(self.rho_max, self.rho_min, lr_max, lr_min)

    @property
    def rho(self):
        """The radius of the current learning rate (rho_max until bound to an optimizer); read by
        SAMAscent.perturbation."""
        return self.schedule()

    def bind(self, optimizer):
        self.schedule.bind(optimizer)
        return self

    def descent_gradient(self, previous, grads):
        """g_p - alpha_g * g_perp for g = ``previous`` and g_p = ``grads`` (new tensors; inputs untouched)."""
        if self.alpha_g == 0.0:
            return list(grads)
        dot = per_tensor_dots(previous, grads).sum()
        coef = dot / (global_norm(grads) ** 2 + 1e-16)
        perp = torch._foreach_sub(previous, torch._foreach_mul(grads, coef))     # g - coef g_p
        torch._foreach_mul_(perp, -self.alpha_g)
        torch._foreach_add_(perp, grads)                                         # g_p - alpha g_perp
        return perp


class GSAM(SAM):
    """SAM step with the GSAM radius schedule and the decomposed descent gradient.  Two passes."""

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho_max=0.04, rho_min=0.02, alpha_g=0.01, lr_max=None, lr_min=0.0,
                 bn_policy="every"):
        ascent = GSAMAscent(rho_max, rho_min, alpha_g, lr_max, lr_min)
        super().__init__(model, optimizer, bn_policy=bn_policy, ascent=ascent)
        ascent.bind(optimizer)
        # The previous-gradient buffer and the decomposed descent come from Minimizer._descent_hook.
