"""SSAM (Mi et al., NeurIPS 2022): SAM with a sparse perturbation, e = m * rho g/(||g|| + 1e-7).

The steps of the authors' code (Mi-Peng/Sparse-Sharpness-Aware-Minimization, solver/sam.py and
utils/engine.py, commit 76974fd): the guard 1e-7 is theirs; both passes update the BatchNorm
running statistics (their loop never freezes them: ``bn_policy="every"``); m is a binary mask over
all trainable entries (one global ranking across tensors); the base optimizer steps from w.

SSAM-F (``SSAM_F``).  m starts all zero (their ``init_mask``), so the perturbation is zero until the
first mask exists.  After the step at every t with t % ``mask_update_interval`` == 0 (t = 0 included:
their "epoch % update_freq == 0 and batch_idx == 0", after ``super().step``), m is rebuilt at the new
weights from the empirical Fisher information

    F = sum over ``num_samples`` samples i of (grad_w CE(f(x_i), y_i))^2       (per-sample gradients)

keeping the int(N * (1 - sparsity)) largest entries (their count); the new mask applies from the
next step.  The Fisher pass is one extra closure call ``closure(objective)`` after the descent, with
the closure contract of BiSAM (see ``minimizers.bisam``): the objective takes the per-sample gradients
of the first samples of the batch from the logits, one ``torch.autograd.grad`` per sample, and
back-propagates nothing else.  When the batch holds fewer than ``num_samples`` samples, the sum
continues over the next steps (one extra pass each, at those steps' weights) and the new mask applies
once ``num_samples`` samples are in.  Passes per step: 2, plus 1 on Fisher steps.  Cost of a Fisher
step: one forward and ``num_samples`` backward passes through the batch's graph (about
num_samples / mask_update_interval extra backward passes per step on average, ~7% with the defaults).

Deliberate differences in SSAM-F, because a minimizer only sees the closure of its batch: their Fisher
samples are ``num_samples`` fresh random training samples (a separate DataLoader with batch size 1),
run with the model in training mode, so each sample is normalised with its own statistics and the
``num_samples`` passes overwrite the BatchNorm running statistics (momentum 0.1: 0.9^128 ~ 1e-6 of
the old values remain); ours are the first samples of the step's (shuffled) batch with every
BatchNorm layer in eval mode (running statistics used, not updated).  Their first Fisher sample's
gradient also includes the perturbed-pass gradient left in ``.grad`` by the step (``second_step``
does not zero it); we do not reproduce that.  We restore w by copying it back (theirs subtracts e:
the same up to rounding).

SSAM-D (``SSAM_D``).  m starts random with N - ceil(N * sparsity) active entries (their
``init_mask``).  At every t with t % ``mask_update_interval`` == 0 (t = 0 included) and t < ``T_end``,
after the perturbation (which uses the current mask) and before the perturbed pass, with
A = N - N * sparsity (a float, as theirs) and the cosine-annealed rate
d_t = drop_rate / 2 * (1 + cos(pi * t / T_end)):

    keep the int(A * (1 - d_t)) active entries with the largest (score + 1e-7)  (``drop_criterion``)
    grow the int(min(A * d_t, N * sparsity)) previously inactive entries with the largest
        (score + 1e-7)                                                           (``grow_criterion``)

score = |gradient| (the step's clean gradient), |weight| (at the perturbed point w + e, where their
update runs) or uniform random.  The new mask applies from the next step.  The two counts are
rounded separately, so when A * d_t is not an integer one entry more is dropped than grown and the
active count shrinks by one (their behaviour, kept).  If their count of entries to keep exceeds the
active ones (possible only after many such shrinks) their top-k would fill up with inactive entries
in an arbitrary order; we keep all active entries instead.

Randomness: their masks draw from the global CPU generator (torch.rand), one tensor per parameter;
ours from a torch.Generator on the parameters' device seeded with ``seed`` (one draw over all entries),
whose state is in ``state_dict`` together with the mask and the step counter: the same distribution,
another stream.

Epochs vs steps: their masks change at the first batch of every ``update_freq``-th epoch; ``step``
cannot know the epoch length, so intervals are in steps: mask_update_interval = update_freq *
steps_per_epoch and T_end = epochs * steps_per_epoch.  The defaults (1955 and 78200) are 5 and 200
epochs of CIFAR at batch 128 (391 steps per epoch): ``MASK_UPDATE_INTERVAL`` and ``T_END`` below,
derived from ``CIFAR_STEPS_PER_EPOCH``.  Other defaults (CIFAR-10): rho=0.1 and
sparsity=0.5 (their README's CIFAR-10 SSAM-F command), num_samples=128 and a 5-epoch refresh (values
of the grid in their configs/train.sh, commit 2d17866); drop_rate=0.5 and the gradient-drop /
random-grow criteria are their parser's defaults (configs/defaulf_cfg.py).
"""
import math

