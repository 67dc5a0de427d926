"""Registry entries of the SAM-family variants: GSAM, SSAM-F/D, BiSAM, SAMPa, Bilateral SAM, Lookbehind
around GSAM.  Imported by ``minimizers/__init__.py`` after its own entries.

Each variant's defaults reproduce its official code's step, its BatchNorm policy included: GSAM,
BiSAM and Bilateral SAM freeze the statistics on perturbed passes ("clean"), SSAM updates them on every
pass ("every"), SAMPa keeps those of its perturbed passes ("perturbed").  Lookbehind_GSAM is ours and
keeps the Lookbehind authors' "every"."""
from . import register
from .bilateral import BilateralSAM
from .bisam import BiSAM
from .gsam import GSAM, GSAMAscent
from .lookbehind import Lookbehind
from .sampa import SAMPa
from .ssam import SSAMD, SSAMF

_BN = dict(bn_policy="every")
_GSAM = dict(rho_max=0.04, rho_min=0.02, alpha_g=0.01, lr_max=None, lr_min=0.0)
_SSAM = dict(rho=0.1, sparsity=0.5)


def _gsam_ascent(opt, rho_max, rho_min, alpha_g, lr_max, lr_min):
    return GSAMAscent(rho_max, rho_min, alpha_g, lr_max, lr_min).bind(opt)


register("GSAM",
         lambda model, opt, rho_max, rho_min, alpha_g, lr_max, lr_min, bn_policy:
         GSAM(model, opt, rho_max, rho_min, alpha_g, lr_max, lr_min, bn_policy),
         {**_GSAM, "bn_policy": "clean"}, "2", "Zhuang et al., ICLR 2022")

register("SSAM_F",
         lambda model, opt, rho, sparsity, num_samples, mask_update_interval, bn_policy:
         SSAMF(model, opt, rho, sparsity, num_samples, mask_update_interval, bn_policy),
         {**_SSAM, "num_samples": 128, "mask_update_interval": 1955, **_BN},
         "2 (+1 on steps that collect the Fisher information)", "Mi et al., NeurIPS 2022 (SSAM-F)")

register("SSAM_D",
         lambda model, opt, rho, sparsity, drop_rate, mask_update_interval, T_end, drop_criterion,
         grow_criterion, seed, bn_policy:
         SSAMD(model, opt, rho, sparsity, drop_rate, mask_update_interval, T_end, drop_criterion,
               grow_criterion, seed, bn_policy),
         {**_SSAM, "drop_rate": 0.5, "mask_update_interval": 1955, "T_end": 78200,
          "drop_criterion": "gradient", "grow_criterion": "random", "seed": 0, **_BN},
         "2", "Mi et al., NeurIPS 2022 (SSAM-D)")

register("BiSAM_tanh",
         lambda model, opt, rho, mu, alpha_tanh, bn_policy:
         BiSAM(model, opt, rho, "tanh", mu, alpha_tanh, bn_policy),
         {"rho": 0.05, "mu": 10.0, "alpha_tanh": 0.1, "bn_policy": "clean"}, "2 (closure(objective) for the ascent)",
         "Xie et al., ICML 2024")

register("BiSAM_log",
         lambda model, opt, rho, mu, bn_policy: BiSAM(model, opt, rho, "log", mu, 0.1, bn_policy),
         {"rho": 0.05, "mu": 1.0, "bn_policy": "clean"}, "2 (closure(objective) for the ascent)",
         "Xie et al., ICML 2024")

register("SAMPa",
         lambda model, opt, rho, lam, first_step, bn_policy: SAMPa(model, opt, rho, lam, first_step, bn_policy),
         {"rho": 0.1, "lam": 0.2, "first_step": "sgd", "bn_policy": "perturbed"},
         "2 (computed one after the other on one device)",
         "Xie, Pethick & Cevher, NeurIPS 2024")

register("BilateralSAM",
         lambda model, opt, rho_max, rho_min, anneal, beta, lr_max, lr_min, official_code, bn_policy:
         BilateralSAM(model, opt, rho_max, rho_min, anneal, beta, lr_max, lr_min, official_code, bn_policy),
         {"rho_max": 0.05, "rho_min": 0.05, "anneal": True, "beta": 1.0, "lr_max": None, "lr_min": 0.0,
          "official_code": False, "bn_policy": "clean"},
         "3 (2 with beta=0)", "Deng et al., 2024 (arXiv 2409.13173)", aliases=("BSAM",))

register("Lookbehind_GSAM",
         lambda model, opt, rho_max, rho_min, alpha_g, lr_max, lr_min, k, alpha, passes, minibatch_switching,
         bn_policy:
         Lookbehind(model, opt, _gsam_ascent(opt, rho_max, rho_min, alpha_g, lr_max, lr_min), k, alpha, passes,
                    minibatch_switching, bn_policy),
         {**_GSAM, "k": 2, "alpha": 0.5, "passes": "shared", "minibatch_switching": False, **_BN},
         "k+1 (2k with passes=repeat or minibatch_switching)", "Mordido et al., ICML 2024 around GSAM")

__all__ = ["GSAM", "GSAMAscent", "SSAMF", "SSAMD", "BiSAM", "SAMPa", "BilateralSAM"]
