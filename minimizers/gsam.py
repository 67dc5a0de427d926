"""GSAM (Zhuang et al., ICLR 2022): surrogate-gap guided SAM.  Two gradient evaluations per step.

The step of the authors' code (juntang-zhuang/GSAM, gsam/gsam.py, commit a770275), with
g = grad L_B(w), the radius rho_t of the current learning rate and eps = 1e-12 (their ``perturb_eps``):

    e      = rho_t * g / (||g|| + eps)
    g_p    = grad L_B(w + e)                                   (BatchNorm statistics frozen)
    cos    = <g, g_p> / (||g_p|| ||g|| + eps)
    g_perp = g - cos * ||g|| * g_p / (||g_p|| + eps)           (the part of g orthogonal to g_p)
    base optimizer step from w with the gradient  g_p - alpha_g * g_perp

rho_t follows the learning rate linearly (their ProportionScheduler):

    rho_t = rho_min + (rho_max - rho_min) * (lr_t - lr_min) / (lr_max - lr_min)

with lr_t = ``optimizer.param_groups[0]['lr']`` (a Python float: no host sync), lr_max the initial
learning rate (``param_groups[0]['initial_lr']`` once a torch LR scheduler has set it, else the lr
when the minimizer was built) and lr_min = 0 unless given.  A constant learning rate (lr_max <=
lr_min) gives rho_max.  Their ProportionScheduler reads the lr of a torch scheduler the same way;
with their own CosineScheduler its very first value is the scheduler's ``init_value`` (0), so their
example's first step uses rho_min (no effect there: rho_max = rho_min = 2.0).

BatchNorm: their step sets every BatchNorm momentum to 0 for the perturbed pass, so the default is
``bn_policy="clean"``.  (momentum 0 still advances ``num_batches_tracked``; ours counts only the
passes that update the statistics, which matters only for momentum=None, refused here.)

alpha_g = 0 skips the decomposition; with rho_max = rho_min and ``eps=1e-16`` it is SAM bit for bit
(tested).  ``eps`` is a constructor argument of ``GSAM``/``GSAMAscent``, not a registry hyperparameter.

Defaults (registry): rho_max=0.04, rho_min=0.02, alpha_g=0.01: the values a public PyTorch
reimplementation uses for ResNets (non-adaptive GSAM), which we read as the paper's ResNet/ImageNet
setting; not checked against the paper's table here.  The paper has no CIFAR setting for plain GSAM.
The authors' CIFAR example (example/train.py) runs *adaptive* GSAM (``--adaptive`` defaults to True:
e = rho_t w^2 g / (||w g|| + eps)) with alpha = 0.4 and rho_max = rho_min = 2.0, i.e. a constant rho
under a cosine learning rate: ``adaptive_perturbation=True`` here (w^2 and |w| on every parameter, biases and
BatchNorm included, no eta: theirs, unlike ASAM).  Sweep rho_max/alpha_g for non-adaptive CIFAR runs.

The ascent rule ``GSAMAscent`` also plugs into ``Lookbehind`` (``Lookbehind_GSAM``): it sets
``needs_previous_gradient`` and provides ``descent_gradient(previous, grads)``, which Lookbehind
applies to every inner descent (previous = gradient at the point before that inner perturbation).
"""
import torch

from .base import global_norm, per_tensor_dots
from .checks import check_bool, check_number
from .sam import SAM, SAMAscent


class LRProportional:
    """value_t = low + (high - low) * (lr_t - lr_min) / (lr_max - lr_min), lr_t read from the optimizer.

    lr_max None: ``param_groups[0]['initial_lr']`` if a scheduler set it, else the lr at bind time."""

    def __init__(self, high, low, lr_max=None, lr_min=0.0):
        self.high, self.low = float(high), float(low)
        self.lr_max = check_number("lr_max", lr_max, low=0, optional=True)
        self.lr_min = check_number("lr_min", lr_min, low=0)
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