import torch

from .checks import check_choice, check_int, check_number, check_objective_closure
from .gsam import EpsAscent
from .sam import SAM

CRITERIA = ("gradient", "weight", "random")
SSAM_EPS = 1e-7


# Defaults in steps that the paper and code give in epochs (step cannot know the epoch length): a mask
# refresh every 5 epochs and 200 epochs of training, at CIFAR's 50,000 images in batches of 128.  For
# other settings pass update_epochs * steps_per_epoch and epochs * steps_per_epoch.
CIFAR_STEPS_PER_EPOCH = 391                            # ceil(50000 / 128)
MASK_UPDATE_INTERVAL = 5 * CIFAR_STEPS_PER_EPOCH       # 1955
T_END = 200 * CIFAR_STEPS_PER_EPOCH                    # 78200
RHO, SPARSITY = 0.1, 0.5                               # SSAM-F and SSAM-D (see the module docstring)


class _SparseSAM(SAM):
    """SAM with a global binary mask on the perturbation; subclasses decide how the mask evolves."""

    gradient_evaluations = 2

    def __init__(self, model, optimizer, rho, sparsity, mask_update_interval, bn_policy, eps):
        super().__init__(model, optimizer, bn_policy=bn_policy, ascent=EpsAscent(rho, eps))
        self.sparsity = check_number("sparsity", sparsity, low=0, high=1)
        self.mask_update_interval = check_int("mask_update_interval", mask_update_interval, minimum=1)
        self.numel = sum(p.numel() for p in self.params)
        self.steps = 0
        self.mask_flat = torch.zeros(self.numel, dtype=self.params[0].dtype, device=self.params[0].device)
        self.masks = self._views(self.mask_flat)

    def _views(self, flat):
        return [t.view_as(p) for t, p in zip(flat.split([p.numel() for p in self.params]), self.params)]

    def _set_mask(self, keep_index):
        self.mask_flat.zero_()
        self.mask_flat.index_fill_(0, keep_index, 1.0)

    def _flat(self, tensors, index):
        """The entries of ``tensors`` (aligned with self.params[index]) in one flat vector, zeros elsewhere."""
        flat = torch.zeros_like(self.mask_flat)
        torch._foreach_copy_([self._views(flat)[i] for i in index], tensors)
        return flat

    def _shape_perturbation(self, index, eps):
        torch._foreach_mul_(eps, [self.masks[i] for i in index])
        return eps

    def _step_counters(self):
        return ("steps",)

    def _extra_state(self):
        return {"steps": self.steps, "mask": self.mask_flat.clone()}

    def _load_extra_state(self, state):
        self.steps = int(state["steps"])
        with torch.no_grad():
            self.mask_flat.copy_(state["mask"])


class SSAMF(_SparseSAM):
    """SSAM-F: Fisher-information mask.  2 passes, +1 on steps that accumulate the Fisher information."""

    def __init__(self, model, optimizer, rho=RHO, sparsity=SPARSITY, num_samples=128,
                 mask_update_interval=MASK_UPDATE_INTERVAL, bn_policy="every", eps=SSAM_EPS):
        super().__init__(model, optimizer, rho, sparsity, mask_update_interval, bn_policy, eps)
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.n_keep = int(self.numel * (1 - self.sparsity))            # their keep_num
        self.fisher_count = 0           # samples in the Fisher sum being accumulated (0: none in progress)
        self.collecting = False
        self.fisher_flat = torch.zeros_like(self.mask_flat)
        self.fisher = self._views(self.fisher_flat)

    def fisher_pass_due(self):
        return self.collecting or self.steps % self.mask_update_interval == 0

    def _step_counters(self):
        return ("steps", "collecting", "fisher_count")

    def _step_tensors(self):          # the Fisher sum and the mask change only on Fisher steps
        return [self.fisher_flat, self.mask_flat] if self.fisher_pass_due() else []

    @property
    def gradient_evaluations(self):
        return 3 if self.fisher_pass_due() else 2

    def _ascent_pass(self, closure):
        if self.fisher_pass_due():                          # before any pass: nothing done on a bad closure
            check_objective_closure(closure, "SSAM-F")
        return super()._ascent_pass(closure)

    def _end_step(self, closure):
        if self.fisher_pass_due():                          # (unchanged since the step began)
            self._fisher_pass(closure)                      # at the new weights; BatchNorm untouched
        self.steps += 1

    def _fisher_pass(self, closure):
        check_objective_closure(closure, "SSAM-F")
        if not self.collecting:
            with torch.no_grad():
                self.fisher_flat.zero_()
            self.collecting, self.fisher_count = True, 0
        params = self.params
        fisher = self.fisher
        scaled = self._amp        # fp16: each per-sample gradient scaled and unscaled as the passes are

        def objective(outputs, targets):
            n = min(int(outputs.shape[0]), self.num_samples - self.fisher_count)
            for i in range(n):
                sample_loss = torch.nn.functional.cross_entropy(outputs[i:i + 1], targets[i:i + 1])
                if scaled is not None:
                    sample_loss = sample_loss * scaled.scale
                grads = torch.autograd.grad(sample_loss, params, retain_graph=True, allow_unused=True)
                used = [j for j, g in enumerate(grads) if g is not None]
                g = [grads[j] for j in used]
                if scaled is not None:
                    scaled.unscale_(g)
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
        if self.collecting:
            state["fisher"] = self.fisher_flat.clone()
        return state

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.collecting = bool(state["collecting"])
        self.fisher_count = int(state["fisher_count"])
        if self.collecting:
            with torch.no_grad():
                self.fisher_flat.copy_(state["fisher"])


