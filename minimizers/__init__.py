"""SAM-family minimizers behind one interface.

    import minimizers
    m = minimizers.create("Lookbehind_SAM", model, optimizer, k=2, alpha=-1)
    loss = m.step(closure)          # closure(): zero-grad is done for you; forward, loss.backward(), return loss
    with m.evaluation_weights():    # slow weights in the model for evaluation
        evaluate(model)

Names are case-insensitive and the underscore is optional ("LookbehindSAM" is the authors' spelling).
"""
from dataclasses import dataclass, field

from .base import BN_POLICIES, Minimizer, make_closure
from .lookahead import Lookahead
from .lookbehind import PASSES, Lookbehind
from .multistep import DESCENT_GRADIENTS, Multistep
from .sam import ASAM, SAM, SGD, ASAMAscent, SAMAscent

__all__ = ["create", "available", "hparams", "canonical_name", "describe", "Minimizer", "make_closure",
           "SGD", "SAM", "ASAM", "Lookbehind", "Multistep", "Lookahead", "SAMAscent", "ASAMAscent",
           "BN_POLICIES", "PASSES", "DESCENT_GRADIENTS"]


@dataclass(frozen=True)
class Spec:
    name: str               # canonical name
    build: object           # build(model, optimizer, **hparams) -> Minimizer
    defaults: dict          # every accepted hyperparameter with its default
    passes: str             # gradient evaluations per step, for the docs
    paper: str
    aliases: tuple = field(default=())


_REGISTRY = {}


def register(name, build, defaults, passes, paper, aliases=()):
    """Add a minimizer under ``name``; ``build(model, optimizer, **hparams)`` constructs it."""
    spec = Spec(name, build, dict(defaults), passes, paper, tuple(aliases))
    for key in (name, *aliases):
        _REGISTRY[_key(key)] = spec
    return spec


def _key(name):
    return str(name).lower().replace("_", "").replace("-", "")


def _spec(name):
    try:
        return _REGISTRY[_key(name)]
    except KeyError:
        raise ValueError(f"unknown minimizer {name!r}; available: {', '.join(available())}") from None


def canonical_name(name):
    """The canonical spelling of a minimizer name (ValueError if unknown)."""
    return _spec(name).name


def available():
    """Canonical names of every registered minimizer, in registration order."""
    return list(dict.fromkeys(spec.name for spec in _REGISTRY.values()))


def hparams(name):
    """The hyperparameters ``name`` accepts, with their defaults."""
    return dict(_spec(name).defaults)


def describe(name):
    """The registry entry (name, defaults, passes per step, paper) of a minimizer."""
    return _spec(name)


def create(name, model, optimizer, **hparams):
    """Build minimizer ``name`` around ``model`` and its base ``optimizer``.

    Unknown hyperparameters and invalid values raise ``ValueError`` with a clear message."""
    spec = _spec(name)
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        accepted = ", ".join(spec.defaults) or "none"
        raise ValueError(f"{spec.name} does not take {', '.join(unknown)} (accepts: {accepted})")
    return spec.build(model, optimizer, **{**spec.defaults, **hparams})


# ------------------------------------------------------------------------------------- registry
_SAM = dict(rho=0.05)
_ASAM = dict(rho=0.5, eta=0.01)
_BN = dict(bn_policy="every")
_LOOKBEHIND = dict(k=2, alpha=0.5, passes="shared", minibatch_switching=False)
_MULTISTEP = dict(k=2, descent_gradient="last", split_rho=False)
_LOOKAHEAD = dict(k=5, alpha=0.5)


def _ascent(family, rho, eta=None):
    return SAMAscent(rho) if family == "SAM" else ASAMAscent(rho, eta)


register("SGD", lambda model, opt, bn_policy: SGD(model, opt, bn_policy), _BN, "1",
         "base optimizer (SGD with momentum and weight decay)")
register("SAM", lambda model, opt, rho, bn_policy: SAM(model, opt, rho, bn_policy), {**_SAM, **_BN}, "2",
         "Foret et al., ICLR 2021")
register("ASAM", lambda model, opt, rho, eta, bn_policy: ASAM(model, opt, rho, eta, bn_policy),
         {**_ASAM, **_BN}, "2", "Kwon et al., ICML 2021")

for _family, _defaults in (("SAM", _SAM), ("ASAM", _ASAM)):
    register(f"Lookbehind_{_family}",
             lambda model, opt, rho, k, alpha, passes, minibatch_switching, bn_policy, eta=None, _f=_family:
             Lookbehind(model, opt, _ascent(_f, rho, eta), k, alpha, passes, minibatch_switching, bn_policy),
             {**_defaults, **_LOOKBEHIND, **_BN}, "k+1 (2k with passes=repeat or minibatch_switching)",
             "Mordido et al., ICML 2024")
for _family, _defaults in (("SAM", _SAM), ("ASAM", _ASAM)):
    register(f"Multistep_{_family}",
             lambda model, opt, rho, k, descent_gradient, split_rho, bn_policy, eta=None, _f=_family:
             Multistep(model, opt, _ascent(_f, rho, eta), k, descent_gradient, split_rho, bn_policy),
             {**_defaults, **_MULTISTEP, **_BN}, "k+1", "baseline in Mordido et al., ICML 2024")

register("Lookahead_SGD", lambda model, opt, k, alpha, bn_policy:
         Lookahead(model, opt, SGD(model, opt, bn_policy), k, alpha),
         {**_LOOKAHEAD, **_BN}, "1", "Zhang et al., NeurIPS 2019")
register("Lookahead_SAM", lambda model, opt, rho, k, alpha, bn_policy:
         Lookahead(model, opt, SAM(model, opt, rho, bn_policy), k, alpha),
         {**_SAM, **_LOOKAHEAD, **_BN}, "2", "Zhang et al., NeurIPS 2019 around SAM")
register("Lookahead_ASAM", lambda model, opt, rho, eta, k, alpha, bn_policy:
         Lookahead(model, opt, ASAM(model, opt, rho, eta, bn_policy), k, alpha),
         {**_ASAM, **_LOOKAHEAD, **_BN}, "2", "Zhang et al., NeurIPS 2019 around ASAM")

del _family, _defaults

# SAM-family variants (GSAM, SSAM_F/D, BiSAM_tanh/log, SAMPa, BilateralSAM, Lookbehind_GSAM): minimizers/variants.py
from .variants import BilateralSAM, BiSAM, GSAM, GSAMAscent, SAMPa, SSAMD, SSAMF  # noqa: E402

__all__ += ["GSAM", "GSAMAscent", "SSAMF", "SSAMD", "BiSAM", "SAMPa", "BilateralSAM"]
