"""The SAM-family variants (GSAM, SSAM-F/D, BiSAM, SAMPa, Bilateral SAM, Lookbehind-GSAM) against naive
float64 references written from the equations in the module docstrings.

The references work on dicts of named tensors with per-parameter Python loops, their own copy of the
network, ``torch.autograd.grad`` and a hand-written SGD (momentum + weight decay, as torch.optim.SGD).
BatchNorm running statistics are updated at every pass (bn_policy "every") unless a test says otherwise,
and the comparisons include the BN buffers.
"""
import io
import math
import os

import pytest
import torch
import torch.nn.functional as F

import minimizers
from minimizers.bisam import BiSAM

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


class VariantReference(Reference):
    """GSAM's pieces on top of the shared naive building blocks."""

    def sam_eps(self, g, rho):
        return self.eps(None, g, rho, "SAM")

    def gsam_direction(self, g, gp, alpha_g):
        coef = self.dot(g, gp) / (self.norm(gp) ** 2 + 1e-16)
        return {n: gp[n] - alpha_g * (g[n] - coef * gp[n]) for n in self.names}


def gsam_rho(rho_max, rho_min, lr, lr_max=LR, lr_min=0.0):
    return rho_min + (rho_max - rho_min) * (lr - lr_min) / (lr_max - lr_min)


def assert_equal_models(a, b):
    for (n, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), n


# ------------------------------------------------------------------------------------------- GSAM
@pytest.mark.parametrize("bn_policy", ["every", "clean"])
def test_gsam_matches_reference(bn_policy):
    rho_max, rho_min, alpha_g = 0.1, 0.02, 0.3
    model, ref, batches = make_model(), VariantReference(bn_policy=bn_policy), make_batches()
    run(build("GSAM", model, rho_max=rho_max, rho_min=rho_min, alpha_g=alpha_g, bn_policy=bn_policy),
        model, batches, schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        w = ref.weights
        g = ref.grad(w, batch)
        gp = ref.grad(ref.add(w, ref.sam_eps(g, gsam_rho(rho_max, rho_min, ref.lr))), batch, clean=False)
        ref.weights = ref.sgd(w, ref.gsam_direction(g, gp, alpha_g))
    assert_matches(model, ref)


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


def test_gsam_reduces_to_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    run(build("GSAM", a, rho_max=0.05, rho_min=0.05, alpha_g=0.0), a, batches, schedule=True)
    run(build("SAM", b, rho=0.05), b, batches, schedule=True)
    assert_equal_models(a, b)


# -------------------------------------------------------------------------------- Lookbehind-GSAM
@pytest.mark.parametrize("passes", ["shared", "repeat"])
@pytest.mark.parametrize("k,alpha", [(2, 0.5), (3, -1)])
def test_lookbehind_gsam_matches_reference(passes, k, alpha):
    rho_max, rho_min, alpha_g = 0.1, 0.05, 0.4
    model, ref, batches = make_model(), VariantReference(), make_batches(4)
    run(build("Lookbehind_GSAM", model, rho_max=rho_max, rho_min=rho_min, alpha_g=alpha_g, k=k, alpha=alpha,
              passes=passes), model, batches, schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        rho = gsam_rho(rho_max, rho_min, ref.lr)
        phi = ref.weights
        perturbed, theta, theta_1 = dict(phi), dict(phi), None
        for i in range(k):
            g = ref.grad(perturbed, batch)
            perturbed = ref.add(perturbed, ref.sam_eps(g, rho))
            gp = ref.grad(perturbed, batch)
            theta = ref.sgd(theta, ref.gsam_direction(g, gp, alpha_g))
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


def test_lookbehind_gsam_reduces_to_lookbehind_sam_exactly():
    for passes in ["shared", "repeat"]:
        a, b, batches = make_model(), make_model(), make_batches(4)
        run(build("Lookbehind_GSAM", a, rho_max=0.05, rho_min=0.05, alpha_g=0.0, k=3, alpha=-1, passes=passes),
            a, batches, schedule=True)
        run(build("Lookbehind_SAM", b, rho=0.05, k=3, alpha=-1, passes=passes), b, batches, schedule=True)
        assert_equal_models(a, b)


# ------------------------------------------------------------------------------------------- SSAM
def reference_fisher(ref, point, batches_and_counts):
    """Sum of squared per-sample gradients, BatchNorm in eval mode (running statistics)."""
    ref.load(point)
    ref.net.eval()
    fisher = {n: torch.zeros_like(point[n]) for n in ref.names}
    for (x, y), count in batches_and_counts:
        for i in range(count):
            loss = F.cross_entropy(ref.net(x[i:i + 1]), y[i:i + 1])
            for n, g in zip(ref.names, torch.autograd.grad(loss, list(ref.net.parameters()))):
                fisher[n] += g * g
    ref.net.train()
    return fisher


def top_mask(ref, scores, keep):
    flat = torch.cat([scores[n].flatten() for n in ref.names])
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, keep).indices] = 1.0
    return split_flat(ref, mask)


