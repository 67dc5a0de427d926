"""Every minimizer name, in one place, and ``create(name, model, optimizer, **hparams)``.

A name is a minimizer class, optionally with an ascent rule class (Lookbehind_SAM = Lookbehind with
SAMAscent) or an inner registered minimizer (Lookahead_SAM = Lookahead around SAM).  Its
hyperparameters and their defaults are read from those classes' signatures, which are the only place
a default is written; ``create`` passes them as keywords.  The README table
(``markdown_table()``, tested to be in docs/minimizers.md) and the CLI help come from here.
"""
import inspect
from dataclasses import dataclass, field

from .bilateral import BilateralSAM
from .bisam import BiSAM
from .gsam import GSAM, GSAMAscent
from .lookahead import Lookahead
from .lookbehind import Lookbehind
from .multistep import Multistep
from .sam import ASAM, SAM, SGD, ASAMAscent, SAMAscent
from .sampa import SAMPa
from .ssam import SSAMD, SSAMF

# Constructor arguments that are not hyperparameters: what the minimizer wraps, and the numerical guard
# of the norms (``eps``: each method's official value, a constructor argument only).
_STRUCTURAL = ("self", "model", "optimizer", "ascent", "inner", "eps")


def _keywords(cls, hidden=()):
    """{name: default} of the keyword arguments of ``cls`` that are hyperparameters."""
    out = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if name in _STRUCTURAL or name in hidden or parameter.kind in (parameter.VAR_POSITIONAL,
                                                                        parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            raise TypeError(f"{cls.__name__}.{name} has no default: every hyperparameter needs one")
        out[name] = parameter.default
    return out


@dataclass(frozen=True)
class Spec:
    name: str                    # canonical name
    cls: type                    # the minimizer class, called with keywords
    gradient_evaluations: str    # closure calls per step, for the docs
    paper: str
    ascent: type = None          # ascent rule class (its keywords are hyperparameters too)
    inner: str = None            # registered minimizer wrapped by ``cls`` (Lookahead)
    fixed: dict = field(default_factory=dict)    # keywords the name fixes (BiSAM_log: surrogate="log")
    hidden: tuple = ()           # keywords of cls this name does not expose (the class default is used)
    defaults_override: dict = field(default_factory=dict)   # defaults of this name that differ from cls's
    aliases: tuple = ()

    @property
    def defaults(self):
        """Every hyperparameter with its default: the inner minimizer's or ascent rule's, then the class's."""
        out = dict(_spec(self.inner).defaults) if self.inner else {}
        if self.ascent is not None:
            out.update(_keywords(self.ascent))
        out.update(_keywords(self.cls, hidden=(*self.fixed, *self.hidden)))
        out.update(self.defaults_override)
        if "bn_policy" in out:           # every minimizer takes it: listed last
            out["bn_policy"] = out.pop("bn_policy")
        return out

    def build(self, model, optimizer, **hparams):
        hparams = {**self.defaults, **hparams}
        kwargs = dict(self.fixed)
        if self.inner:
            inner_names = set(_spec(self.inner).defaults)
            kwargs["inner"] = _spec(self.inner).build(model, optimizer,
                                                      **{k: v for k, v in hparams.items() if k in inner_names})
            hparams = {k: v for k, v in hparams.items() if k not in inner_names}
        if self.ascent is not None:
            ascent_names = set(_keywords(self.ascent))
            kwargs["ascent"] = self.ascent(**{k: v for k, v in hparams.items() if k in ascent_names})
            hparams = {k: v for k, v in hparams.items() if k not in ascent_names}
        return self.cls(model, optimizer, **kwargs, **hparams)


_REGISTRY = {}


def register(name, cls, gradient_evaluations, paper, **options):
    """Add a minimizer under ``name`` (and its aliases)."""
    spec = Spec(name, cls, gradient_evaluations, paper, **options)
    spec.defaults          # fail now, not at create(), if a signature lacks a default
    for key in (name, *spec.aliases):
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
    return _spec(name).defaults


def describe(name):
    """The registry entry (name, defaults, gradient evaluations per step, paper) of a minimizer."""
    return _spec(name)


def create(name, model, optimizer, scaler=None, **hparams):
    """Build minimizer ``name`` around ``model`` and its base ``optimizer``.

    ``scaler``: a ``torch.amp.GradScaler`` for fp16 mixed precision (``Minimizer.attach_scaler``; the closure
    then back-propagates ``scaler.scale(loss)``; docs/fp16.md).  Unknown hyperparameters and invalid values
    raise ``ValueError`` with a clear message."""
    spec = _spec(name)
    defaults = spec.defaults
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        raise ValueError(f"{spec.name} does not take {', '.join(unknown)} (accepts: {', '.join(defaults) or 'none'})")
    return spec.build(model, optimizer, **hparams).attach_scaler(scaler)


def markdown_table():
    """The README's minimizer table, from the registry (bn_policy, which every minimizer takes, shown
    where its default is not "every")."""
    lines = ["| Name | Hyperparameters (defaults) | Gradient evaluations per step | Paper |", "|---|---|---|---|"]
    for name in available():
        spec = _spec(name)
        aliases = f" (alias {', '.join(f'`{a}`' for a in spec.aliases)})" if spec.aliases else ""
        defaults = spec.defaults
        hp = ", ".join(f"`{key}={value!r}`" for key, value in defaults.items() if key != "bn_policy") or "—"
        if defaults.get("bn_policy", "every") != "every":      # the default of most: only the exceptions shown
            hp += f"; `bn_policy={defaults['bn_policy']!r}`"
        lines.append(f"| `{name}`{aliases} | {hp} | {spec.gradient_evaluations} | {spec.paper} |")
    return "\n".join(lines) + "\n"


def defaults_by_value(key):
    """{default value: [names]} of hyperparameter ``key`` over the minimizers that take it (CLI help)."""
    out = {}
    for name in available():
        defaults = _spec(name).defaults
        if key in defaults:
            out.setdefault(defaults[key], []).append(name)
    return out


# ------------------------------------------------------------------------------------- the names
_LOOKBEHIND_EVALS = "k+1 (2k with `passes='repeat'` or `minibatch_switching`)"
_LOOKBEHIND = "Mordido et al., ICML 2024"

register("SGD", SGD, "1", "base optimizer (SGD with momentum and weight decay)")
register("SAM", SAM, "2", "Foret et al., ICLR 2021", ascent=SAMAscent)
register("ASAM", ASAM, "2", "Kwon et al., ICML 2021", ascent=ASAMAscent)
register("Lookbehind_SAM", Lookbehind, _LOOKBEHIND_EVALS, _LOOKBEHIND, ascent=SAMAscent)
register("Lookbehind_ASAM", Lookbehind, _LOOKBEHIND_EVALS, _LOOKBEHIND, ascent=ASAMAscent)
register("Lookbehind_GSAM", Lookbehind, _LOOKBEHIND_EVALS, f"{_LOOKBEHIND} around GSAM (Zhuang et al., ICLR 2022)",
         ascent=GSAMAscent)
register("Multistep_SAM", Multistep, "k+1", f"baseline in {_LOOKBEHIND}", ascent=SAMAscent)
register("Multistep_ASAM", Multistep, "k+1", f"baseline in {_LOOKBEHIND}", ascent=ASAMAscent)
register("Lookahead_SGD", Lookahead, "1", "Zhang et al., NeurIPS 2019", inner="SGD")
register("Lookahead_SAM", Lookahead, "2", "Zhang et al., NeurIPS 2019 around SAM", inner="SAM")
register("Lookahead_ASAM", Lookahead, "2", "Zhang et al., NeurIPS 2019 around ASAM", inner="ASAM")
register("GSAM", GSAM, "2", "Zhuang et al., ICLR 2022", ascent=GSAMAscent)
register("SSAM_F", SSAMF, "2 (+1 on steps that collect the Fisher information)", "Mi et al., NeurIPS 2022 (SSAM-F)")
register("SSAM_D", SSAMD, "2", "Mi et al., NeurIPS 2022 (SSAM-D)")
register("BiSAM_tanh", BiSAM, "2 (the ascent pass calls `closure(objective)`)", "Xie et al., ICML 2024",
         fixed={"surrogate": "tanh"})
# The log surrogate has no alpha_tanh, and its mu default is the authors' 1.0 (tanh: 10.0).
register("BiSAM_log", BiSAM, "2 (the ascent pass calls `closure(objective)`)", "Xie et al., ICML 2024",
         fixed={"surrogate": "log"}, hidden=("alpha_tanh",), defaults_override={"mu": 1.0})
register("SAMPa", SAMPa, "2 (independent; on one device one after the other)", "Xie, Pethick & Cevher, NeurIPS 2024")
register("BilateralSAM", BilateralSAM, "3 (2 with `beta=0`)", "Deng et al., 2024 (arXiv 2409.13173)",
         aliases=("BSAM",))
