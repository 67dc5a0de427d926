"""SGD, SAM and ASAM, and the ascent rules that Lookbehind and Multistep reuse.

An *ascent rule* turns the gradient at the current point into the perturbation epsilon:

* SAM  (Foret et al., 2021):  eps = rho * g / (||g|| + 1e-16)
* ASAM (Kwon et al., 2021):   T = |w| + eta for every parameter whose name contains "weight"
  (conv, linear and BatchNorm weights; not biases), T = 1 otherwise;
  eps = rho * T^2 g / (||T g|| + 1e-16), the norm mixing T g for weights and g for the rest.

These are the semantics of the ASAM/Lookbehind reference code (the 1e-16 included).
"""
import torch

from .base import NORM_EPS, Minimizer, global_norm
from .checks import check_number


class SAMAscent:
    """eps = rho * g / (||g|| + 1e-16)."""

    def __init__(self, rho=0.05):
        self.rho = check_number("rho", rho, low=0)

    def perturbation(self, names, params, grads, rho=None):
        """The perturbation for ``params`` (a list aligned with them), on the device."""
        scale = (self.rho if rho is None else rho) / (global_norm(grads) + NORM_EPS)
        return torch._foreach_mul(grads, scale)


class ASAMAscent:
    """eps = rho * T^2 g / (||T g|| + 1e-16) with T = |w| + eta on parameters named '*weight*'."""

    def __init__(self, rho=0.5, eta=0.01):
        self.rho = check_number("rho", rho, low=0)
        self.eta = check_number("eta", eta, low=0)

    def perturbation(self, names, params, grads, rho=None):
        is_weight = ["weight" in n for n in names]
        w_params = [p for p, w in zip(params, is_weight) if w]
        w_grads = [g for g, w in zip(grads, is_weight) if w]
        other_grads = [g for g, w in zip(grads, is_weight) if not w]
        scale_t = torch._foreach_abs(w_params)
        torch._foreach_add_(scale_t, self.eta)
        scaled = list(torch._foreach_mul(w_grads, scale_t))                   # T g
        scale = (self.rho if rho is None else rho) / (global_norm([*scaled, *other_grads]) + NORM_EPS)
        torch._foreach_mul_(scaled, scale_t)                                   # T^2 g
        torch._foreach_mul_(scaled, scale)
        w_eps, other_eps = iter(scaled), iter(torch._foreach_mul(other_grads, scale) if other_grads else [])
        return [next(w_eps) if w else next(other_eps) for w in is_weight]


class SGD(Minimizer):
    """The base optimizer alone behind the minimizer interface (one gradient evaluation)."""

    gradient_evaluations = 1

    def _step(self, closure):
        loss = self._evaluate(closure)
        self.optimizer.step()
        self.zero_grad()
        return loss


class SAM(Minimizer):
    """Sharpness-aware minimization with a pluggable ascent rule (``SAMAscent`` by default; ASAM, GSAM
    and the SAM-family variants plug in theirs).

    ``step(closure)``: gradient at w, perturb to w + eps, gradient there, restore w exactly, base
    optimizer step with the perturbed gradient.  Two gradient evaluations.  Written once; variants
    change it through the hooks ``_ascent_pass`` (the first pass: BiSAM's surrogate, SSAM's mask
    updates), ``_shape_perturbation`` (SSAM's mask), ``_after_perturbation`` (SSAM-D's mask update)
    and ``_end_step`` (SSAM-F's Fisher pass, counters).

    The authors' two-call style is available as well::

        loss_fn(model(x), y).backward(); sam.ascent_step()
        loss_fn(model(x), y).backward(); sam.descent_step()
    """

    gradient_evaluations = 2

    def __init__(self, model, optimizer, ascent=None, bn_policy="every"):
        super().__init__(model, optimizer, bn_policy)
        self._set_ascent(ascent if ascent is not None else SAMAscent())
        self.unperturbed_weights = [torch.empty_like(p) for p in self.params]

    def _step(self, closure):
        loss = self._ascent_pass(closure)
        self.ascent_step()
        self._evaluate(closure, bn=self._perturbed_bn())
        self.descent_step()
        self._end_step(closure)
        return loss

    # ------------------------------------------------------------------------------------- hooks
    def _ascent_pass(self, closure):
        """The first pass, at w: leaves in .grad the gradient the ascent uses; returns the loss."""
        return self._evaluate(closure)

    def _shape_perturbation(self, index, eps):
        """The perturbation of the parameters ``index`` as applied (SSAM masks it)."""
        return eps

    def _after_perturbation(self, index, grads):
        """The model at w + eps, ``grads`` the gradient the ascent used (SSAM-D updates its mask here)."""

    def _end_step(self, closure):
        """After the base step (SSAM counts steps; SSAM-F's Fisher pass at the new weights)."""

    def _kept_weights(self):
        return self.unperturbed_weights           # w, copied by ascent_step, still there after the step

    # ---------------------------------------------------------------------------- two-call style
    @torch.no_grad()
    def ascent_step(self):
        """Move the model to w + eps, computed from the gradients now in ``.grad``; zero them."""
        self._check_two_call_style()
        index, params, grads = self._grads()
        eps = self._shape_perturbation(index, self.ascent.perturbation([self.param_names[i] for i in index],
                                                                       params, grads))
        self._remember_gradient()
        torch._foreach_copy_(self.unperturbed_weights, self.params)
        torch._foreach_add_(params, eps)
        self._after_perturbation(index, grads)
        self.zero_grad()

    @torch.no_grad()
    def descent_step(self):
        """Restore w and let the base optimizer step with the gradients now in ``.grad``."""
        self._check_two_call_style()
        self._descent_hook()
        torch._foreach_copy_(self.params, self.unperturbed_weights)
        self.base_optimizer.step()
        self.zero_grad()


class ASAM(SAM):
    """Adaptive SAM (Kwon et al., 2021): SAM with the ASAM ascent rule."""

    def __init__(self, model, optimizer, ascent=None, bn_policy="every"):
        super().__init__(model, optimizer, ascent if ascent is not None else ASAMAscent(), bn_policy)
