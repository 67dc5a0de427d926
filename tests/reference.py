"""Shared by the minimizer tests: a tiny float64 network, batches, and a deliberately naive reference.

The reference works on plain dicts of named tensors with per-parameter Python loops, its own copy of
the network, ``torch.autograd.grad`` and a hand-written SGD (momentum + weight decay, as
torch.optim.SGD).  Each test file builds its algorithms from these pieces, written from the equations.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import minimizers

LR, MOMENTUM, WD = 0.05, 0.9, 5e-4
BETAS, ADAM_EPS, ADAMW_WD = (0.9, 0.999), 1e-6, 0.05   # AdamW base optimizer (decoupled decay). eps 1e-6, not
# torch's 1e-8: the conv bias before BatchNorm has a zero gradient up to rounding (1e-17), which Adam divides by
# sqrt(v) + eps; with eps 1e-8 that rounding noise alone moves it by lr * 1e-9, above the float64 comparison tolerance.
ATOL = 1e-10


class TinyNet(nn.Module):
    """Conv (weight+bias) -> BatchNorm -> ReLU -> Linear: names with and without 'weight'."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyNet().double()


def make_batches(n=8, seed=1, size=6):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (size,), generator=g))
            for _ in range(n)]


def build(name, model, base="sgd", **hparams):
    if base == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS, weight_decay=ADAMW_WD)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    return minimizers.create(name, model, opt, **hparams)


def lr_at(t):
    """A decaying learning rate (exercises the lr-proportional radius schedules)."""
    return LR * (1.0 - 0.1 * t)


def run(minimizer, model, batches, schedule=False, start=0):
    for t, (x, y) in enumerate(batches, start=start):
        if schedule:
            for group in minimizer.optimizer.param_groups:
                group["lr"] = lr_at(t)
        minimizer.step(minimizers.make_closure(model, F.cross_entropy, x, y))


class Reference:
    """Naive building blocks on a dict of named parameters (``self.weights`` = the model's weights)."""

    def __init__(self, seed=0, bn_policy="every", base="sgd"):
        self.base = base
        self.moments, self.steps = {}, 0   # AdamW's first/second moments and step count
        self.net = make_model(seed)
        self.names = [n for n, _ in self.net.named_parameters()]
        self.weights = {n: p.detach().clone() for n, p in self.net.named_parameters()}
        self.momentum = {}
        self.bn_policy = bn_policy
        self.lr = LR
        self.passes = 0

    def load(self, point):
        with torch.no_grad():
            for n, p in self.net.named_parameters():
                p.copy_(point[n])

    def grad(self, point, batch, clean=True, objective=None):
        """Gradient of the batch loss (or ``objective``) at ``point``; BN buffers updated unless the
        policy is "clean" and the point is perturbed."""
        self.passes += 1
        saved = {k: v.clone() for k, v in self.net.named_buffers()}
        self.load(point)
        x, y = batch
        out = self.net(x)
        self.last_loss = F.cross_entropy(out, y).detach()
        loss = F.cross_entropy(out, y) if objective is None else objective(out, y)
        grads = torch.autograd.grad(loss, list(self.net.parameters()))
        if self.bn_policy == "clean" and not clean:
            with torch.no_grad():
                for k, v in self.net.named_buffers():
                    v.copy_(saved[k])
        return dict(zip(self.names, grads))

    def sgd(self, theta, grad, peek=False):
        """torch.optim.SGD's update (dampening 0, no Nesterov); ``peek`` leaves the momentum as it was."""
        new, momentum = {}, {}
        for n in self.names:
            d = grad[n] + WD * theta[n]
            buf = d.clone() if n not in self.momentum else MOMENTUM * self.momentum[n] + d
            momentum[n] = buf
            new[n] = theta[n] - self.lr * buf
        if not peek:
            self.momentum = momentum
        return new

    def adamw(self, theta, grad):
        """torch.optim.AdamW's update, per parameter: decoupled decay, bias-corrected moments."""
        self.steps += 1
        b1, b2 = BETAS
        new = {}
        for n in self.names:
            m, v = self.moments.get(n, (torch.zeros_like(theta[n]), torch.zeros_like(theta[n])))
            m = b1 * m + (1 - b1) * grad[n]
            v = b2 * v + (1 - b2) * grad[n] * grad[n]
            self.moments[n] = (m, v)
            m_hat, v_hat = m / (1 - b1 ** self.steps), v / (1 - b2 ** self.steps)
            new[n] = theta[n] * (1 - LR * ADAMW_WD) - LR * m_hat / (v_hat.sqrt() + ADAM_EPS)
        return new

    def base_step(self, theta, grad):
        """The base optimizer's step (SGD or AdamW, as built by build(..., base=))."""
        return self.adamw(theta, grad) if self.base == "adamw" else self.sgd(theta, grad)

    def norm(self, g):
        return math.sqrt(sum(float((g[n] ** 2).sum()) for n in self.names))

    def dot(self, a, b):
        return sum(float((a[n] * b[n]).sum()) for n in self.names)

    def eps(self, point, grad, rho, family="SAM", eta=0.01):
        """SAM: rho g / (||g|| + 1e-16).  ASAM: rho T^2 g / (||T g|| + 1e-16), T = |w| + eta on '*weight*'."""
        if family == "SAM":
            norm = self.norm(grad)
            return {n: rho * grad[n] / (norm + 1e-16) for n in self.names}
        t = {n: (point[n].abs() + eta) if "weight" in n else torch.ones_like(point[n]) for n in self.names}
        norm = self.norm({n: t[n] * grad[n] for n in self.names})
        return {n: rho * t[n] ** 2 * grad[n] / (norm + 1e-16) for n in self.names}

    @staticmethod
    def add(a, b, scale=1.0):
        return {n: a[n] + scale * b[n] for n in a}


def assert_matches(model, ref, atol=ATOL):
    """The model's parameters and BatchNorm buffers equal the reference's."""
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), ref.weights[n], atol=atol, rtol=0, msg=f"parameter {n}")
    ref_buffers = dict(ref.net.named_buffers())
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, ref_buffers[n], atol=atol, rtol=0, msg=f"BN buffer {n}")


def forbid_host_sync(monkeypatch):
    """Make every device->host synchronisation raise (undo with ``monkeypatch.undo()``)."""
    def fail(*_, **__):
        raise AssertionError("host synchronisation inside step()")
    for attr in ["item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"]:
        monkeypatch.setattr(torch.Tensor, attr, fail)
    monkeypatch.setattr(torch.cuda, "synchronize", fail)
