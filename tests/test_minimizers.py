"""Every minimizer against a deliberately naive float64 reference written from the equations.

The reference works on plain dicts of tensors with per-parameter Python loops, its own copy of the
network, ``torch.autograd.grad`` and a hand-written SGD (momentum + weight decay, as torch.optim.SGD).
It evaluates gradients the way the authors' code does (Lookbehind: 2k passes per step, BatchNorm
updated at every pass), so the comparison also covers the k+1-pass optimisation and the BN buffers.
"""
import copy
import io

import pytest
import torch
import torch.nn.functional as F

import minimizers
from reference import Reference, assert_matches, build, forbid_host_sync, make_batches, make_model, run


# -------------------------------------------------------------------------------------- reference
class MinimizerReference(Reference):
    """The paper's algorithms and baselines, step by step, on the naive building blocks."""

    # ---- algorithms: each updates self.weights (the model's weights) for one step on ``batch``
    def sgd_step(self, batch):
        self.weights = self.sgd(self.weights, self.grad(self.weights, batch, clean=True))

    def sam_step(self, batch, rho, family="SAM"):
        phi = self.weights
        g = self.grad(phi, batch, clean=True)
        g_perturbed = self.grad(self.add(phi, self.eps(phi, g, rho, family)), batch, clean=False)
        self.weights = self.base_step(phi, g_perturbed)

    def lookbehind_step(self, batches, rho, k, alpha, family="SAM"):
        """One outer step; ``batches`` has k entries (the same batch k times without switching)."""
        phi = self.weights
        perturbed, theta, theta_1 = dict(phi), dict(phi), None
        for i in range(k):
            g = self.grad(perturbed, batches[i], clean=(i == 0))
            perturbed = self.add(perturbed, self.eps(perturbed, g, rho, family))
            theta = self.base_step(theta, self.grad(perturbed, batches[i], clean=False))
            theta_1 = theta if i == 0 else theta_1
        new = {}
        for n in self.names:
            a = alpha
            if alpha == -1:
                u, v = (theta_1[n] - phi[n]).flatten(), (theta[n] - phi[n]).flatten()
                cos = float(u @ v) / (max(float(u.norm()), 1e-8) * max(float(v.norm()), 1e-8))
                a = (cos + 1) / 2
            new[n] = phi[n] + a * (theta[n] - phi[n])
        self.weights = new

    def multistep_step(self, batch, rho, k, family="SAM", mean=False, split=False):
        phi = self.weights
        point = dict(phi)
        g = self.grad(point, batch, clean=True)
        collected = []
        for _ in range(k):
            point = self.add(point, self.eps(point, g, rho / k if split else rho, family))
            g = self.grad(point, batch, clean=False)
            collected.append(g)
        d = {n: sum(c[n] for c in collected) / k for n in self.names} if mean else g
        self.weights = self.sgd(phi, d)


# ------------------------------------------------------------------------------------------ tests
def test_sgd_matches_reference():
    model, ref, batches = make_model(), MinimizerReference(), make_batches()
    run(build("SGD", model), model, batches)
    for b in batches:
        ref.sgd_step(b)
    assert_matches(model, ref)


@pytest.mark.parametrize("family,rho", [("SAM", 0.05), ("ASAM", 0.5)])
@pytest.mark.parametrize("bn_policy", ["every", "clean"])
def test_sam_asam_match_reference(family, rho, bn_policy):
    model, ref, batches = make_model(), MinimizerReference(bn_policy=bn_policy), make_batches()
    run(build(family, model, rho=rho, bn_policy=bn_policy), model, batches)
    for b in batches:
        ref.sam_step(b, rho, family)
    assert_matches(model, ref)


@pytest.mark.parametrize("family,rho", [("SAM", 0.05), ("ASAM", 0.5)])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.5, -1])
@pytest.mark.parametrize("passes", ["shared", "repeat"])
def test_lookbehind_matches_reference(family, rho, k, alpha, passes):
    model, ref, batches = make_model(), MinimizerReference(), make_batches(6)
    run(build(f"Lookbehind_{family}", model, rho=rho, k=k, alpha=alpha, passes=passes), model, batches)
    for b in batches:
        ref.lookbehind_step([b] * k, rho, k, alpha, family)
    assert_matches(model, ref)


