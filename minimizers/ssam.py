"""SSAM (Mi et al., NeurIPS 2022): SAM with a sparse perturbation, eps = m * rho g/(||g|| + 1e-16).

m is a binary mask over all trainable entries (one global ranking across tensors) that keeps
round((1 - sparsity) * N) entries.  sparsity = 0 is SAM exactly (no mask is built or applied).

SSAM-F (``SSAM_F``): m keeps the entries with the largest empirical Fisher information
    F = sum over ``num_samples`` samples i of (grad_w CE(f(x_i), y_i))^2       (per-sample gradients)
refreshed every ``mask_update_interval`` steps (starting at step 0).  The Fisher pass is one extra
closure call ``closure(objective)`` at w, right after the clean pass (so the first call of a step is
always the clean pass), with the closure contract of BiSAM (see ``minimizers.bisam``): the
objective takes the per-sample gradients of the first samples of the batch from the logits, one
``torch.autograd.grad`` per sample, and back-propagates nothing else.  BatchNorm: during that pass
every BatchNorm layer is put in eval mode, so per-sample gradients use the running statistics
(a batch of one sample has no batch statistics) and the running statistics are not touched.  When
the batch holds fewer than ``num_samples`` samples, the Fisher sum continues over the next steps
(one extra pass each) and the new mask applies once ``num_samples`` samples are in.  Passes per step:
2, plus 1 on Fisher steps.  Cost of a Fisher step: one forward and ``num_samples`` backward passes
through the batch's graph (a per-sample loop; vmap would need num_samples x the activation memory),
i.e. about num_samples / mask_update_interval extra backward passes per step on average (~7% with
the defaults).  Until the first mask is complete, the mask keeps everything (SAM).

SSAM-D (``SSAM_D``): m starts random (``seed``); every ``mask_update_interval`` steps t (t > 0) while
t < ``T_end``, n = floor(d_t * n_keep) entries are dropped and n grown, with the cosine-annealed rate
d_t = drop_rate / 2 * (1 + cos(pi * t / T_end)):  drop the active entries with the smallest
|gradient| (``drop_criterion="gradient"``, the gradient of the step's first pass) or |weight|
(``"weight"``); grow inactive entries (those inactive before the drop) at random (``grow_criterion=
"random"``) or with the largest |gradient| (``"gradient"``).  n_keep stays constant.  Two passes.
Randomness comes from a torch.Generator on the parameters' device seeded with ``seed`` whose state
is in ``state_dict`` together with the mask and the step counter.

Epochs vs steps: the paper refreshes the mask every few *epochs*; ``step`` cannot know the epoch
length, so intervals are in steps: mask_update_interval = update_freq_epochs * steps_per_epoch and
T_end = epochs * steps_per_epoch.  The defaults (1955 and 78200) are 5 and 200 epochs of CIFAR at
batch 128 (391 steps per epoch).  Other defaults (CIFAR-10): rho=0.1 (the authors' scripts,
Mi-Peng/Sparse-Sharpness-Aware-Minimization configs/train.sh), sparsity=0.5, num_samples=128 and a
5-epoch refresh (values in the same scripts' grids); drop_rate=0.5 and the gradient-drop/random-grow
criteria for SSAM-D are our reading of the paper, not checked against its code (not public in the
stored repository).
"""
import math

import torch

from .base import check_choice, check_rho
from .bisam import check_objective_closure
from .sam import SAM, SAMAscent

DROP_CRITERIA = ("gradient", "weight")
GROW_CRITERIA = ("random", "gradient")


