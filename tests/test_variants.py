"""The SAM-family variants (GSAM, SSAM-F/D, BiSAM, SAMPa, Bilateral SAM, Lookbehind-GSAM) against naive
float64 references written from the semantics of each method's official code (the repositories and
commits named in minimizers/README.md), over several steps, parameters and BatchNorm buffers included.

The references work on dicts of named tensors with per-parameter Python loops, their own copy of the
network, ``torch.autograd.grad`` and a hand-written SGD (momentum + weight decay, as torch.optim.SGD).
A "frozen" pass is run as the official loops run it: every BatchNorm momentum set to 0 (running
statistics unchanged, ``num_batches_tracked`` still advancing; ours counts only the passes that
update the statistics, a documented difference that ``assert_official`` checks exactly).
"""
import io
import math
import os

import pytest
import torch
import torch.nn.functional as F

import minimizers
from minimizers.bisam import BiSAM
from minimizers.gsam import GSAM, GSAMAscent
from minimizers.bilateral import BilateralSAM

import reference
from reference import LR, MOMENTUM, WD, Reference, assert_matches, build, forbid_host_sync, lr_at, make_model, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (and contention on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_batches(n=6, seed=1, size=6):
    return reference.make_batches(n, seed, size)


class OfficialReference(Reference):
    """The shared naive pieces plus the official loops' way of freezing BatchNorm for a pass."""

    def __init__(self, seed=0):
        super().__init__(seed, bn_policy="every")
        self.frozen_passes = 0

    def grad(self, point, batch, frozen=False, objective=None, discard_bn=False):
        """Gradient at ``point``.  ``frozen``: BatchNorm momentum 0 for this pass (the official
        disable_running_stats).  ``discard_bn``: the pass's statistics go nowhere (SAMPa's rank 1,
        whose buffers DDP overwrites with rank 0's before every forward)."""
        bns = [m for m in self.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        saved_momentum = [m.momentum for m in bns]
        saved_buffers = {k: v.clone() for k, v in self.net.named_buffers()}
        if frozen:
            self.frozen_passes += 1
            for m in bns:
                m.momentum = 0
        try:
            return super().grad(point, batch, objective=objective)
        finally:
            for m, momentum in zip(bns, saved_momentum):
                m.momentum = momentum
            if discard_bn:
                with torch.no_grad():
                    for k, v in self.net.named_buffers():
                        v.copy_(saved_buffers[k])

    def scaled(self, g, rho, eps):
        """rho g / (||g|| + eps)."""
        norm = self.norm(g)
        return {n: g[n] * (rho / (norm + eps)) for n in self.names}


# The references agree with the minimizers to ~2e-16 after 6 steps; an epsilon of 1e-16 instead of the
# official 1e-12 (GSAM, SAMPa, ...) moves them by 4e-15 to 3e-14, so the tolerance tells them apart.
OFFICIAL_ATOL = 2e-15


def assert_official(model, ref, atol=OFFICIAL_ATOL):
    """Parameters and running statistics equal the official reference's; num_batches_tracked equals
    its count minus its frozen passes (momentum 0 still counts a pass, our frozen mode does not)."""
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), ref.weights[n], atol=atol, rtol=0, msg=f"parameter {n}")
    ref_buffers = dict(ref.net.named_buffers())
    for n, b in model.named_buffers():
        expected = ref_buffers[n]
        if n.endswith("num_batches_tracked"):
            expected = expected - ref.frozen_passes
        torch.testing.assert_close(b, expected, atol=atol, rtol=0, msg=f"BN buffer {n}")


def gsam_rho(rho_max, rho_min, lr, lr_max=LR, lr_min=0.0):
    return rho_min + (rho_max - rho_min) * (lr - lr_min) / (lr_max - lr_min)


def gsam_direction(ref, g, gp, alpha_g, eps=1e-12):
    """gsam.py's gradient_decompose: cosine with eps, the vertical part, g_p - alpha * vertical."""
    inner = ref.dot(g, gp)
    new_norm, old_norm = ref.norm(gp), ref.norm(g)
    cosine = inner / (new_norm * old_norm + eps)
    return {n: gp[n] - alpha_g * (g[n] - cosine * old_norm * gp[n] / (new_norm + eps)) for n in ref.names}


def assert_equal_models(a, b):
    for (n, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), n


def sgd_opt(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)