@pytest.mark.parametrize("name", ["SAM", "Lookbehind_SAM"])
@pytest.mark.parametrize("alpha", [0.5, -1])
def test_sam_and_lookbehind_around_adamw_match_reference(name, alpha):
    """The minimizers only call the base optimizer's step(): AdamW (decoupled decay, bias-corrected moments,
    one step per inner step of Lookbehind) against a hand-written per-parameter AdamW, in float64."""
    model, ref, batches = make_model(), MinimizerReference(base="adamw"), make_batches(6)
    hparams = {"rho": 0.05} if name == "SAM" else {"rho": 0.05, "k": 2, "alpha": alpha}
    run(build(name, model, base="adamw", **hparams), model, batches)
    for b in batches:
        if name == "SAM":
            ref.sam_step(b, 0.05)
        else:
            ref.lookbehind_step([b] * 2, 0.05, 2, alpha)
    assert ref.steps == len(batches) * (1 if name == "SAM" else 2)
    assert_matches(model, ref)


@pytest.mark.parametrize("passes", ["shared", "repeat"])
def test_lookbehind_clean_bn_policy_matches_reference(passes):
    model, ref, batches = make_model(), MinimizerReference(bn_policy="clean"), make_batches(5)
    run(build("Lookbehind_SAM", model, k=3, alpha=-1, passes=passes, bn_policy="clean"), model, batches)
    for b in batches:
        ref.lookbehind_step([b] * 3, 0.05, 3, -1)
    assert_matches(model, ref)


@pytest.mark.parametrize("k", [2, 3])
def test_lookbehind_minibatch_switching_matches_reference(k):
    model, ref, batches = make_model(), MinimizerReference(), make_batches(2 * k)
    m = build("Lookbehind_SAM", model, k=k, alpha=-1, minibatch_switching=True)
    run(m, model, batches)
    for start in range(0, len(batches), k):
        ref.lookbehind_step(batches[start:start + k], 0.05, k, -1)
    assert m.inner_step == 0
    assert_matches(model, ref)


def test_lookbehind_k1_adaptive_is_sam():
    a, b = make_model(), make_model()
    batches = make_batches()
    run(build("Lookbehind_ASAM", a, k=1, alpha=-1), a, batches)
    run(build("ASAM", b), b, batches)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-13, rtol=0)


@pytest.mark.parametrize("family,rho", [("SAM", 0.05), ("ASAM", 0.5)])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("mean,split", [(False, False), (True, False), (False, True)])
def test_multistep_matches_reference(family, rho, k, mean, split):
    model, ref, batches = make_model(), MinimizerReference(), make_batches(5)
    m = build(f"Multistep_{family}", model, rho=rho, k=k,
              descent_gradient="mean" if mean else "last", split_rho=split)
    run(m, model, batches)
    for b in batches:
        ref.multistep_step(b, rho, k, family, mean, split)
    assert_matches(model, ref)


@pytest.mark.parametrize("inner", ["SGD", "SAM", "ASAM"])
def test_lookahead_matches_reference(inner):
    k, alpha = 3, 0.5
    model, ref, batches = make_model(), MinimizerReference(), make_batches(7)   # ends mid-cycle
    m = build(f"Lookahead_{inner}", model, k=k, alpha=alpha)
    run(m, model, batches)
    slow = dict(ref.weights)
    for i, b in enumerate(batches, start=1):
        if inner == "SGD":
            ref.sgd_step(b)
        else:
            ref.sam_step(b, 0.05 if inner == "SAM" else 0.5, inner)
        if i % k == 0:
            slow = {n: slow[n] + alpha * (ref.weights[n] - slow[n]) for n in slow}
            ref.weights = dict(slow)
    assert_matches(model, ref)                          # the model holds the fast weights
    fast = copy.deepcopy(ref.weights)
    with m.evaluation_weights():                        # ... and evaluation sees the slow ones
        ref.weights = slow
        assert_matches(model, ref)
    ref.weights = fast
    assert_matches(model, ref)                          # restored


