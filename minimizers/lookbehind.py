"""Lookbehind (Mordido et al., ICML 2024): k ascent steps behind, one interpolated step forward.

Notation: phi = slow weights (the model's weights between steps), theta = fast weights,
phi~ = perturbed point.  One outer step on a minibatch B:

    phi~_0 = theta_0 = phi
    for i = 1..k:
        phi~_i  = phi~_{i-1} + eps(grad L_B(phi~_{i-1}), phi~_{i-1})    # perturbations accumulate
        theta_i = base_optimizer_step(theta_{i-1}, grad L_B(phi~_i))     # momentum/decay on theta
    phi <- phi + alpha (theta_k - phi)

with alpha fixed, or adaptive (alpha = -1): per parameter tensor,
alpha = (cos(theta_1 - phi, theta_k - phi) + 1) / 2.

Gradient evaluations.  The authors' loop evaluates the gradient at phi~_i twice (once for descent
i, once again for ascent i+1): 2k passes.  Here (``passes="shared"``, the default) each of
phi~_0..phi~_k is evaluated once: k+1 passes, the same trajectory to rounding.  BatchNorm running
statistics follow too: the authors' two identical passes at phi~_1..phi~_{k-1} are reproduced by
one pass with momentum 1-(1-m)^2 (see ``Minimizer._bn_mode``).  ``passes="repeat"`` runs the
authors' 2k passes literally (for models with dropout or other randomness in the forward pass).

Minibatch switching (``minibatch_switching=True``, our reading of the ICML version): inner step i
uses the i-th of k consecutive minibatches, i.e. one inner step (2 passes) per ``step`` call and the
slow-weight update every k calls; between calls the model holds the perturbed point, and
``evaluation_weights()`` swaps the slow weights in.

Memory: slow, fast and perturbed weights (+ theta_1 with adaptive alpha), allocated once.
"""
import contextlib

import torch

from .base import BN_NORMAL, BN_TWICE, Minimizer, per_tensor_dots
from .checks import check_alpha, check_bool, check_choice, check_int

PASSES = ("shared", "repeat")