# ------------------------------------------------------------------------------------------- GSAM
@pytest.mark.parametrize("bn_policy,adaptive", [("clean", False), ("every", False), ("clean", True)])
def test_gsam_matches_official_semantics(bn_policy, adaptive):
    """juntang-zhuang/GSAM gsam.py: perturb with rho_t/(||g|| + 1e-12) (adaptive: rho_t w^2 g/(|| |w| g || +
    1e-12)), second pass with BatchNorm momentum 0 (the default policy), decompose with the cosine
    expression, unperturb by subtracting e, step."""
    rho_max, rho_min, alpha_g = 0.1, 0.02, 0.3
    model, ref, batches = make_model(), OfficialReference(), make_batches()
    run(build("GSAM", model, rho_max=rho_max, rho_min=rho_min, alpha_g=alpha_g, adaptive_perturbation=adaptive,
              **({} if bn_policy == "clean" else {"bn_policy": bn_policy})), model, batches, schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        w = ref.weights
        g = ref.grad(w, batch)
        rho = gsam_rho(rho_max, rho_min, ref.lr)
        if adaptive:
            norm = ref.norm({n: w[n].abs() * g[n] for n in ref.names})
            e = {n: g[n] * (rho / (norm + 1e-12)) * w[n] ** 2 for n in ref.names}
        else:
            e = ref.scaled(g, rho, 1e-12)
        perturbed = ref.add(w, e)
        gp = ref.grad(perturbed, batch, frozen=bn_policy == "clean")
        ref.weights = ref.sgd(ref.add(perturbed, e, -1.0), gsam_direction(ref, g, gp, alpha_g))
    assert_official(model, ref)


def test_gsam_uses_initial_lr_of_a_scheduler():
    model = make_model()
    m = build("GSAM", model, rho_max=0.2, rho_min=0.0, alpha_g=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(m.optimizer, lambda epoch: 0.5 ** epoch)
    assert m.ascent.rho == pytest.approx(0.2)
    m.optimizer.step()                                   # no gradients: a no-op that keeps torch quiet
    sched.step()
    assert m.ascent.rho == pytest.approx(0.1)
    m2 = build("GSAM", make_model(), rho_max=0.2, rho_min=0.1, lr_max=0.1, lr_min=0.05)
    assert m2.ascent.rho == pytest.approx(0.1)          # lr 0.05 = lr_min -> rho_min


def test_gsam_with_sam_epsilon_reduces_to_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    run(GSAM(a, sgd_opt(a), rho_max=0.05, rho_min=0.05, alpha_g=0.0, bn_policy="every", eps=1e-16), a, batches,
        schedule=True)
    run(build("SAM", b, rho=0.05), b, batches, schedule=True)
    assert_equal_models(a, b)


# -------------------------------------------------------------------------------- Lookbehind-GSAM
@pytest.mark.parametrize("passes", ["shared", "repeat"])
@pytest.mark.parametrize("k,alpha", [(2, 0.5), (3, -1)])
def test_lookbehind_gsam_matches_reference(passes, k, alpha):
    """Lookbehind (its authors' semantics, BatchNorm updated at every pass) whose inner steps use GSAM's
    official ascent (1e-12) and decomposition."""
    rho_max, rho_min, alpha_g = 0.1, 0.05, 0.4
    model, ref, batches = make_model(), OfficialReference(), make_batches(4)
    run(build("Lookbehind_GSAM", model, rho_max=rho_max, rho_min=rho_min, alpha_g=alpha_g, k=k, alpha=alpha,
              passes=passes), model, batches, schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        rho = gsam_rho(rho_max, rho_min, ref.lr)
        phi = ref.weights
        perturbed, theta, theta_1 = dict(phi), dict(phi), None
        for i in range(k):
            g = ref.grad(perturbed, batch)
            perturbed = ref.add(perturbed, ref.scaled(g, rho, 1e-12))
            gp = ref.grad(perturbed, batch)
            theta = ref.sgd(theta, gsam_direction(ref, g, gp, alpha_g))
            theta_1 = theta if i == 0 else theta_1
        new = {}
        for n in ref.names:
            a = alpha
            if alpha == -1:
                u, v = (theta_1[n] - phi[n]).flatten(), (theta[n] - phi[n]).flatten()
                a = (float(u @ v) / (max(float(u.norm()), 1e-8) * max(float(v.norm()), 1e-8)) + 1) / 2
            new[n] = phi[n] + a * (theta[n] - phi[n])
        ref.weights = new
    assert_matches(model, ref)


def test_lookbehind_gsam_minibatch_switching_matches_repeat_on_repeated_batches():
    batches = make_batches(3)
    a, b = make_model(), make_model()
    run(build("Lookbehind_GSAM", a, alpha_g=0.3, k=2, passes="repeat"), a, batches)
    run(build("Lookbehind_GSAM", b, alpha_g=0.3, k=2, minibatch_switching=True), b,
        [batch for batch in batches for _ in range(2)])
    assert_equal_models(a, b)


def test_lookbehind_gsam_with_sam_epsilon_reduces_to_lookbehind_sam_exactly():
    for passes in ["shared", "repeat"]:
        a, b, batches = make_model(), make_model(), make_batches(4)
        opt = sgd_opt(a)
        ascent = GSAMAscent(rho_max=0.05, rho_min=0.05, alpha_g=0.0, eps=1e-16).bind(opt)
        run(minimizers.Lookbehind(a, opt, ascent, k=3, alpha=-1, passes=passes), a, batches, schedule=True)
        run(build("Lookbehind_SAM", b, rho=0.05, k=3, alpha=-1, passes=passes), b, batches, schedule=True)
        assert_equal_models(a, b)


# ------------------------------------------------------------------------------------------- SSAM
def reference_fisher(ref, point, batch, count):
    """Sum of squared per-sample gradients, BatchNorm in eval mode (running statistics; our documented
    difference: the official code runs fresh samples in training mode)."""
    ref.load(point)
    ref.net.eval()
    x, y = batch
    fisher = {n: torch.zeros_like(point[n]) for n in ref.names}
    for i in range(count):
        loss = F.cross_entropy(ref.net(x[i:i + 1]), y[i:i + 1])
        for n, g in zip(ref.names, torch.autograd.grad(loss, list(ref.net.parameters()))):
            fisher[n] += g * g
    ref.net.train()
    return fisher


def flatten(ref, d):
    return [float(v) for n in ref.names for v in d[n].flatten()]


def unflatten(ref, values):
    out, start = {}, 0
    for n in ref.names:
        size = ref.weights[n].numel()
        out[n] = torch.tensor(values[start:start + size], dtype=torch.float64).view_as(ref.weights[n])
        start += size
    return out


def top_entries(scores, count):
    """Indices of the ``count`` largest scores (a plain sort)."""
    return sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:count]


@pytest.mark.parametrize("num_samples,interval,sparsity", [(4, 3, 0.6), (10, 4, 0.3), (6, 2, 0.0)])
def test_ssam_f_matches_official_semantics(num_samples, interval, sparsity):
    """solver/sam.py SSAMF: mask all zero until the first Fisher mask, eps = 1e-7, both passes update
    BatchNorm, the mask rebuilt after the step at t % interval == 0 from the new weights, int(N(1-s))
    entries kept, in force from the next step."""
    rho = 0.1
    model, ref, batches = make_model(), OfficialReference(), make_batches(7)
    m = build("SSAM_F", model, rho=rho, sparsity=sparsity, num_samples=num_samples, mask_update_interval=interval)
    run(m, model, batches)
    numel = sum(p.numel() for p in model.parameters())
    keep = int(numel * (1 - sparsity))
    mask = [0.0] * numel
    collected, fisher = 0, None
    for t, batch in enumerate(batches):
        w = ref.weights
        g = ref.grad(w, batch)
        e = ref.scaled(g, rho, 1e-7)
        e = {n: e[n] * unflatten(ref, mask)[n] for n in ref.names}
        perturbed = ref.add(w, e)
        ref.weights = ref.sgd(ref.add(perturbed, e, -1.0), ref.grad(perturbed, batch))
        if t % interval == 0 or fisher is not None:          # a Fisher sum may span several steps
            count = min(batch[1].shape[0], num_samples - collected)
            part = reference_fisher(ref, ref.weights, batch, count)
            fisher = part if fisher is None else {n: fisher[n] + part[n] for n in ref.names}
            collected += count
            if collected >= num_samples:
                kept = set(top_entries(flatten(ref, fisher), keep))
                mask = [1.0 if i in kept else 0.0 for i in range(numel)]
                fisher, collected = None, 0
    assert_official(model, ref)
    assert m.mask_flat.tolist() == mask


@pytest.mark.parametrize("drop_criterion,grow_criterion,sparsity,drop_rate", [
    ("gradient", "random", 0.5, 0.8), ("weight", "gradient", 0.37, 0.5), ("random", "weight", 0.6, 0.3)])
def test_ssam_d_matches_official_semantics(drop_criterion, grow_criterion, sparsity, drop_rate):
    """solver/sam.py SSAMD: N - ceil(N s) random active entries; at t % interval == 0 (t = 0 included),
    after the perturbation, keep int(A(1-d)) active entries with the largest score + 1e-7 and grow
    int(min(A d, N s)) inactive ones (A = N - N s, a float); 'weight' scores at the perturbed point;
    the new mask applies from the next step."""
    rho, interval, t_end, seed = 0.1, 2, 7, 7
    model, ref, batches = make_model(), OfficialReference(), make_batches(7)
    m = build("SSAM_D", model, rho=rho, sparsity=sparsity, drop_rate=drop_rate, mask_update_interval=interval,
              T_end=t_end, drop_criterion=drop_criterion, grow_criterion=grow_criterion, seed=seed)
    run(m, model, batches)
    numel = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(seed)
    live = numel - math.ceil(numel * sparsity)
    active = set(top_entries(torch.rand(numel, generator=gen).tolist(), live))
    mask = [1.0 if i in active else 0.0 for i in range(numel)]
    shrinks = 0
    for t, batch in enumerate(batches):
        w = ref.weights
        g = ref.grad(w, batch)
        e = ref.scaled(g, rho, 1e-7)
        e = {n: e[n] * unflatten(ref, mask)[n] for n in ref.names}
        perturbed = ref.add(w, e)
        new_mask = mask
        if t % interval == 0 and t < t_end:
            rate = drop_rate * (1 + math.cos(math.pi * t / t_end)) / 2
            target = numel - numel * sparsity
            keep = int(target * (1 - rate))
            grow = int(min(target * rate, numel * sparsity))
            assert keep <= sum(mask)                         # the official top-k picks active entries only

            def score(criterion):
                if criterion == "gradient":
                    return [abs(v) for v in flatten(ref, g)]
                if criterion == "weight":
                    return [abs(v) for v in flatten(ref, perturbed)]
                return torch.rand(numel, generator=gen, dtype=torch.float64).tolist()
            death = [(s + 1e-7) * k for s, k in zip(score(drop_criterion), mask)]
            growth = [(s + 1e-7) * (1 - k) for s, k in zip(score(grow_criterion), mask)]
            chosen = set(top_entries(death, keep)) | set(top_entries(growth, grow))
            shrinks += sum(mask) - len(chosen)
            new_mask = [1.0 if i in chosen else 0.0 for i in range(numel)]
        ref.weights = ref.sgd(ref.add(perturbed, e, -1.0), ref.grad(perturbed, batch))
        mask = new_mask
    assert_official(model, ref)
    assert m.mask_flat.tolist() == mask
    assert m.n_active == sum(mask)
    if (drop_criterion, sparsity) == ("gradient", 0.5):
        assert shrinks > 0          # the official rounding drops more than it grows: exercised here


def test_ssam_f_fisher_pass_leaves_batchnorm_alone():
    model = make_model()
    m = build("SSAM_F", model, num_samples=4, mask_update_interval=100)
    x, y = make_batches(1)[0]
    before = {k: v.clone() for k, v in model.named_buffers()}
    m._fisher_pass(minimizers.make_closure(model, F.cross_entropy, x, y))
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    assert model.bn.training and all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------ BiSAM
def reference_q(outputs, targets, phi, mu, alpha):
    """loss_fnc.py's perturbation losses, one sample at a time: logsumexp(mu phi(f - f_y)), mean over samples."""
    total = 0.0
    for f, y in zip(outputs, targets):
        margins = f - f[y]
        if phi == "tanh":
            v = torch.tanh(alpha * margins)
        else:
            gamma = float(torch.log(torch.tensor(math.e - 1)))      # float32, as loss_fnc.py
            v = 1.0 - torch.log(1.0 + torch.exp(gamma - margins))
        total = total + torch.log(torch.exp(mu * v).sum())
    return total / len(targets)


@pytest.mark.parametrize("name,phi,mu,alpha,bn_policy", [
    ("BiSAM_tanh", "tanh", 10.0, 0.1, "clean"), ("BiSAM_tanh", "tanh", 2.0, 0.5, "every"),
    ("BiSAM_log", "log", 1.0, None, "clean"), ("BiSAM_log", "log", 3.0, None, "clean")])
def test_bisam_matches_official_semantics(name, phi, mu, alpha, bn_policy):
    """train.py + utility/sam.py: ascent pass on Q (BatchNorm as usual), e = rho grad Q/(||grad Q|| + 1e-12),
    perturbed pass on the loss with BatchNorm momentum 0 (default), w restored, base step."""
    rho = 0.07
    model, ref, batches = make_model(), OfficialReference(), make_batches()
    hp = {"rho": rho, "mu": mu, "bn_policy": bn_policy, **({"alpha_tanh": alpha} if alpha is not None else {})}
    losses = []
    m = build(name, model, **hp)
    for x, y in batches:
        losses.append(m.step(minimizers.make_closure(model, F.cross_entropy, x, y)))
    for batch, loss in zip(batches, losses):
        w = ref.weights
        q_grad = ref.grad(w, batch, objective=lambda out, y: reference_q(out, y, phi, mu, alpha))
        torch.testing.assert_close(loss, ref.last_loss, atol=1e-12, rtol=0)     # step returns L(w)
        gp = ref.grad(ref.add(w, ref.scaled(q_grad, rho, 1e-12)), batch, frozen=bn_policy == "clean")
        ref.weights = ref.sgd(w, gp)
    assert_official(model, ref)


def test_bisam_surrogate_values():
    out = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    for phi, mu, alpha in [("tanh", 10.0, 0.1), ("log", 1.0, 0.1), ("log", 2.5, 0.1)]:
        q = minimizers.bisam.bisam_surrogate(phi, mu, alpha)(out, y)
        torch.testing.assert_close(q, reference_q(out, y, phi, mu, alpha), atol=1e-12, rtol=0)
    # phi(0) = 0 for both surrogates (up to the float32 gamma of the authors' code for "log"):
    # one class, margin 0 -> Q = log(exp(phi(0))) = phi(0)
    zero = torch.zeros(1, 1, dtype=torch.float64)
    assert minimizers.bisam.bisam_surrogate("log", mu=1.0)(zero, torch.zeros(1, dtype=torch.long)).abs() < 1e-9
    assert minimizers.bisam.bisam_surrogate("tanh")(zero, torch.zeros(1, dtype=torch.long)).abs() < 1e-15


def test_bisam_with_cross_entropy_ascent_and_sam_epsilon_is_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    run(BiSAM(a, sgd_opt(a), rho=0.05, surrogate="ce", bn_policy="every", eps=1e-16), a, batches)
    run(build("SAM", b, rho=0.05), b, batches)
    assert_equal_models(a, b)


def test_bisam_needs_a_closure_that_accepts_objective():
    model = make_model()
    m = build("BiSAM_tanh", model)
    x, y = make_batches(1)[0]
    inner = minimizers.make_closure(model, F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="objective"):
        m.step(lambda: inner())
    m.step(lambda objective=None: inner(objective))      # a wrapper that forwards it works
    # float labels are rejected with a clear message
    with pytest.raises(ValueError, match="integer class labels"):
        m.step(minimizers.make_closure(model, F.cross_entropy, x, F.one_hot(y, 5).double()))


# ------------------------------------------------------------------------------------------ SAMPa
@pytest.mark.parametrize("lam", [0.2, 0.7])
def test_sampa_matches_official_two_rank_loop(lam):
    """LIONS-EPFL/SAMPa train.py, both ranks emulated: flat buffers start at zero; rank 0 perturbs x with
    (agg - pert)/(lam + 1e-15) scaled by rho/(||.|| + 1e-12) and runs the previous batch (its BatchNorm
    buffers are the model's); rank 1 looks ahead by lr (g_y + wd x + momentum buf) when a momentum buffer
    exists and runs the current batch (its statistics overwritten by DDP's broadcast); both step with the
    all-reduced (1 - lam) g~ + lam g_y.  After T calls our parameters are theirs after T iterations and
    our BatchNorm buffers theirs after T iterations plus rank 0's next pass."""
    rho = 0.1
    model, ref, batches = make_model(), OfficialReference(), make_batches(6)
    run(build("SAMPa", model, rho=rho, lam=lam), model, batches, schedule=True)
    zeros = {n: torch.zeros_like(w) for n, w in ref.weights.items()}
    y_grads_rank1, pert, agg, data1 = zeros, zeros, zeros, None

    def rank0_pass(x, pert, agg, data1):
        y_grads = {n: (agg[n] - pert[n]) / (lam + 1e-15) for n in ref.names}
        scale = rho / (ref.norm(y_grads) + 1e-12)
        return ref.grad({n: x[n] + y_grads[n] * scale for n in ref.names}, data1)

    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        data1 = batch if data1 is None else data1
        x = ref.weights
        pert = {n: v * (1 - lam) for n, v in rank0_pass(x, pert, agg, data1).items()}
        if ref.momentum:
            look = {n: ref.lr * (y_grads_rank1[n] + WD * x[n] + ref.momentum[n] * MOMENTUM) for n in ref.names}
        else:
            look = {n: ref.lr * y_grads_rank1[n] for n in ref.names}
        y_grads_rank1 = ref.grad({n: x[n] - look[n] for n in ref.names}, batch, discard_bn=True)
        agg = {n: pert[n] + lam * y_grads_rank1[n] for n in ref.names}
        ref.weights = ref.sgd(x, agg)
        data1 = batch
    rank0_pass(ref.weights, pert, agg, data1)       # updates rank 0's BatchNorm buffers only
    assert_official(model, ref)


@pytest.mark.parametrize("lam", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("bn_policy", ["every", "clean"])
def test_sampa_paper_first_step_matches_algorithm(lam, bn_policy):
    """first_step="paper" (y_0 = x_0), paper indexing: x~_t = x_t + rho g_y(t)/(|g_y(t)| + 1e-12),
    y_{t+1} = base step of x_t with g_y(t) (state not kept), x_{t+1} = base step of x_t with
    (1-lam) grad f(x~_t; B_t) + lam grad f(y_{t+1}; B_{t+1}).  After N calls the model holds x_{N-1}."""
    rho = 0.1
    model, ref, batches = make_model(), Reference(bn_policy=bn_policy), make_batches(6)
    run(build("SAMPa", model, rho=rho, lam=lam, first_step="paper", bn_policy=bn_policy), model, batches,
        schedule=True)
    x = ref.weights
    g_y = ref.grad(x, batches[0])                                          # y_0 = x_0
    for t in range(len(batches)):
        norm = ref.norm(g_y)
        g_tilde = ref.grad({n: x[n] + g_y[n] * (rho / (norm + 1e-12)) for n in ref.names}, batches[t], clean=False)
        if t == len(batches) - 1:
            break
        ref.lr = lr_at(t + 1)                                              # applied in call t+1
        y_next = ref.sgd(x, g_y, peek=True)
        g_y = ref.grad(y_next, batches[t + 1])
        x = ref.sgd(x, {n: (1 - lam) * g_tilde[n] + lam * g_y[n] for n in ref.names})
    ref.weights = x
    assert_matches(model, ref)


def test_sampa_rho0_lam0_paper_start_is_the_base_optimizer_one_call_late():
    a, b, batches = make_model(), make_model(), make_batches(6)
    run(build("SAMPa", a, rho=0.0, lam=0.0, first_step="paper"), a, batches)
    run(build("SGD", b), b, batches[:-1])
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_sampa_lookahead_leaves_optimizer_state_untouched():
    model = make_model()
    m = build("SAMPa", model)
    batches = make_batches(3)
    run(m, model, batches[:2])
    before = {id(p): {k: v.clone() for k, v in m.optimizer.state[p].items()} for p in model.parameters()}
    x = [p.detach().clone() for p in model.parameters()]
    m._lookahead_step(m.grad_y)
    for p, x0 in zip(model.parameters(), x):
        assert not torch.equal(p, x0)
        for k, v in m.optimizer.state[p].items():
            assert torch.equal(v, before[id(p)][k])


def test_sampa_perturbed_policy_is_sampa_only():
    with pytest.raises(ValueError, match="bn_policy"):
        build("SAM", make_model(), bn_policy="perturbed")


# -------------------------------------------------------------------------------------- Bilateral
@pytest.mark.parametrize("anneal,beta,official_code", [(True, 1.0, False), (False, 1.0, False), (True, 0.5, False),
                                                      (True, 1.0, True), (False, 1.0, True)])
def test_bilateral_sam_matches_official_semantics(anneal, beta, official_code):
    """ajiaaa/BSAM bsam.py + train_bsam.py: scales rho/(||g0|| + 1e-12), both perturbed passes with
    BatchNorm momentum 0, ratio ||g_max||/||g_min|| without a guard; the base step from w (the paper,
    default) or from the min point with rho_min = 0 at the first step (``official_code``, their code)."""
    rho_max, rho_min = 0.08, 0.05
    model, ref, batches = make_model(), OfficialReference(), make_batches()
    run(build("BilateralSAM", model, rho_max=rho_max, rho_min=rho_min, anneal=anneal, beta=beta,
              official_code=official_code), model, batches, schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        r_min = rho_min * ref.lr / LR if anneal else rho_min
        if official_code and t == 0:
            r_min = 0.0
        w = ref.weights
        g0 = ref.grad(w, batch)
        g_max = ref.grad(ref.add(w, ref.scaled(g0, rho_max, 1e-12)), batch, frozen=True)
        w_min = ref.add(w, ref.scaled(g0, r_min, 1e-12), -1.0)
        g_min = ref.grad(w_min, batch, frozen=True)
        ratio = ref.norm(g_max) / ref.norm(g_min)
        d = {n: g_max[n] + beta * (g0[n] - ratio * g_min[n]) for n in ref.names}
        ref.weights = ref.sgd(w_min if official_code else w, d)
    assert_official(model, ref)


def test_bilateral_beta0_with_sam_epsilon_is_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    run(BilateralSAM(a, sgd_opt(a), rho_max=0.05, beta=0.0, bn_policy="every", eps=1e-16), a, batches)
    run(build("SAM", b, rho=0.05), b, batches)
    assert_equal_models(a, b)


# ------------------------------------------------------------------------------------ common checks
VARIANTS = [
    ("GSAM", {}), ("GSAM", {"alpha_g": 0.0}), ("GSAM", {"adaptive_perturbation": True}),
    ("SSAM_F", {"num_samples": 4, "mask_update_interval": 2}),
    ("SSAM_F", {"num_samples": 9, "mask_update_interval": 3}),
    ("SSAM_D", {"mask_update_interval": 2, "T_end": 7}), ("SSAM_D", {"mask_update_interval": 1, "T_end": 7,
                                                                      "drop_criterion": "weight",
                                                                      "grow_criterion": "gradient"}),
    ("BiSAM_tanh", {}), ("BiSAM_log", {}), ("SAMPa", {}), ("SAMPa", {"lam": 0.0, "first_step": "paper"}),
    ("BilateralSAM", {}), ("BilateralSAM", {"beta": 0.0}), ("BilateralSAM", {"official_code": True}),
    ("Lookbehind_GSAM", {"k": 3, "alpha": -1}), ("Lookbehind_GSAM", {"passes": "repeat"}),
    ("Lookbehind_GSAM", {"minibatch_switching": True}),
]


@pytest.mark.parametrize("name,hp", VARIANTS)
def test_closure_call_counts(name, hp):
    model = make_model()
    m = build(name, model, **hp)
    for x, y in make_batches(4):
        # with minibatch switching, gradient_evaluations counts an outer step (k calls of 2 passes)
        expected = 2 if hp.get("minibatch_switching") else m.gradient_evaluations
        calls = []
        inner = minimizers.make_closure(model, F.cross_entropy, x, y)

        def closure(objective=None):
            calls.append(1)
            return inner(objective)
        m.step(closure)
        assert len(calls) == expected, (name, hp)
    assert isinstance(minimizers.describe(name).gradient_evaluations, str)


def test_documented_pass_counts():
    expected = {"GSAM": 2, "SSAM_D": 2, "BiSAM_tanh": 2, "BiSAM_log": 2, "SAMPa": 2, "BilateralSAM": 3}
    for name, passes in expected.items():
        assert build(name, make_model()).gradient_evaluations == passes
        assert minimizers.describe(name).gradient_evaluations.startswith(str(passes))
    m = build("SSAM_F", make_model(), mask_update_interval=3)
    assert m.gradient_evaluations == 3          # step 0 collects the Fisher information
    assert build("Lookbehind_GSAM", make_model(), k=3).gradient_evaluations == 4


@pytest.mark.parametrize("name,hp", VARIANTS)
def test_no_host_sync_in_step(name, hp, monkeypatch):
    model = make_model()
    m = build(name, model, **hp)
    closures = [minimizers.make_closure(model, F.cross_entropy, x, y) for x, y in make_batches(4)]
    forbid_host_sync(monkeypatch)
    for c in closures:
        m.step(c)
    monkeypatch.undo()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name,hp", VARIANTS)
def test_state_dict_round_trip_continues_identically(name, hp):
    batches = make_batches(8)
    model = make_model()
    m = build(name, model, **hp)
    run(m, model, batches[:3], schedule=True)        # mid Fisher collection / mid mask schedule / pending SAMPa
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "minimizer": m.state_dict()}, buffer)
    run(m, model, batches[3:], schedule=True, start=3)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = make_model(seed=123)
    resumed = build(name, resumed_model, **hp)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["minimizer"])
    run(resumed, resumed_model, batches[3:], schedule=True, start=3)
    assert_equal_models(model, resumed_model)


def test_registry_has_every_variant_with_every_hyperparameter():
    for name in ["GSAM", "SSAM_F", "SSAM_D", "BiSAM_tanh", "BiSAM_log", "SAMPa", "BilateralSAM", "Lookbehind_GSAM"]:
        assert name in minimizers.available()
        defaults = minimizers.hparams(name)
        m = build(name, make_model(), **defaults)        # every default is accepted as an argument
        assert isinstance(m, minimizers.Minimizer)
        spec = minimizers.describe(name)
        assert spec.paper and spec.gradient_evaluations
    assert minimizers.canonical_name("bisamtanh") == "BiSAM_tanh"
    assert minimizers.canonical_name("ssam-f") == "SSAM_F"


@pytest.mark.parametrize("name,hp,message", [
    ("GSAM", {"rho_max": 0.01, "rho_min": 0.02}, "rho_min"),
    ("GSAM", {"alpha_g": -0.1}, "alpha_g"),
    ("GSAM", {"lr_min": -1.0}, "lr_min"),
    ("GSAM", {"rho": 0.05}, "does not take rho"),
    ("GSAM", {"adaptive_perturbation": "yes"}, "adaptive_perturbation"),
    ("Lookbehind_GSAM", {"k": 0}, "k must"),
    ("SSAM_F", {"sparsity": 1.5}, "sparsity"),
    ("SSAM_F", {"num_samples": 0}, "num_samples"),
    ("SSAM_F", {"mask_update_interval": 2.5}, "mask_update_interval"),
    ("SSAM_D", {"drop_rate": -0.1}, "drop_rate"),
    ("SSAM_D", {"drop_criterion": "magnitude"}, "drop_criterion"),
    ("SSAM_D", {"grow_criterion": "momentum"}, "grow_criterion"),
    ("SSAM_D", {"T_end": 0}, "T_end"),
    ("SSAM_D", {"seed": 1.5}, "seed"),
    ("BiSAM_tanh", {"mu": 0.0}, "mu"),
    ("BiSAM_tanh", {"alpha_tanh": -1.0}, "alpha_tanh"),
    ("BiSAM_log", {"alpha_tanh": 0.1}, "does not take alpha_tanh"),
    ("SAMPa", {"lam": 1.5}, "lam"),
    ("SAMPa", {"rho": -1.0}, "rho"),
    ("SAMPa", {"first_step": "zero"}, "first_step"),
    ("SAMPa", {"bn_policy": "perturbd"}, "bn_policy"),
    ("BilateralSAM", {"official_code": 1}, "official_code"),
    ("BilateralSAM", {"anneal": "yes"}, "anneal"),
    ("BilateralSAM", {"beta": -1.0}, "beta"),
    ("BilateralSAM", {"rho_min": -0.1}, "rho"),
])
def test_bad_arguments_raise(name, hp, message):
    with pytest.raises(ValueError, match=message):
        build(name, make_model(), **hp)


# -------------------------------------------------------------------------------------------- CLI
NEW_NAMES = ["GSAM", "SSAM_F", "SSAM_D", "BiSAM_tanh", "BiSAM_log", "SAMPa", "BilateralSAM", "Lookbehind_GSAM"]
CLI_HPARAMS = {"GSAM": ["--hparam", "rho_max=0.05", "--hparam", "alpha_g=0.02", "--hparam", "lr_max=0.1"],
               "SSAM_F": ["--rho", "0.05", "--hparam", "num_samples=16", "--hparam", "sparsity=0.9"],
               "SSAM_D": ["--hparam", "T_end=1000", "--hparam", "drop_criterion=weight"],
               "BiSAM_tanh": ["--hparam", "mu=5", "--hparam", "alpha_tanh=0.2"],
               "BiSAM_log": ["--hparam", "mu=2"],
               "SAMPa": ["--rho", "0.2", "--hparam", "lam=0.5"],
               "BilateralSAM": ["--hparam", "anneal=false", "--hparam", "rho_min=0.01"],
               "Lookbehind_GSAM": ["--k", "3", "--alpha", "-1", "--hparam", "rho_min=0.0"]}


def test_cli_accepts_every_variant_and_its_hyperparameters():
    example_cifar = pytest.importorskip("example_cifar")
    for name in NEW_NAMES:
        from training import lifecycle
        from training.settings import CifarSettings
        settings, ignored = lifecycle.parse_settings(CifarSettings, example_cifar.parser(),
                                                     ["--minimizer", name.lower(), *CLI_HPARAMS[name]])
        assert settings.minimizer == name
        resolved = settings.minimizer_hparams
        assert not ignored and set(resolved) == set(minimizers.hparams(name))
        argv = CLI_HPARAMS[name]
        for flag, value in zip(argv[::2], argv[1::2]):
            key, _, text = value.partition("=") if flag == "--hparam" else (flag[2:], "", value)
            assert str(resolved[key]).lower() == text.lower() or resolved[key] == float(text), (name, key)
        build(name, make_model(), **resolved)


@pytest.mark.parametrize("name", NEW_NAMES)
def test_cli_trains_one_epoch(name, tmp_path):
    """End to end on the offline sample (the closure's objective argument, the minimizer's checkpoint)."""
    example_cifar = pytest.importorskip("example_cifar")
    out = str(tmp_path / name)
    code = example_cifar.main(["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "16",
                               "--batch_size", "8", "--epochs", "1", "--device", "cpu", "--minimizer", name,
                               "--out", out, *(["--hparam", "num_samples=4"] if name == "SSAM_F" else [])])
    assert code == 0
    assert os.path.exists(os.path.join(out, "checkpoint.pt"))


def test_ssam_d_state_loads_after_map_location_and_cli_resume_matches(tmp_path):
    """SSAM-D through the CLI: 2 epochs straight == 1 epoch + resume (mask, generator, step counter)."""
    example_cifar = pytest.importorskip("example_cifar")
    common = ["--dataset", "CIFAR10_sample", "--model", "resnet8", "--train_subset", "16", "--batch_size", "8",
              "--device", "cpu", "--minimizer", "SSAM_D", "--hparam", "mask_update_interval=1",
              "--hparam", "T_end=100"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert example_cifar.main([*common, "--epochs", "2", "--out", straight]) == 0
    assert example_cifar.main([*common, "--epochs", "1", "--out", split]) == 0
    assert example_cifar.main(["--epochs", "2", "--out", split, "--resume"]) == 0     # settings from config.json
    a = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=True)
    b = torch.load(os.path.join(split, "checkpoint.pt"), weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["minimizer"]["minimizer"]["mask"], b["minimizer"]["minimizer"]["mask"])
