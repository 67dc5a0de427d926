"""SAM-family minimizers behind one interface; each is a ``torch.optim.Optimizer``.

    import minimizers
    m = minimizers.create("Lookbehind_SAM", model, optimizer, k=2, alpha=-1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(m, [50, 100, 150])   # m.param_groups are optimizer's
    loss = m.step(closure)          # closure(): zero-grad is done for you; forward, loss.backward(), return loss
    with m.evaluation_weights():    # slow weights in the model for evaluation
        evaluate(model)

Names are case-insensitive and the underscore is optional ("LookbehindSAM" is the authors' spelling).
Every name, its hyperparameters and their defaults: ``minimizers/registry.py``.
"""
from .base import BN_POLICIES, NORM_EPS, Minimizer, make_closure
from .bilateral import BilateralSAM
from .bisam import BiSAM
from .gsam import GSAM, GSAMAscent
from .lookahead import Lookahead
from .lookbehind import PASSES, Lookbehind
from .multistep import DESCENT_GRADIENTS, Multistep
from .registry import available, canonical_name, create, defaults_by_value, describe, hparams, markdown_table, register
from .sam import ASAM, SAM, SGD, ASAMAscent, SAMAscent
from .sampa import SAMPa
from .ssam import SSAMD, SSAMF

__all__ = ["create", "available", "hparams", "canonical_name", "describe", "register", "markdown_table",
           "defaults_by_value", "Minimizer", "make_closure", "SGD", "SAM", "ASAM", "Lookbehind", "Multistep",
           "Lookahead", "SAMAscent", "ASAMAscent", "GSAM", "GSAMAscent", "SSAMF", "SSAMD", "BiSAM", "SAMPa",
           "BilateralSAM", "BN_POLICIES", "PASSES", "DESCENT_GRADIENTS", "NORM_EPS"]