def check_sparsity(sparsity):
    if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or not (0.0 <= sparsity <= 1.0):
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    return float(sparsity)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class _SparseSAM(SAM):
    """SAM with a global binary mask on the perturbation; subclasses decide how the mask evolves."""

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho, sparsity, mask_update_interval, bn_policy):
        super().__init__(model, optimizer, bn_policy=bn_policy, ascent=SAMAscent(check_rho(rho)))
        self.sparsity = check_sparsity(sparsity)
        self.mask_update_interval = check_positive_int("mask_update_interval", mask_update_interval)
        self.numel = sum(p.numel() for p in self.params)
        self.n_keep = int(round((1.0 - self.sparsity) * self.numel))
        self.sparse = self.sparsity != 0.0
        self.steps = 0
        if self.sparse:
            self.mask_flat = torch.ones(self.numel, dtype=self.params[0].dtype, device=self.params[0].device)
            self.masks = self._views(self.mask_flat)

    def _views(self, flat):
        return [t.view_as(p) for t, p in zip(flat.split([p.numel() for p in self.params]), self.params)]

    def _set_mask(self, keep_index):
        self.mask_flat.zero_()
        self.mask_flat.index_fill_(0, keep_index, 1.0)

    @torch.no_grad()
    def ascent_step(self):
        index, params, grads = self._grads()
        eps = self.ascent.perturbation([self.param_names[i] for i in index], params, grads)
        if self.sparse:
            torch._foreach_mul_(eps, [self.masks[i] for i in index])
        torch._foreach_copy_(self.unperturbed_weights, self.params)
        torch._foreach_add_(params, eps)
        self.zero_grad()

    def _extra_state(self):
        state = {"steps": self.steps}
        if self.sparse:
            state["mask"] = self.mask_flat.clone()
        return state

    def _load_extra_state(self, state):
        self.steps = int(state["steps"])
        if self.sparse:
            with torch.no_grad():
                self.mask_flat.copy_(state["mask"])


class SSAMF(_SparseSAM):
    """SSAM-F: Fisher-information mask.  2 passes, +1 on steps that accumulate the Fisher information."""

    def __init__(self, model, optimizer, rho=0.1, sparsity=0.5, num_samples=128, mask_update_interval=1955,
                 bn_policy="every"):
        super().__init__(model, optimizer, rho, sparsity, mask_update_interval, bn_policy)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.fisher_count = 0           # samples in the Fisher sum being accumulated (0: none in progress)
        self.collecting = False
        if self.sparse:
            self.fisher_flat = torch.zeros_like(self.mask_flat)
            self.fisher = self._views(self.fisher_flat)

    def fisher_pass_due(self):
        return self.sparse and (self.collecting or self.steps % self.mask_update_interval == 0)

    @property
    def gradient_evaluations(self):
        return 3 if self.fisher_pass_due() else 2

    def step(self, closure=None):
        loss = self._evaluate(closure)                      # grad L(w): the clean pass comes first
        if self.fisher_pass_due():
            _, params, grads = self._grads()
            self._fisher_pass(closure)                      # at w too; BatchNorm untouched
            for p, g in zip(params, grads):                 # give the clean gradients back
                p.grad = g
        self.ascent_step()
        self._evaluate(closure, bn=self._perturbed_bn())
        self.descent_step()
        self.steps += 1
        return loss

    def _fisher_pass(self, closure):
        check_objective_closure(closure, "SSAM-F")
        if not self.collecting:
            with torch.no_grad():
                self.fisher_flat.zero_()
            self.collecting, self.fisher_count = True, 0
        params = self.params
        fisher = self.fisher

        def objective(outputs, targets):
            n = min(int(outputs.shape[0]), self.num_samples - self.fisher_count)
            for i in range(n):
                sample_loss = torch.nn.functional.cross_entropy(outputs[i:i + 1], targets[i:i + 1])
                grads = torch.autograd.grad(sample_loss, params, retain_graph=True, allow_unused=True)
                used = [j for j, g in enumerate(grads) if g is not None]
                g = [grads[j] for j in used]
                with torch.no_grad():
                    torch._foreach_addcmul_([fisher[j] for j in used], g, g)
            self.fisher_count += n
            return outputs.new_zeros((), requires_grad=True)      # nothing else to back-propagate

        modes = [m.training for m in self.batchnorms]
        for m in self.batchnorms:
            m.train(False)
        try:
            self._evaluate(closure, objective=objective)
        finally:
            for m, mode in zip(self.batchnorms, modes):
                m.train(mode)
            self.zero_grad()
        if self.fisher_count >= self.num_samples:
            with torch.no_grad():
                self._set_mask(torch.topk(self.fisher_flat, self.n_keep, sorted=False).indices)
            self.collecting = False

    def _extra_state(self):
        state = super()._extra_state()
        state.update(collecting=self.collecting, fisher_count=self.fisher_count)
        if self.sparse and self.collecting:
            state["fisher"] = self.fisher_flat.clone()
        return state

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.collecting = bool(state["collecting"])
        self.fisher_count = int(state["fisher_count"])
        if self.sparse and self.collecting:
            with torch.no_grad():
                self.fisher_flat.copy_(state["fisher"])


