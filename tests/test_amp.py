"""fp16 mixed precision: a torch.amp.GradScaler attached to every minimizer (minimizers/amp.py, docs/fp16.md).

* scaling by a power of two is exact, so in fp32 without autocast a scaled trajectory is the unscaled one
  bit for bit, for every minimizer (each evaluation is unscaled before anything reads it);
* with fp16 autocast on the CPU a scaled run stays within fp16 tolerance of the fp32 run;
* a non-finite gradient in any one evaluation of a step makes the whole step a no-op (weights, BatchNorm
  buffers, base optimizer state, the minimizer's state_dict and counters bit for bit) and the scale backs
  off once; the following steps are those of a run that never saw that batch;
* one host read per step (the scaler's found_inf), nothing else;
* the scaler's state travels in the minimizer's state_dict; bad uses are refused.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import minimizers
from minimizers.base import SCALER_KEY
from reference import build, make_batches, make_model

# Every registered name, with hyperparameters that make its periodic events (Lookahead's synchronisation,
# SSAM's mask updates and Fisher passes, adaptive alphas) happen within the few steps of a test, plus the
# variants whose step differs (Lookbehind's repeat / minibatch switching, BilateralSAM's official code).
PERIODIC = {
    "Lookbehind_SAM": dict(alpha=-1), "Lookahead_SGD": dict(k=2), "Lookahead_SAM": dict(k=2),
    "Lookahead_ASAM": dict(k=3), "SSAM_F": dict(mask_update_interval=2, num_samples=8),
    "SSAM_D": dict(mask_update_interval=2, T_end=100, drop_criterion="gradient", grow_criterion="random"),
    "Multistep_SAM": dict(descent_gradient="mean"),
}
CONFIGS = [(name, PERIODIC.get(name, {})) for name in minimizers.available()] + [
    ("Lookbehind_SAM", dict(alpha=-1, passes="repeat")),
    ("Lookbehind_SAM", dict(alpha=-1, minibatch_switching=True, k=3)),
    ("Lookbehind_GSAM", dict(minibatch_switching=True)),
    ("BilateralSAM", dict(official_code=True)),
    ("SSAM_D", dict(mask_update_interval=1, T_end=100, drop_criterion="weight", grow_criterion="random")),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, hp in CONFIGS]
STEPS = 4


def fp32_batches(n=STEPS + 3):
    return [(x.float(), y) for x, y in make_batches(n)]


def scaler_for(init_scale=2.0 ** 10, growth_interval=2):
    """A CPU GradScaler; growth_interval 2 makes the scale grow during a test (still a power of two)."""
    return torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=growth_interval)


def setup(name, hparams, scaler=None, base="sgd"):
    model = make_model().float()
    return model, build(name, model, base=base, **hparams).attach_scaler(scaler)


def closure_for(model, batch, scaler=None, autocast=False, bad_pass=None, counter=None, kind="grad"):
    """make_closure, optionally in fp16 autocast, counting its calls in ``counter`` and making call number
    ``bad_pass`` (1-based, over the whole step) non-finite: one gradient entry set to inf ("grad"), or
    the logits multiplied by inf ("outputs": every gradient and the loss non-finite, the Fisher pass too)."""
    inputs, targets = batch
    counter = [0] if counter is None else counter

    def criterion(outputs, y):
        if kind == "outputs" and counter[0] == bad_pass:
            outputs = outputs * math.inf
        return F.cross_entropy(outputs, y)

    context = (lambda: torch.autocast("cpu", dtype=torch.float16)) if autocast else None
    plain = minimizers.make_closure(model, criterion, inputs, targets, scaler=scaler, autocast=context)

    def one_inf(grad):
        grad = grad.clone()
        grad[0, 0] = math.inf
        return grad

    def closure(objective=None):
        counter[0] += 1
        bad = counter[0] == bad_pass
        if bad and objective is not None:
            # An objective's own gradients (SSAM-F's per-sample Fisher gradients) leave no .grad to poison:
            # poison the gradient reaching the logits instead.
            inner = objective

            def objective(outputs, y):
                if kind == "outputs":
                    return inner(outputs * math.inf, y)
                outputs = outputs.clone()
                outputs.register_hook(one_inf)
                return inner(outputs, y)
        loss = plain() if objective is None else plain(objective)
        if bad and kind == "grad" and model.fc.weight.grad is not None:
            with torch.no_grad():
                model.fc.weight.grad[0, 0] = math.inf
        return loss
    return closure


def run(model, minimizer, batches, scaler=None, autocast=False):
    for batch in batches:
        minimizer.step(closure_for(model, batch, scaler, autocast))


def assert_same(a, b, where="state"):
    """Nested dicts/lists/tensors/values equal exactly."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def full_state(model, minimizer):
    """Everything a step may change: the model's parameters and buffers, the minimizer's state_dict (base
    optimizer state, its own buffers and counters; not the scaler's), and every Python value and replaced
    tensor among its attributes (counters such as Lookahead's fast_steps, the adaptive-alpha statistics)."""
    state = minimizer.state_dict()
    state.pop(SCALER_KEY, None)
    members = []
    for member in minimizer._members():
        plain = {key: value for key, value in vars(member).items()
                 if isinstance(value, (bool, int, float, str, type(None))) and key not in ("scaler", "_amp")}
        plain.update({key: getattr(member, key) for key in member._step_counters()})
        members.append(plain)
    return copy.deepcopy((model.state_dict(), state, members))