class SSAMD(_SparseSAM):
    """SSAM-D: dynamic sparse mask (random start, cosine-annealed drop/grow).  Two passes."""

    def __init__(self, model, optimizer, rho=RHO, sparsity=SPARSITY, drop_rate=0.5,
                 mask_update_interval=MASK_UPDATE_INTERVAL, T_end=T_END, drop_criterion="gradient",
                 grow_criterion="random", seed=0, bn_policy="every", eps=SSAM_EPS):
        super().__init__(model, optimizer, rho, sparsity, mask_update_interval, bn_policy, eps)
        self.drop_rate = check_number("drop_rate", drop_rate, low=0, high=1)
        self.T_end = check_int("T_end", T_end, minimum=1)
        self.drop_criterion = check_choice("drop_criterion", drop_criterion, CRITERIA)
        self.grow_criterion = check_choice("grow_criterion", grow_criterion, CRITERIA)
        self.seed = check_int("seed", seed)
        device = self.params[0].device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.n_active = self.numel - math.ceil(self.numel * self.sparsity)     # their live_num
        scores = torch.rand(self.numel, generator=self.generator, device=device)
        with torch.no_grad():
            self._set_mask(torch.topk(scores, self.n_active, sorted=False).indices)

    def update_counts(self, t):
        """(entries kept, entries grown) at step t, Python ints; None when no update is due."""
        if t % self.mask_update_interval != 0 or t >= self.T_end:
            return None
        rate = self.drop_rate * (1 + math.cos(math.pi * (float(t) / self.T_end))) / 2
        target = self.numel - self.numel * self.sparsity
        keep = min(int(target * (1 - rate)), self.n_active)
        grow = int(min(target * rate, self.numel * self.sparsity))
        return keep, grow

    def _end_step(self, closure):
        self.steps += 1

    def _step_counters(self):
        return ("steps", "n_active")

    def _step_tensors(self):          # the mask changes only on mask-update steps
        return [self.mask_flat] if self.update_counts(self.steps) is not None else []

    def _step_state(self):
        generator = self.generator.get_state() if self.update_counts(self.steps) is not None else None
        return super()._step_state(), generator

    def _load_step_state(self, saved):
        own, generator = saved
        super()._load_step_state(own)
        if generator is not None:
            self.generator.set_state(generator)

    def _after_perturbation(self, index, grads):
        counts = self.update_counts(self.steps)
        if counts is not None:
            self._update_mask(index, grads, *counts)

    def _score(self, criterion, index, grads):
        if criterion == "gradient":
            return self._flat(grads, index).abs()
        if criterion == "weight":       # the model is at w + e here, as in their update
            return torch.cat([p.detach().reshape(-1) for p in self.params]).abs().to(self.mask_flat.dtype)
        return torch.rand(self.numel, generator=self.generator, device=self.mask_flat.device,
                          dtype=self.mask_flat.dtype)

    def _update_mask(self, index, grads, keep, grow):
        mask = self.mask_flat
        death = (self._score(self.drop_criterion, index, grads) + 1e-7) * mask
        growth = (self._score(self.grow_criterion, index, grads) + 1e-7) * (1 - mask)
        kept = torch.topk(death, keep, sorted=False).indices
        grown = torch.topk(growth, grow, sorted=False).indices
        self._set_mask(torch.cat([kept, grown]))
        self.n_active = keep + grow

    def _extra_state(self):
        state = super()._extra_state()
        state["generator"] = self.generator.get_state()
        state["n_active"] = self.n_active
        return state

    def _load_extra_state(self, state):
        super()._load_extra_state(state)
        self.generator.set_state(state["generator"].cpu())    # map_location may have moved it
        self.n_active = int(state["n_active"])
