"""The minimizers as torch.optim.Optimizers: shared param_groups, LR schedulers built on the minimizer,
state_dict in the standard shape (and the earlier shape), and the errors for bad input."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F

import minimizers
from reference import LR, MOMENTUM, WD, build, make_batches, make_model

NAMES = minimizers.available()


def closure_for(model, batch):
    return minimizers.make_closure(model, F.cross_entropy, *batch)


def snapshot(model, minimizer):
    return copy.deepcopy((model.state_dict(), minimizer.state_dict()))


def assert_same(a, b):
    """Nested dicts/lists/tensors equal exactly."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_every_minimizer_is_an_optimizer_sharing_the_base_param_groups(name):
    model = make_model()
    m = build(name, model)
    assert isinstance(m, torch.optim.Optimizer)
    assert m.param_groups is m.base_optimizer.param_groups and m.state is m.base_optimizer.state
    assert m.optimizer is m.base_optimizer
    m.param_groups[0]["lr"] = 0.01
    assert m.base_optimizer.param_groups[0]["lr"] == 0.01


def test_multistep_lr_on_the_minimizer_sets_the_lr_of_the_base_step():
    """A plain loop with MultiStepLR(minimizer, ...) is the same trajectory as setting the base lr by hand."""
    batches = make_batches(6)
    model_a, model_b = make_model(), make_model()
    a, b = build("Lookbehind_SAM", model_a, alpha=-1), build("Lookbehind_SAM", model_b, alpha=-1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(a, milestones=[2, 4], gamma=0.1)
    for t, batch in enumerate(batches):
        for group in b.base_optimizer.param_groups:
            group["lr"] = LR * 0.1 ** ((t >= 2) + (t >= 4))
        a.step(closure_for(model_a, batch))
        b.step(closure_for(model_b, batch))
        scheduler.step()
    assert a.param_groups[0]["lr"] == pytest.approx(LR * 0.01)
    for x, y in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name,radius", [("GSAM", lambda m: m.ascent.rho),
                                         ("BilateralSAM", lambda m: m.current_rho_min())])
def test_lr_proportional_radius_reads_the_lr_a_scheduler_on_the_minimizer_sets(name, radius):
    model = make_model()
    m = build(name, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(m, lambda epoch: 0.5 ** epoch)
    first = radius(m)
    m.step(closure_for(model, make_batches(1)[0]))
    scheduler.step()
    assert m.param_groups[0]["lr"] == pytest.approx(LR / 2)
    assert radius(m) != first


def test_state_dict_has_the_standard_optimizer_shape():
    model = make_model()
    m = build("Lookbehind_SAM", model, alpha=-1)
    m.step(closure_for(model, make_batches(1)[0]))
    state = m.state_dict()
    assert {"state", "param_groups"} <= set(state)
    base = m.base_optimizer.state_dict()
    assert_same(state["param_groups"], base["param_groups"])
    assert_same(state["state"], base["state"])      # momentum buffers, keyed by parameter index


@pytest.mark.parametrize("name", ["Lookbehind_SAM", "Lookahead_SAM", "SSAM_D"])
def test_state_dict_of_the_earlier_format_still_loads(name):
    """Checkpoints written before the minimizers were torch optimizers: {"base_optimizer", "minimizer"}."""
    batches = make_batches(5)
    model = make_model()
    m = build(name, model, k=3) if name.startswith("Look") else build(name, model, mask_update_interval=1)
    for batch in batches[:2]:
        m.step(closure_for(model, batch))
    current = m.state_dict()
    old = {"base_optimizer": {"state": current["state"], "param_groups": current["param_groups"]},
           "minimizer": current["minimizer"]}
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "minimizer": old}, buffer)
    for batch in batches[2:]:
        m.step(closure_for(model, batch))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = make_model(seed=5)
    resumed = build(name, resumed_model, k=3) if name.startswith("Look") else \
        build(name, resumed_model, mask_update_interval=1)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["minimizer"])
    for batch in batches[2:]:
        resumed.step(closure_for(resumed_model, batch))
    assert_same(model.state_dict(), resumed_model.state_dict())


class Wider(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_model()
        self.net.fc = torch.nn.Linear(4 * 6 * 6, 7).double()

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("source,message", [
    (lambda: build("SAM", make_model()), "from a SAM.* not Lookbehind"),          # another minimizer
    (lambda: build("Lookbehind_ASAM", make_model()), "not Lookbehind\\(SAMAscent"),   # another ascent rule
    (lambda: build("Lookbehind_SAM", Wider()), "another model"),                  # another model
])
def test_loading_a_state_dict_of_another_minimizer_or_model_fails_and_changes_nothing(source, message):
    batches = make_batches(2)
    other = source()
    other.step(closure_for(other.model, batches[0]))
    model = make_model()
    m = build("Lookbehind_SAM", model, alpha=-1)
    m.step(closure_for(model, batches[1]))
    before = snapshot(model, m)
    with pytest.raises(ValueError, match=message):
        m.load_state_dict(other.state_dict())
    assert_same(before, snapshot(model, m))


def test_bad_state_dicts_fail_clearly_and_change_nothing():
    model = make_model()
    m = build("Lookbehind_SAM", model, k=3)
    batches = make_batches(2)
    m.step(closure_for(model, batches[0]))
    m.ascent_step.__func__      # the two-call style exists
    good = m.state_dict()
    before = snapshot(model, m)
    with pytest.raises(ValueError, match="plain optimizer's state_dict"):
        m.load_state_dict(m.base_optimizer.state_dict())
    with pytest.raises(ValueError, match="not a minimizer state_dict"):
        m.load_state_dict([1, 2])
    # a mid-cycle state whose buffers are missing: the base optimizer's part is rolled back too
    broken = copy.deepcopy(good)
    broken["minimizer"] = {"inner_step": 1}
    broken["param_groups"][0]["lr"] = 123.0
    with pytest.raises(ValueError, match="cannot load"):
        m.load_state_dict(broken)
    assert_same(before, snapshot(model, m))
    assert m.param_groups[0]["lr"] == LR


def test_bad_construction_and_protocol_errors():
    model = make_model()
    other = make_model(seed=3)
    with pytest.raises(ValueError, match="does not hold these trainable parameters"):
        minimizers.create("SAM", model, torch.optim.SGD(other.parameters(), lr=0.1))
    m = build("SAM", model)
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        minimizers.create("SAM", model, m)          # a minimizer is not a base optimizer
    with pytest.raises(ValueError, match="cannot take new parameter groups"):
        m.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    assert len(m.param_groups) == 1
    with pytest.raises(ValueError, match="needs a closure"):
        m.step()


def test_two_call_style_and_zero_grad_still_work():
    """The authors' style: backward, ascent_step, backward, descent_step == step(closure)."""
    batch = make_batches(1)[0]
    model_a, model_b = make_model(), make_model()
    a, b = build("SAM", model_a), build("SAM", model_b)
    a.step(closure_for(model_a, batch))
    F.cross_entropy(model_b(batch[0]), batch[1]).backward()
    b.ascent_step()
    F.cross_entropy(model_b(batch[0]), batch[1]).backward()
    b.descent_step()
    assert_same(model_a.state_dict(), model_b.state_dict())
    F.cross_entropy(model_b(batch[0]), batch[1]).backward()
    b.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model_b.parameters())
    b.zero_grad()
    assert all(p.grad is None for p in model_b.parameters())


def test_torch_sgd_hyperparameters_unchanged():
    m = build("SGD", make_model())
    assert (m.defaults["lr"], m.defaults["momentum"], m.defaults["weight_decay"]) == (LR, MOMENTUM, WD)