# ------------------------------------------------------------------------------------ equivalence

@pytest.mark.parametrize("name,hparams", CONFIGS, ids=IDS)
def test_a_power_of_two_scale_gives_the_unscaled_trajectory_bit_for_bit(name, hparams):
    batches = fp32_batches(STEPS)
    model_a, plain = setup(name, hparams)
    run(model_a, plain, batches)
    scaler = scaler_for()
    model_b, scaled = setup(name, hparams, scaler)
    run(model_b, scaled, batches, scaler)
    assert scaler.get_scale() == 2.0 ** 10 * 2 ** (STEPS // 2)       # no step skipped; the scale grew
    assert_same(full_state(model_a, plain), full_state(model_b, scaled))


@pytest.mark.parametrize("name", ["SGD", "SAM", "Lookbehind_SAM", "Lookahead_SAM"])
def test_adamw_base_optimizer_under_a_scaler_bit_for_bit(name):
    batches = fp32_batches(STEPS)
    model_a, plain = setup(name, PERIODIC.get(name, {}), base="adamw")
    run(model_a, plain, batches)
    scaler = scaler_for()
    model_b, scaled = setup(name, PERIODIC.get(name, {}), scaler, base="adamw")
    run(model_b, scaled, batches, scaler)
    assert_same(full_state(model_a, plain), full_state(model_b, scaled))


@pytest.mark.parametrize("name,hparams", CONFIGS, ids=IDS)
def test_fp16_autocast_with_a_scaler_stays_within_fp16_tolerance(name, hparams):
    """fp16 autocast on the CPU: the scaled run is the unscaled fp16 run up to the rounding of the scaled
    fp16 backward (measured <= 4e-5 here, weights moved by ~0.1), and the fp32 run up to fp16's error."""
    batches = fp32_batches(STEPS)
    runs = []
    for scale, autocast in [(None, False), (None, True), (2.0 ** 12, True)]:
        scaler = scaler_for(scale) if scale else None
        model, minimizer = setup(name, hparams, scaler)
        run(model, minimizer, batches, scaler, autocast)
        runs.append(model.state_dict())
    fp32, fp16, scaled = runs
    for key, value in scaled.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, fp16[key], atol=2e-4, rtol=0, msg=key)
            torch.testing.assert_close(value, fp32[key], atol=1e-2, rtol=0, msg=key)


