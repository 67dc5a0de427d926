"""BiSAM (Xie et al., ICML 2024): the ascent maximizes a lower bound of the 0-1 loss.  Two passes.

The step of the authors' code (LIONS-EPFL/BiSAM, train.py + loss_fnc.py + utility/sam.py, commit
be996e4).  With logits f(x) (batch n x K), labels y and the margins F_j = f(x)_j - f(x)_y (F_y = 0):

    Q(w) = mean_i log sum_j exp(mu * phi(F_ij))              (their loss_fnc.py; see below)
    phi(x) = tanh(alpha_tanh x)                               ("tanh", BiSAM_tanh)
    phi(x) = 1 + softplus(x - gamma, beta=-1)                 ("log", BiSAM_log)
           = 1 - log(1 + exp(gamma - x)),  gamma = log(e-1)   (phi(0) = 0 up to gamma's rounding)

    e = rho * grad Q(w) / (||grad Q(w)|| + 1e-12)             (their SAM's 1e-12)
    base optimizer step from w with grad L(w + e)             (L = the closure's training loss;
                                                               BatchNorm statistics frozen)

The paper and the README write Q with a 1/mu in front of the log; their code leaves it out.  The
ascent only uses the direction of grad Q, so the two differ by the 1e-12 guard alone; we follow the
code.  ``phi`` for "log" is their ``softplus(., beta=-1)`` expression, PyTorch's linear branch past
its threshold included, and gamma is their ``torch.log(torch.tensor(math.e - 1))``: computed in
float32 (0.54132485...; the float64 log(e-1) differs by 7e-10, which moves a float64 step by ~4e-12).  Vectorised over the batch (one gather, one logsumexp).

BatchNorm: their loop sets every BatchNorm momentum to 0 for the second (perturbed) pass, so the
default is ``bn_policy="clean"``; the ascent pass (on Q) updates the statistics as usual.

Defaults: rho=0.05 (the authors' CIFAR-10 command, SAM's), mu=10 and alpha_tanh=0.1 for tanh, mu=1 for
log: the defaults of the surrogate functions in their loss_fnc.py.  Caveat: their train.py passes
its --mu flag (default 1.0) to both surrogates, so their script's out-of-the-box tanh run uses mu=1
(``--hparam mu=1`` here).  ``surrogate="ce"`` (not registered; for tests) makes the ascent use the
training loss itself, which is SAM (exactly, with ``eps=1e-16``).

Closure contract.  The ascent pass needs the logits and labels, not the loss, so BiSAM calls
``closure(objective)``: the closure must accept one optional argument and, when it is given,
back-propagate ``objective(outputs, targets)`` instead of the loss (it still returns the detached
training loss).  ``minimizers.make_closure`` does this::

    def closure(objective=None):
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        (loss if objective is None else objective(outputs, targets)).backward()
        return loss.detach()

A closure that takes no argument raises ValueError (checked from its signature before any pass).
Every other minimizer calls ``closure()`` only, so a plain loss-returning closure keeps working there.
``targets`` must hold class indices (an integer tensor of shape (n,)); ``outputs`` the logits (n, K).
"""
import math

import torch
import torch.nn.functional as F

from .checks import check_choice, check_number, check_objective_closure
from .gsam import EpsAscent
from .sam import SAM


SURROGATES = ("tanh", "log")
BISAM_EPS = 1e-12       # their SAM's guard in rho / (||grad Q|| + 1e-12)
GAMMA = float(torch.log(torch.tensor(math.e - 1.0)))    # float32, as the authors' loss_fnc.py computes it


def bisam_surrogate(phi="tanh", mu=10.0, alpha_tanh=0.1):
    """objective(outputs, targets) -> Q, the BiSAM lower-bound surrogate of the authors' code (a scalar)."""
    check_choice("phi", phi, SURROGATES)

    def objective(outputs, targets):
        if outputs.dim() != 2 or targets.dim() != 1 or targets.is_floating_point() or targets.is_complex():
            raise ValueError("BiSAM needs logits of shape (n, K) and integer class labels of shape (n,), got "
                             f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} {targets.dtype}")
        margins = outputs - outputs.gather(1, targets.unsqueeze(1))
        if phi == "tanh":
            values = torch.tanh(alpha_tanh * margins)
        else:
            values = 1.0 + F.softplus(margins - GAMMA, beta=-1)
        return torch.logsumexp(mu * values, dim=1).mean()
    return objective


class BiSAM(SAM):
    """SAM whose ascent gradient is that of the BiSAM surrogate Q.  Two gradient evaluations."""

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho=0.05, surrogate="tanh", mu=10.0, alpha_tanh=0.1, bn_policy="clean",
                 eps=BISAM_EPS):
        super().__init__(model, optimizer, bn_policy=bn_policy, ascent=EpsAscent(rho, eps))
        self.surrogate = check_choice("surrogate", surrogate, (*SURROGATES, "ce"))
        self.mu = check_number("mu", mu, low=0, low_open=True)
        self.alpha_tanh = check_number("alpha_tanh", alpha_tanh, low=0)
        self.objective = None if surrogate == "ce" else bisam_surrogate(surrogate, self.mu, self.alpha_tanh)

    def _ascent_pass(self, closure):
        """grad Q(w) for the ascent; returns L(w).  The rest of the step is SAM's (grad L(w + eps))."""
        if self.objective is not None:
            check_objective_closure(closure, "BiSAM")
        return self._evaluate(closure, objective=self.objective)
