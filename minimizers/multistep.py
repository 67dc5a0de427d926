"""Multistep SAM/ASAM (baseline of the Lookbehind paper): k accumulated ascent steps, one descent.

    phi~_0 = phi;  phi~_i = phi~_{i-1} + eps(grad L_B(phi~_{i-1}))   for i = 1..k
    phi <- base_optimizer_step(phi, d),  d = grad L_B(phi~_k)                 (descent_gradient="last")
                                         d = mean_i grad L_B(phi~_i)          (descent_gradient="mean")

Each ascent step has radius rho, or rho/k with ``split_rho=True`` (so the whole path stays within
rho).  k+1 gradient evaluations.  Buffers: the unperturbed weights (+ a gradient sum for "mean").
"""
import torch

from .base import Minimizer
from .checks import check_bool, check_choice, check_int

DESCENT_GRADIENTS = ("last", "mean")


class Multistep(Minimizer):
    def __init__(self, model, optimizer, ascent, k=2, descent_gradient="last", split_rho=False,
                 bn_policy="every"):
        super().__init__(model, optimizer, bn_policy)
        self._set_ascent(ascent)
        self.k = check_int("k", k, minimum=1)
        self.descent_gradient = check_choice("descent_gradient", descent_gradient, DESCENT_GRADIENTS)
        self.split_rho = check_bool("split_rho", split_rho)
        self.unperturbed_weights = [torch.empty_like(p) for p in self.params]
        self.gradient_sum = [torch.empty_like(p) for p in self.params] if descent_gradient == "mean" else None

    @property
    def gradient_evaluations(self):
        return self.k + 1

    def _kept_weights(self):
        return self.unperturbed_weights

    def _step(self, closure):
        params = self.params
        rho = self.ascent.rho / self.k if self.split_rho else None
        with torch.no_grad():
            torch._foreach_copy_(self.unperturbed_weights, params)
            if self.gradient_sum is not None:
                torch._foreach_zero_(self.gradient_sum)
        loss = self._evaluate(closure)
        for _ in range(self.k):
            with torch.no_grad():
                _, perturbed, eps = self._perturbation(rho)
                torch._foreach_add_(perturbed, eps)
            self._evaluate(closure, bn=self._perturbed_bn())
            if self.gradient_sum is not None:
                with torch.no_grad():
                    index, _, grads = self._grads()
                    torch._foreach_add_([self.gradient_sum[i] for i in index], grads)
        with torch.no_grad():
            torch._foreach_copy_(params, self.unperturbed_weights)
            if self.gradient_sum is not None:
                index, _, grads = self._grads()
                torch._foreach_copy_(grads, [self.gradient_sum[i] for i in index])
                torch._foreach_div_(grads, float(self.k))
            self.optimizer.step()
        self.zero_grad()
        return loss