def test_a_disabled_scaler_is_no_scaler():
    batches = fp32_batches(3)
    model_a, plain = setup("Lookbehind_SAM", {})
    run(model_a, plain, batches)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model_b, other = setup("Lookbehind_SAM", {}, scaler)
    run(model_b, other, batches, scaler)
    assert_same(full_state(model_a, plain), full_state(model_b, other))
    assert SCALER_KEY not in other.state_dict()


# ------------------------------------------------------------------------------- skipped steps

def passes_of_step(name, hparams, warm):
    """Closure calls of the step after ``warm`` steps."""
    scaler = scaler_for()
    model, minimizer = setup(name, hparams, scaler)
    batches = fp32_batches()
    run(model, minimizer, batches[:warm], scaler)
    counter = [0]
    minimizer.step(closure_for(model, batches[warm], scaler, counter=counter))
    return counter[0]


@pytest.mark.parametrize("name,hparams", CONFIGS, ids=IDS)
@pytest.mark.parametrize("warm", [1, 2])
def test_a_non_finite_evaluation_makes_the_whole_step_a_no_op(name, hparams, warm):
    """Whichever evaluation of the step goes non-finite: every piece of state is as before the step, the
    scale halves (once), and the run continues as if the batch had never been seen."""
    batches = fp32_batches()
    scaler_ref = scaler_for(growth_interval=1000)
    model_ref, reference = setup(name, hparams, scaler_ref)
    run(model_ref, reference, batches[:warm] + batches[warm + 1:warm + 3], scaler_ref)
    passes = passes_of_step(name, hparams, warm)
    assert passes >= 1
    for kind in ("grad", "outputs"):
        for bad in range(1, passes + 1):
            scaler = scaler_for(growth_interval=1000)
            model, minimizer = setup(name, hparams, scaler)
            run(model, minimizer, batches[:warm], scaler)
            before, scale = full_state(model, minimizer), scaler.get_scale()
            minimizer.step(closure_for(model, batches[warm], scaler, bad_pass=bad, kind=kind))
            where = f"{kind} at evaluation {bad} of {passes}"
            assert scaler.get_scale() == scale / 2, where                 # backed off once
            assert scaler._get_growth_tracker() == 0, where
            assert_same(before, full_state(model, minimizer), where)
            assert all(p.grad is None for p in minimizer.params), where
            run(model, minimizer, batches[warm + 1:warm + 3], scaler)
            assert_same(full_state(model_ref, reference), full_state(model, minimizer), where)


def test_fp16_overflow_backs_off_until_steps_are_taken():
    """A real fp16 overflow (scale 2^20 on the CPU, the tiny net overflows above 2^16): the first four steps
    are skipped, each halving the scale and leaving the model as it was; then training proceeds."""
    scaler = scaler_for(2.0 ** 20, growth_interval=1000)
    model, minimizer = setup("Lookbehind_SAM", dict(alpha=-1), scaler)
    initial = copy.deepcopy(model.state_dict())
    scales = []
    for batch in fp32_batches(8):
        minimizer.step(closure_for(model, batch, scaler, autocast=True))
        scales.append(scaler.get_scale())
        if len(scales) == 4:
            assert_same(initial, model.state_dict())
    assert scales == [2.0 ** 19, 2.0 ** 18, 2.0 ** 17, 2.0 ** 16] + [2.0 ** 16] * 4
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(initial["conv.weight"], model.conv.weight)


# ------------------------------------------------------------------------------- host syncs

def count_host_reads(monkeypatch):
    """forbid_host_sync (tests/reference.py), except that Tensor.item is allowed and counted: the scaler's
    found_inf read."""
    reads = []
    item = torch.Tensor.item

    def counted(self):
        reads.append(tuple(self.shape))
        return item(self)

    def fail(*_, **__):
        raise AssertionError("host synchronisation inside step()")
    for attr in ["tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"]:
        monkeypatch.setattr(torch.Tensor, attr, fail)
    monkeypatch.setattr(torch.Tensor, "item", counted)
    monkeypatch.setattr(torch.cuda, "synchronize", fail)
    return reads