def split_flat(ref, flat):
    out, start = {}, 0
    for n in ref.names:
        size = ref.weights[n].numel()
        out[n] = flat[start:start + size].view_as(ref.weights[n])
        start += size
    return out


@pytest.mark.parametrize("num_samples,interval", [(4, 3), (10, 4)])
def test_ssam_f_matches_reference(num_samples, interval):
    rho, sparsity = 0.1, 0.6
    model, ref, batches = make_model(), VariantReference(), make_batches(7)
    m = build("SSAM_F", model, rho=rho, sparsity=sparsity, num_samples=num_samples, mask_update_interval=interval)
    run(m, model, batches)
    numel = sum(p.numel() for p in model.parameters())
    keep = int(round((1 - sparsity) * numel))
    mask = {n: torch.ones_like(w) for n, w in ref.weights.items()}
    collected, fisher = 0, None
    for t, batch in enumerate(batches):
        w = ref.weights
        g = ref.grad(w, batch)                                # the clean pass comes first
        if t % interval == 0 or fisher is not None:          # a Fisher sum may span several steps
            count = min(batch[1].shape[0], num_samples - collected)
            part = reference_fisher(ref, w, [(batch, count)])    # at w, BN running statistics as now
            fisher = part if fisher is None else {n: fisher[n] + part[n] for n in ref.names}
            collected += count
            if collected >= num_samples:
                mask = top_mask(ref, fisher, keep)
                fisher, collected = None, 0
        eps = {n: e * mask[n] for n, e in ref.sam_eps(g, rho).items()}
        ref.weights = ref.sgd(w, ref.grad(ref.add(w, eps), batch, clean=False))
    assert_matches(model, ref)
    assert int(m.mask_flat.sum()) == keep


def test_ssam_d_matches_reference():
    rho, sparsity, drop_rate, interval, t_end, seed = 0.1, 0.5, 0.8, 2, 5, 7
    for drop_criterion, grow_criterion in [("gradient", "random"), ("weight", "gradient")]:
        model, ref, batches = make_model(), VariantReference(), make_batches(7)
        m = build("SSAM_D", model, rho=rho, sparsity=sparsity, drop_rate=drop_rate, mask_update_interval=interval,
                  T_end=t_end, drop_criterion=drop_criterion, grow_criterion=grow_criterion, seed=seed)
        run(m, model, batches)
        numel = sum(p.numel() for p in model.parameters())
        keep = int(round((1 - sparsity) * numel))
        gen = torch.Generator().manual_seed(seed)
        flat_mask = torch.zeros(numel, dtype=torch.float64)
        flat_mask[torch.topk(torch.rand(numel, generator=gen), keep).indices] = 1.0
        for t, batch in enumerate(batches):
            w = ref.weights
            g = ref.grad(w, batch)
            if t > 0 and t % interval == 0 and t < t_end:
                n_swap = min(int(drop_rate / 2 * (1 + math.cos(math.pi * t / t_end)) * keep), numel - keep)
                flat_g = torch.cat([g[n].flatten() for n in ref.names]).abs()
                flat_w = torch.cat([w[n].flatten() for n in ref.names]).abs()
                active = flat_mask == 1
                drop_score = (flat_g if drop_criterion == "gradient" else flat_w).clone()
                drop_score[~active] = math.inf
                grow_score = (torch.rand(numel, generator=gen, dtype=torch.float64) if grow_criterion == "random"
                              else flat_g.clone())
                grow_score[active] = -math.inf
                drop = torch.topk(drop_score, n_swap, largest=False).indices
                grow = torch.topk(grow_score, n_swap).indices
                flat_mask[drop] = 0.0
                flat_mask[grow] = 1.0
            mask = split_flat(ref, flat_mask)
            eps = {n: e * mask[n] for n, e in ref.sam_eps(g, rho).items()}
            ref.weights = ref.sgd(w, ref.grad(ref.add(w, eps), batch, clean=False))
        assert_matches(model, ref)
        assert torch.equal(m.mask_flat, flat_mask)


@pytest.mark.parametrize("name,extra", [("SSAM_F", {"num_samples": 4, "mask_update_interval": 2}),
                                        ("SSAM_D", {"mask_update_interval": 2, "T_end": 10})])