def test_shared_and_repeat_passes_agree_in_float32():
    """The k+1 path against the literal 2k path on a float32 model over many steps."""
    models = [make_model().float(), make_model().float()]
    batches = [(x.float(), y) for x, y in make_batches(10)]
    for model, passes in zip(models, ["shared", "repeat"]):
        run(build("Lookbehind_SAM", model, k=4, alpha=-1, passes=passes), model, batches)
    for (n, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=n)
        else:
            assert torch.equal(a, b), n


@pytest.mark.parametrize("name,hp,calls", [
    ("SGD", {}, 1), ("SAM", {}, 2), ("ASAM", {}, 2),
    ("Lookbehind_SAM", {"k": 2}, 3), ("Lookbehind_SAM", {"k": 5}, 6),
    ("Lookbehind_SAM", {"k": 5, "passes": "repeat"}, 10), ("Lookbehind_ASAM", {"k": 3}, 4),
    ("Multistep_SAM", {"k": 3}, 4), ("Lookahead_SAM", {}, 2), ("Lookahead_SGD", {}, 1),
])
def test_closure_call_counts(name, hp, calls):
    model = make_model()
    m = build(name, model, **hp)
    x, y = make_batches(1)[0]
    count = []
    inner = minimizers.make_closure(model, F.cross_entropy, x, y)

    def closure():
        assert all(p.grad is None for p in model.parameters()), "gradients not zeroed before the call"
        count.append(1)
        return inner()

    loss = m.step(closure)
    assert len(count) == calls == m.gradient_evaluations
    assert torch.equal(loss, F.cross_entropy(make_model()(x), y).detach())   # first call, clean weights


def test_lookbehind_minibatch_switching_call_counts():
    model = make_model()
    m = build("Lookbehind_SAM", model, k=3, minibatch_switching=True)
    count = []
    for x, y in make_batches(3):
        inner = minimizers.make_closure(model, F.cross_entropy, x, y)
        m.step(lambda: (count.append(1), inner())[1])
    assert len(count) == 6 == m.gradient_evaluations


@pytest.mark.parametrize("name,hp", [
    ("SGD", {}), ("SAM", {}), ("ASAM", {}), ("Lookbehind_SAM", {"alpha": -1, "k": 3}),
    ("Lookbehind_ASAM", {"alpha": -1, "passes": "repeat"}), ("Lookbehind_SAM", {"minibatch_switching": True}),
    ("Lookbehind_SAM", {"bn_policy": "clean"}), ("Multistep_SAM", {"descent_gradient": "mean"}),
    ("Multistep_ASAM", {"split_rho": True}), ("Lookahead_SAM", {"k": 2}), ("Lookahead_ASAM", {"k": 2}),
])
def test_no_host_sync_in_step(name, hp, monkeypatch):
    model = make_model()
    m = build(name, model, **hp)
    batches = make_batches(4)
    closures = [minimizers.make_closure(model, F.cross_entropy, x, y) for x, y in batches]
    forbid_host_sync(monkeypatch)
    for c in closures:
        m.step(c)
    monkeypatch.undo()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name,hp", [
    ("SGD", {}), ("SAM", {}), ("ASAM", {}), ("Lookbehind_SAM", {"alpha": -1}),
    ("Lookbehind_ASAM", {"k": 3, "alpha": 0.5}), ("Lookbehind_SAM", {"k": 3, "alpha": -1, "minibatch_switching": True}),
    ("Multistep_SAM", {"descent_gradient": "mean"}), ("Lookahead_SAM", {"k": 3}), ("Lookahead_ASAM", {"k": 3}),
])
def test_state_dict_round_trip_continues_identically(name, hp):
    batches = make_batches(8)
    model = make_model()
    m = build(name, model, **hp)
    run(m, model, batches[:4])                       # mid-cycle for Lookahead / switching Lookbehind
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "minimizer": m.state_dict()}, buffer)
    run(m, model, batches[4:])

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = make_model(seed=123)             # different initial weights: everything must come from the state
    resumed = build(name, resumed_model, **hp)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["minimizer"])
    run(resumed, resumed_model, batches[4:])
    for (n, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), n
    with m.evaluation_weights(), resumed.evaluation_weights():
        for a, b in zip(model.parameters(), resumed_model.parameters()):
            assert torch.equal(a, b)