@pytest.mark.parametrize("name,hparams", CONFIGS, ids=IDS)
def test_a_scaled_step_reads_the_host_once(name, hparams, monkeypatch):
    scaler = scaler_for()
    model, minimizer = setup(name, hparams, scaler)
    batches = fp32_batches(STEPS)
    run(model, minimizer, batches[:1], scaler)              # lazy state (momentum buffers) exists
    reads = count_host_reads(monkeypatch)
    for i, batch in enumerate(batches[1:], start=1):
        minimizer.step(closure_for(model, batch, scaler, bad_pass=1 if i == 2 else None))
        assert reads == [()] * i                             # found_inf, nothing else
    monkeypatch.undo()
    assert scaler.get_scale() < 2.0 ** 10 * 2 ** (STEPS // 2)   # the bad step did back off


# ------------------------------------------------------------------------------------ the API

def test_create_takes_the_scaler_and_state_dict_carries_it():
    scaler = scaler_for(2.0 ** 8)
    model = make_model().float()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    minimizer = minimizers.create("Lookahead_SAM", model, optimizer, scaler=scaler, rho=0.05)
    assert minimizer.scaler is scaler and minimizer.inner.scaler is None
    run(model, minimizer, fp32_batches(3), scaler)
    state = copy.deepcopy(minimizer.state_dict())
    assert state[SCALER_KEY] == scaler.state_dict() and state[SCALER_KEY]["scale"] == 2.0 ** 9

    other_scaler = scaler_for(2.0 ** 3)
    other_model = make_model(seed=5).float()
    other = minimizers.create("Lookahead_SAM", other_model, torch.optim.SGD(other_model.parameters(), lr=0.05,
                                                                            momentum=0.9), scaler=other_scaler)
    other.load_state_dict(state)
    assert other_scaler.state_dict() == scaler.state_dict()
    plain = minimizers.create("Lookahead_SAM", other_model, other.optimizer)
    plain.load_state_dict(state)                           # without a scaler the entry is ignored
    assert plain.scaler is None and SCALER_KEY not in plain.state_dict()


def test_bad_uses_are_refused():
    model = make_model().float()
    minimizer = build("SAM", model)
    with pytest.raises(ValueError, match="GradScaler"):
        minimizer.attach_scaler(object())
    with pytest.raises(ValueError, match="fp32 parameters"):
        build("SAM", make_model().half()).attach_scaler(scaler_for())
    scaler = scaler_for()
    minimizer.attach_scaler(scaler)
    batch = fp32_batches(1)[0]
    with pytest.raises(RuntimeError, match="did not call scaler.scale"):
        minimizer.step(closure_for(model, batch, scaler=None))     # the closure forgot to scale
    minimizer.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    with pytest.raises(RuntimeError, match="two-call"):
        minimizer.ascent_step()
    assert minimizer.attach_scaler(None).scaler is None


def test_all_reduce_makes_every_process_skip_the_same_steps():
    """attach_scaler(all_reduce=...) sums found_inf over the processes before it is read: here a stand-in for
    another process that saw a non-finite gradient on the second step (its found_inf adds 1)."""
    calls = []

    def all_reduce(found):
        calls.append(found.clone())
        if len(calls) == 2:
            found.add_(1.0)
        return found
    scaler = scaler_for(growth_interval=1000)
    model, minimizer = setup("Lookbehind_SAM", dict(alpha=-1), scaler)
    minimizer.attach_scaler(scaler, all_reduce=all_reduce)
    batches = fp32_batches(3)
    run(model, minimizer, batches[:1], scaler)
    before = full_state(model, minimizer)
    run(model, minimizer, batches[1:2], scaler)
    assert_same(before, full_state(model, minimizer))
    assert scaler.get_scale() == 2.0 ** 9 and [float(c) for c in calls] == [0.0, 0.0]
    run(model, minimizer, batches[2:], scaler)
    assert len(calls) == 3 and scaler.get_scale() == 2.0 ** 9