def test_ssam_sparsity_zero_is_sam_exactly(name, extra):
    a, b, batches = make_model(), make_model(), make_batches()
    run(build(name, a, rho=0.1, sparsity=0.0, **extra), a, batches)
    run(build("SAM", b, rho=0.1), b, batches)
    assert_equal_models(a, b)


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
    """Q, one sample at a time."""
    total = 0.0
    for f, y in zip(outputs, targets):
        margins = f - f[y]
        if phi == "tanh":
            v = torch.tanh(alpha * margins)
        else:
            v = 1.0 - torch.log(1.0 + torch.exp(math.log(math.e - 1.0) - margins))
        total = total + torch.log(torch.exp(mu * v).sum()) / mu
    return total / len(targets)


@pytest.mark.parametrize("name,phi,mu,alpha", [("BiSAM_tanh", "tanh", 10.0, 0.1), ("BiSAM_tanh", "tanh", 2.0, 0.5),
                                                ("BiSAM_log", "log", 1.0, None), ("BiSAM_log", "log", 3.0, None)])
def test_bisam_matches_reference(name, phi, mu, alpha):
    rho = 0.07
    model, ref, batches = make_model(), VariantReference(), make_batches()
    hp = {"rho": rho, "mu": mu, **({"alpha_tanh": alpha} if alpha is not None else {})}
    losses = []
    m = build(name, model, **hp)
    for x, y in batches:
        losses.append(m.step(minimizers.make_closure(model, F.cross_entropy, x, y)))
    for batch, loss in zip(batches, losses):
        w = ref.weights
        q_grad = ref.grad(w, batch, objective=lambda out, y: reference_q(out, y, phi, mu, alpha))
        torch.testing.assert_close(loss, ref.last_loss, atol=1e-12, rtol=0)     # step returns L(w)
        ref.weights = ref.sgd(w, ref.grad(ref.add(w, ref.sam_eps(q_grad, rho)), batch, clean=False))
    assert_matches(model, ref)


def test_bisam_surrogate_values():
    out = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    for phi, mu, alpha in [("tanh", 10.0, 0.1), ("log", 1.0, 0.1)]:
        q = minimizers.bisam.bisam_surrogate(phi, mu, alpha)(out, y)
        torch.testing.assert_close(q, reference_q(out, y, phi, mu, alpha), atol=1e-12, rtol=0)
    # phi(0) = 0 for both surrogates
    zero = torch.zeros(1, 1, dtype=torch.float64)
    assert minimizers.bisam.bisam_surrogate("log")(zero, torch.zeros(1, dtype=torch.long)).abs() < 1e-15