class SSAMD(_SparseSAM):
    """SSAM-D: dynamic sparse mask (random start, cosine-annealed drop/grow).  Two passes."""

    def __init__(self, model, optimizer, rho=0.1, sparsity=0.5, drop_rate=0.5, mask_update_interval=1955,
                 T_end=78200, drop_criterion="gradient", grow_criterion="random", seed=0, bn_policy="every"):
        super().__init__(model, optimizer, rho, sparsity, mask_update_interval, bn_policy)
        if not isinstance(drop_rate, (int, float)) or isinstance(drop_rate, bool) or not (0.0 <= drop_rate <= 1.0):
            raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate!r}")
        self.drop_rate = float(drop_rate)
        self.T_end = check_positive_int("T_end", T_end)
        self.drop_criterion = check_choice("drop_criterion", drop_criterion, DROP_CRITERIA)
        self.grow_criterion = check_choice("grow_criterion", grow_criterion, GROW_CRITERIA)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        device = self.params[0].device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        if self.sparse:
            scores = torch.rand(self.numel, generator=self.generator, device=device)
            self._set_mask(torch.topk(scores, self.n_keep, sorted=False).indices)

    def drop_count(self, t):
        """Entries dropped (and grown) at step t (Python int; 0 when no update is due)."""
        if not self.sparse or t == 0 or t % self.mask_update_interval != 0 or t >= self.T_end:
            return 0
        rate = self.drop_rate / 2.0 * (1.0 + math.cos(math.pi * t / self.T_end))
        return min(int(rate * self.n_keep), self.numel - self.n_keep)

    def step(self, closure=None):
        n = self.drop_count(self.steps)
        if n == 0:
            loss = super().step(closure)
        else:
            loss = self._evaluate(closure)
            with torch.no_grad():
                self._update_mask(n)
            self.ascent_step()
            self._evaluate(closure, bn=self._perturbed_bn())
            self.descent_step()
        self.steps += 1
        return loss

    def _update_mask(self, n):
        index, params, grads = self._grads()
        flat_grad = torch.zeros_like(self.mask_flat)
        views = self._views(flat_grad)
        torch._foreach_copy_([views[i] for i in index], grads)
        active = self.mask_flat != 0
        if self.drop_criterion == "gradient":
            drop_score = flat_grad.abs()
        else:
            drop_score = torch.cat([p.detach().reshape(-1) for p in self.params]).abs().to(flat_grad.dtype)
        drop_score = drop_score.masked_fill(~active, math.inf)
        drop = torch.topk(drop_score, n, largest=False, sorted=False).indices
        if self.grow_criterion == "random":
            grow_score = torch.rand(self.numel, generator=self.generator, device=self.mask_flat.device,
                                    dtype=flat_grad.dtype)
        else:
            grow_score = flat_grad.abs()
        grow_score = grow_score.masked_fill(active, -math.inf)
        grow = torch.topk(grow_score, n, sorted=False).indices
        self.mask_flat.index_fill_(0, drop, 0.0)
        self.mask_flat.index_fill_(0, grow, 1.0)

    def _extra_state(self):
        state = super()._extra_state()
        state["generator"] = self.generator.get_state()
        return state

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.generator.set_state(state["generator"].cpu())    # map_location may have moved it