class Lookbehind(Minimizer):
    def __init__(self, model, optimizer, ascent, k=2, alpha=0.5, passes="shared",
                 minibatch_switching=False, bn_policy="every"):
        super().__init__(model, optimizer, bn_policy)
        self.k = check_int("k", k, minimum=1)
        self.alpha = check_alpha(alpha)
        self.passes = check_choice("passes", passes, PASSES)
        self.minibatch_switching = check_bool("minibatch_switching", minibatch_switching)
        self.adaptive = self.alpha == -1
        self.slow_weights = [p.detach().clone() for p in self.params]
        self.fast_weights = [p.detach().clone() for p in self.params]
        self.perturbed_weights = [torch.empty_like(p) for p in self.params]
        self.first_fast_weights = [torch.empty_like(p) for p in self.params] if self.adaptive else None
        self._set_ascent(ascent)         # GSAM-style ascent rules: see Minimizer._descent_hook
        self.inner_step = 0          # inner steps done in the current outer step (two-call/switching use)
        self.last_alpha = None       # per-tensor alphas of the last slow update (device tensor), adaptive only
        self._alpha_stats = None     # device tensor [sum, min, max] of the alphas since the last read
        self._alpha_count = 0

    @property
    def gradient_evaluations(self):
        return self.k + 1 if (self.passes == "shared" and not self.minibatch_switching) else 2 * self.k

    # ---------------------------------------------------------------------------------------- step
    def _step(self, closure):
        if self.minibatch_switching:
            return self._inner_step_literal(closure)
        if self.inner_step != 0:
            raise RuntimeError("step() called in the middle of an outer step started with ascent_step()")
        if self.passes == "repeat":
            loss = None
            for _ in range(self.k):
                first = self._inner_step_literal(closure)
                loss = first if loss is None else loss
            return loss
        return self._outer_step_shared(closure)

    def _inner_step_literal(self, closure):
        """One inner step the authors' way: a pass for the ascent, a pass for the descent."""
        loss = self._evaluate(closure, bn=BN_NORMAL if self.inner_step == 0 else self._perturbed_bn())
        self.ascent_step()
        self._evaluate(closure, bn=self._perturbed_bn())
        self.descent_step()
        return loss

    def _outer_step_shared(self, closure):
        params, k = self.params, self.k
        self._begin_outer_step()
        loss = self._evaluate(closure)                               # phi~_0 = phi
        with torch.no_grad():
            _, perturbed, eps = self._perturbation()
            self._remember_gradient()
            torch._foreach_add_(perturbed, eps)                      # model at phi~_1
        for i in range(1, k + 1):
            # In the authors' loop phi~_i (i < k) is evaluated twice: once for descent i, once for ascent i+1.
            twice = BN_TWICE if i < k else BN_NORMAL
            self._evaluate(closure, bn=twice if self.bn_policy == "every" else self._perturbed_bn())
            with torch.no_grad():
                if i < k:                                            # phi~_{i+1}, kept aside
                    torch._foreach_copy_(self.perturbed_weights, params)
                    index, _, eps = self._perturbation()
                    torch._foreach_add_([self.perturbed_weights[j] for j in index], eps)
                self._descent_hook(remember=i < k)
                self._fast_step(i)                                   # model at theta_i
                if i < k:
                    torch._foreach_copy_(params, self.perturbed_weights)
        with torch.no_grad():
            self._slow_update()
        return loss

    # ------------------------------------------------------------------- authors' two-call style
    @torch.no_grad()
    def ascent_step(self):
        """After a backward at phi~_{i-1}: move the model to phi~_i; zero the gradients."""
        self._check_two_call_style()
        if self.inner_step == 0:
            self._begin_outer_step()
        _, perturbed, eps = self._perturbation()
        self._remember_gradient()
        torch._foreach_add_(perturbed, eps)
        self.zero_grad()

    @torch.no_grad()
    def descent_step(self):
        """After a backward at phi~_i: fast-weight step; every k-th call, the slow-weight update."""
        self._check_two_call_style()
        self._descent_hook(remember=False)
        self.inner_step += 1
        last = self.inner_step == self.k
        if not last:
            torch._foreach_copy_(self.perturbed_weights, self.params)
        self._fast_step(self.inner_step)
        if last:
            self._slow_update()
            self.inner_step = 0
        else:
            torch._foreach_copy_(self.params, self.perturbed_weights)

    # ------------------------------------------------------------------------------------- pieces
    @torch.no_grad()
    def _begin_outer_step(self):
        # The model holds phi between outer steps; read it here (not at construction) so that weights
        # loaded into the model after the minimizer was built are respected.
        torch._foreach_copy_(self.slow_weights, self.params)
        torch._foreach_copy_(self.fast_weights, self.params)

    def _fast_step(self, i):
        """theta_i = base step from theta_{i-1} with the gradients in .grad; leaves theta_i in the model."""
        torch._foreach_copy_(self.params, self.fast_weights)
        self.optimizer.step()
        self.zero_grad()
        if i < self.k:
            torch._foreach_copy_(self.fast_weights, self.params)
        if i == 1 and self.adaptive:
            torch._foreach_copy_(self.first_fast_weights, self.params)

    def _slow_update(self):
        """Model holds theta_k; replace it by the interpolation of slow and fast weights."""
        params, slow = self.params, self.slow_weights
        if not self.adaptive:
            torch._foreach_mul_(params, self.alpha)
            torch._foreach_add_(params, slow, alpha=1.0 - self.alpha)
            return
        first_delta = torch._foreach_sub(self.first_fast_weights, slow)      # theta_1 - phi
        last_delta = torch._foreach_sub(params, slow)                        # theta_k - phi
        alpha = (cosine_similarities(first_delta, last_delta) + 1.0) / 2.0
        self.last_alpha = alpha
        self._record_alpha(alpha)
        alphas = list(alpha.unbind(0))
        torch._foreach_mul_(params, alphas)
        torch._foreach_add_(params, torch._foreach_mul(slow, list((1.0 - alpha).unbind(0))))

    def _record_alpha(self, alpha):
        """Accumulate the adaptive alphas on the device (no host sync inside a step)."""
        stats = torch.stack([alpha.sum(), alpha.min(), alpha.max()])
        if self._alpha_stats is not None:
            previous = self._alpha_stats
            stats = torch.stack([previous[0] + stats[0], torch.minimum(previous[1], stats[1]),
                                 torch.maximum(previous[2], stats[2])])
        self._alpha_stats = stats
        self._alpha_count += alpha.numel()

    def pop_alpha_statistics(self):
        """(mean, min, max) of the per-tensor adaptive alphas of every slow update since the last
        call, then reset; None if there was none (fixed alpha). One host read: call it per epoch."""
        if self._alpha_stats is None:
            return None
        total, low, high = self._alpha_stats.tolist()
        mean = total / self._alpha_count
        self._alpha_stats, self._alpha_count = None, 0
        return mean, low, high

    # ----------------------------------------------------------------------------- evaluation, state
    def _kept_weights(self):
        # phi, copied by _begin_outer_step at the start of an outer step and only read after it.
        return self.slow_weights if self.inner_step == 0 else None

    def _step_counters(self):
        return ("inner_step", "last_alpha", "_alpha_stats", "_alpha_count")

    def _step_tensors(self):
        # Mid outer step (minibatch switching): theta_{i-1}, read by the next call.  At inner_step 0 the
        # step rereads slow and fast weights from the model.
        return self.fast_weights if self.inner_step != 0 else []

    @contextlib.contextmanager
    def evaluation_weights(self):
        if self.inner_step == 0:          # the model already holds the slow weights
            yield self.model
            return
        with torch.no_grad():
            torch._foreach_copy_(self.perturbed_weights, self.params)
            torch._foreach_copy_(self.params, self.slow_weights)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self.perturbed_weights)

    def _extra_state(self):
        state = {"inner_step": self.inner_step}
        if self.inner_step != 0:          # between outer steps the model alone defines the state
            state["slow_weights"] = [t.clone() for t in self.slow_weights]
            state["fast_weights"] = [t.clone() for t in self.fast_weights]
            if self.adaptive:
                state["first_fast_weights"] = [t.clone() for t in self.first_fast_weights]
        return state

    def _load_extra_state(self, state):
        self.inner_step = int(state["inner_step"])
        if self.inner_step != 0:
            with torch.no_grad():
                torch._foreach_copy_(self.slow_weights, state["slow_weights"])
                torch._foreach_copy_(self.fast_weights, state["fast_weights"])
                if self.adaptive:
                    torch._foreach_copy_(self.first_fast_weights, state["first_fast_weights"])


def cosine_similarities(xs, ys, eps=1e-8):
    """Per-pair cosine similarity of flattened tensors, as one device tensor.

    Same formula as ``torch.nn.functional.cosine_similarity`` (each norm clamped at ``eps``)."""
    dots = per_tensor_dots(xs, ys)
    x_norms = torch.stack(torch._foreach_norm(xs)).clamp_min(eps)
    y_norms = torch.stack(torch._foreach_norm(ys)).clamp_min(eps)
    return dots / (x_norms * y_norms)