class EpsAscent(SAMAscent):
    """SAM's ascent e = rho g / (||g|| + eps) with the guard ``eps`` of a variant's official code
    (SAM itself keeps 1e-16; GSAM, BiSAM and SAMPa use 1e-12, SSAM 1e-7)."""

    def __init__(self, rho, eps):
        super().__init__(rho)
        self.eps = check_number("eps", eps, low=0)

    def perturbation(self, names, params, grads, rho=None):
        scale = (self.rho if rho is None else rho) / (global_norm(grads) + self.eps)
        return torch._foreach_mul(grads, scale)


GSAM_EPS = 1e-12     # the authors' perturb_eps (perturbation and decomposition denominators)


class GSAMAscent(EpsAscent):
    """e = rho_t g/(||g|| + eps); descent direction g_p - alpha_g g_perp (see the module docstring)."""

    needs_previous_gradient = True      # per instance: False when alpha_g = 0 (plain SAM descent)

    def __init__(self, rho_max=0.04, rho_min=0.02, alpha_g=0.01, lr_max=None, lr_min=0.0, eps=GSAM_EPS,
                 adaptive_perturbation=False):
        self.rho_max = check_number("rho_max", rho_max, low=0)
        self.rho_min = check_number("rho_min", rho_min, low=0)
        if self.rho_min > self.rho_max:
            raise ValueError(f"rho_min must be <= rho_max, got rho_min={rho_min!r} > rho_max={rho_max!r}")
        self.alpha_g = check_number("alpha_g", alpha_g, low=0)
        self.needs_previous_gradient = self.alpha_g != 0.0
        self.schedule = LRProportional(self.rho_max, self.rho_min, lr_max, lr_min)
        self.eps = check_number("eps", eps, low=0)      # rho is a property (the schedule): no super().__init__
        self.adaptive_perturbation = check_bool("adaptive_perturbation", adaptive_perturbation)

    def perturbation(self, names, params, grads, rho=None):
        """rho_t g/(||g|| + eps); adaptive_perturbation: rho_t w^2 g/(|| |w| g || + eps) on every parameter (theirs)."""
        if not self.adaptive_perturbation:
            return super().perturbation(names, params, grads, rho)
        scaled = torch._foreach_mul(grads, torch._foreach_abs(params))                  # |w| g
        scale = (self.rho if rho is None else rho) / (global_norm(scaled) + self.eps)
        eps = torch._foreach_mul(grads, scale)
        torch._foreach_mul_(eps, torch._foreach_mul(params, params))                     # * w^2
        return eps

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
        norm_p, norm = global_norm(grads), global_norm(previous)
        cosine = dot / (norm_p * norm + self.eps)
        coef = cosine * norm / (norm_p + self.eps)                               # the authors' expression
        perp = torch._foreach_sub(previous, torch._foreach_mul(grads, coef))     # g - coef g_p
        torch._foreach_mul_(perp, -self.alpha_g)
        torch._foreach_add_(perp, grads)                                         # g_p - alpha g_perp
        return perp


class GSAM(SAM):
    """SAM step with the GSAM radius schedule and the decomposed descent gradient.  Two passes."""

    gradient_evaluations = 2

    def __init__(self, model, optimizer, ascent=None, bn_policy="clean", **ascent_hparams):
        """``ascent``: a GSAMAscent, or None to build one from ``ascent_hparams`` (rho_max, rho_min, alpha_g,
        lr_max, lr_min, eps, adaptive_perturbation: GSAMAscent's keywords, whose signature holds their defaults)."""
        if ascent is None:
            ascent = GSAMAscent(**ascent_hparams)
        elif ascent_hparams:
            raise ValueError(f"pass either an ascent rule or its hyperparameters, not both ({', '.join(ascent_hparams)})")
        # _set_ascent binds it to the optimizer's lr; the previous-gradient buffer and the decomposed
        # descent come from Minimizer._descent_hook.
        super().__init__(model, optimizer, ascent=ascent, bn_policy=bn_policy)