def test_two_call_style_matches_step():
    """The authors' loop (ascent_step/descent_step after the user's own backward) equals step()."""
    batches = make_batches(4)
    a, b = make_model(), make_model()
    m_a = build("Lookbehind_SAM", a, k=2, alpha=-1, passes="repeat")
    run(m_a, a, batches)
    m_b = build("Lookbehind_SAM", b, k=2, alpha=-1)
    for x, y in batches:
        for _ in range(2):
            F.cross_entropy(b(x), y).backward()
            m_b.ascent_step()
            F.cross_entropy(b(x), y).backward()
            m_b.descent_step()
    for (n, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), n

    c, d = make_model(), make_model()
    run(build("SAM", c), c, batches)
    sam = build("SAM", d)
    for x, y in batches:
        F.cross_entropy(d(x), y).backward()
        sam.ascent_step()
        F.cross_entropy(d(x), y).backward()
        sam.descent_step()
    for pc, pd in zip(c.parameters(), d.parameters()):
        assert torch.equal(pc, pd)


def test_weights_loaded_after_construction_are_used():
    """Slow weights are read from the model at each outer step, not frozen at construction."""
    batches = make_batches(3)
    a = make_model()
    m = build("Lookbehind_SAM", a, alpha=-1)
    a.load_state_dict(make_model(seed=7).state_dict())
    run(m, a, batches)
    b = make_model(seed=7)
    run(build("Lookbehind_SAM", b, alpha=-1), b, batches)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_lookbehind_buffer_count():
    m = build("Lookbehind_SAM", make_model(), k=3)
    assert m.first_fast_weights is None        # 3 buffers with a fixed alpha ...
    m = build("Lookbehind_SAM", make_model(), k=3, alpha=-1)
    assert m.first_fast_weights is not None    # ... 4 with the adaptive one


def test_registry_names():
    assert minimizers.available()[:3] == ["SGD", "SAM", "ASAM"]
    for spelling in ["LookbehindSAM", "lookbehind_sam", "LOOKBEHIND-SAM", "Lookbehind_SAM"]:
        assert minimizers.canonical_name(spelling) == "Lookbehind_SAM"
    assert minimizers.hparams("Lookbehind_ASAM")["rho"] == 0.5
    assert minimizers.hparams("Lookbehind_SAM")["rho"] == 0.05
    for name in ["SGD", "SAM", "ASAM", "Lookbehind_SAM", "Lookbehind_ASAM", "Multistep_SAM", "Multistep_ASAM",
                 "Lookahead_SGD", "Lookahead_SAM", "Lookahead_ASAM"]:
        assert name in minimizers.available()


@pytest.mark.parametrize("name,hp,message", [
    ("SAM", {"rho": -0.1}, "rho"),
    ("ASAM", {"eta": -1.0}, "eta"),
    ("Lookbehind_SAM", {"k": 0}, "k must"),
    ("Lookbehind_SAM", {"k": 2.5}, "k must"),
    ("Lookbehind_SAM", {"alpha": 0.0}, "alpha"),
    ("Lookbehind_SAM", {"alpha": 1.5}, "alpha"),
    ("Lookbehind_SAM", {"alpha": -0.5}, "alpha"),
    ("Lookahead_SAM", {"alpha": -1}, "alpha"),
    ("Lookbehind_SAM", {"passes": "twice"}, "passes"),
    ("Multistep_SAM", {"descent_gradient": "median"}, "descent_gradient"),
    ("SAM", {"bn_policy": "never"}, "bn_policy"),
    ("SAM", {"k": 2}, "does not take k"),
    ("NoSuchSAM", {}, "unknown minimizer"),
])
def test_bad_arguments_raise(name, hp, message):
    with pytest.raises(ValueError, match=message):
        build(name, make_model(), **hp)


def test_alpha_one_is_accepted():
    build("Lookbehind_SAM", make_model(), alpha=1)