def test_bisam_with_cross_entropy_ascent_is_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    opt = torch.optim.SGD(a.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    run(BiSAM(a, opt, rho=0.05, surrogate="ce"), a, batches)
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
@pytest.mark.parametrize("lam", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("bn_policy", ["every", "clean"])
def test_sampa_matches_reference(lam, bn_policy):
    """Paper indexing: x~_t = x_t + rho g_y(t)/|g_y(t)|, y_{t+1} = base step of x_t with g_y(t) (state not
    kept), x_{t+1} = base step of x_t with (1-lam) grad f(x~_t; B_t) + lam grad f(y_{t+1}; B_{t+1}).
    After N calls the model holds x_{N-1}."""
    rho = 0.1
    model, ref, batches = make_model(), VariantReference(bn_policy=bn_policy), make_batches(6)
    run(build("SAMPa", model, rho=rho, lam=lam, bn_policy=bn_policy), model, batches, schedule=True)
    x = ref.weights
    g_y = ref.grad(x, batches[0])                                          # y_0 = x_0
    for t in range(len(batches)):
        g_tilde = ref.grad(ref.add(x, ref.sam_eps(g_y, rho)), batches[t], clean=False)
        if t == len(batches) - 1:
            break
        ref.lr = lr_at(t + 1)                                              # applied in call t+1
        y_next = ref.sgd(x, g_y, peek=True)
        g_y = ref.grad(y_next, batches[t + 1])
        x = ref.sgd(x, {n: (1 - lam) * g_tilde[n] + lam * g_y[n] for n in ref.names})
    ref.weights = x
    assert_matches(model, ref)


def test_sampa_rho0_lam0_is_the_base_optimizer_one_call_late():
    a, b, batches = make_model(), make_model(), make_batches(6)
    run(build("SAMPa", a, rho=0.0, lam=0.0), a, batches)
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


# -------------------------------------------------------------------------------------- Bilateral
@pytest.mark.parametrize("anneal,beta", [(True, 1.0), (False, 1.0), (True, 0.5)])
def test_bilateral_sam_matches_reference(anneal, beta):
    rho_max, rho_min = 0.08, 0.05
    model, ref, batches = make_model(), VariantReference(), make_batches()
    run(build("BilateralSAM", model, rho_max=rho_max, rho_min=rho_min, anneal=anneal, beta=beta), model, batches,
        schedule=True)
    for t, batch in enumerate(batches):
        ref.lr = lr_at(t)
        r_min = rho_min * ref.lr / LR if anneal else rho_min
        w = ref.weights
        g0 = ref.grad(w, batch)
        n0 = ref.norm(g0)
        g_max = ref.grad({n: w[n] + rho_max * g0[n] / (n0 + 1e-16) for n in ref.names}, batch, clean=False)
        g_min = ref.grad({n: w[n] - r_min * g0[n] / (n0 + 1e-16) for n in ref.names}, batch, clean=False)
        ratio = ref.norm(g_max) / (ref.norm(g_min) + 1e-16)
        d = {n: g_max[n] + beta * (g0[n] - ratio * g_min[n]) for n in ref.names}
        ref.weights = ref.sgd(w, d)
    assert_matches(model, ref)


def test_bilateral_beta0_is_sam_exactly():
    a, b, batches = make_model(), make_model(), make_batches()
    run(build("BilateralSAM", a, rho_max=0.05, beta=0.0), a, batches)
    run(build("SAM", b, rho=0.05), b, batches)
    assert_equal_models(a, b)


# ------------------------------------------------------------------------------------ common checks
VARIANTS = [
    ("GSAM", {}), ("GSAM", {"alpha_g": 0.0}), ("SSAM_F", {"num_samples": 4, "mask_update_interval": 2}),
    ("SSAM_F", {"num_samples": 9, "mask_update_interval": 3}),
    ("SSAM_D", {"mask_update_interval": 2, "T_end": 7}), ("SSAM_D", {"mask_update_interval": 1, "T_end": 7,
                                                                      "drop_criterion": "weight",
                                                                      "grow_criterion": "gradient"}),
    ("BiSAM_tanh", {}), ("BiSAM_log", {}), ("SAMPa", {}), ("SAMPa", {"lam": 0.0}),
    ("BilateralSAM", {}), ("BilateralSAM", {"beta": 0.0}),
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
    assert isinstance(minimizers.describe(name).passes, str)


def test_documented_pass_counts():
    expected = {"GSAM": 2, "SSAM_D": 2, "BiSAM_tanh": 2, "BiSAM_log": 2, "SAMPa": 2, "BilateralSAM": 3}
    for name, passes in expected.items():
        assert build(name, make_model()).gradient_evaluations == passes
        assert minimizers.describe(name).passes.startswith(str(passes))
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
        assert spec.paper and spec.passes
    assert minimizers.canonical_name("bisamtanh") == "BiSAM_tanh"
    assert minimizers.canonical_name("ssam-f") == "SSAM_F"


@pytest.mark.parametrize("name,hp,message", [
    ("GSAM", {"rho_max": 0.01, "rho_min": 0.02}, "rho_min"),
    ("GSAM", {"alpha_g": -0.1}, "alpha_g"),
    ("GSAM", {"lr_min": -1.0}, "lr_min"),
    ("GSAM", {"rho": 0.05}, "does not take rho"),
    ("Lookbehind_GSAM", {"k": 0}, "k must"),
    ("SSAM_F", {"sparsity": 1.5}, "sparsity"),
    ("SSAM_F", {"num_samples": 0}, "num_samples"),
    ("SSAM_F", {"mask_update_interval": 2.5}, "mask_update_interval"),
    ("SSAM_D", {"drop_rate": -0.1}, "drop_rate"),
    ("SSAM_D", {"drop_criterion": "random"}, "drop_criterion"),
    ("SSAM_D", {"grow_criterion": "weight"}, "grow_criterion"),
    ("SSAM_D", {"T_end": 0}, "T_end"),
    ("SSAM_D", {"seed": 1.5}, "seed"),
    ("BiSAM_tanh", {"mu": 0.0}, "mu"),
    ("BiSAM_tanh", {"alpha_tanh": -1.0}, "alpha_tanh"),
    ("BiSAM_log", {"alpha_tanh": 0.1}, "does not take alpha_tanh"),
    ("SAMPa", {"lam": 1.5}, "lam"),
    ("SAMPa", {"rho": -1.0}, "rho"),
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
        args = example_cifar.build_parser().parse_args(["--minimizer", name.lower(), *CLI_HPARAMS[name]])
        assert args.minimizer == name
        resolved, ignored = example_cifar.resolve_minimizer_hparams(args)
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


def test_readme_minimizer_table_lists_every_name_and_hyperparameter():
    with open(os.path.join(REPO, "README.md")) as f:
        rows = {line.split("|")[1].strip().split()[0].strip("`"): line for line in f if line.startswith("| `")}
    for name in minimizers.available():
        assert name in rows, name
        for key, value in minimizers.hparams(name).items():
            if key != "bn_policy":
                assert f"`{key}=" in rows[name], (name, key)
        assert minimizers.describe(name).passes.split()[0] in rows[name], name


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
