"""Vision transformers from timm (an optional dependency: ``pip install timm``, or the ``vit`` extra).

    vit_tiny_patch4 / vit_small_patch4   timm's VisionTransformer for 32 x 32 CIFAR images trained from
                                         scratch: 4 x 4 patches (64 tokens + the class token), the ViT-Ti
                                         (embed 192, depth 12, 3 heads) and ViT-S (384, 12, 6) widths
    vit_small_patch16_224                timm's vit_small_patch16_224, for fine-tuning a pretrained ViT-S/16:
                                         its first layer resizes the 32 x 32 images to 224 x 224 on the
                                         device (bilinear, no antialiasing), so the data pipeline is unchanged
                                         and the state dict is exactly timm's (a timm checkpoint loads as is)

timm is imported inside the constructors, so the registry (and everything that imports models) works
without it; a ViT asked for without timm raises MissingPackage (an ImportError) with TIMM_HINT.
Constructor options go to timm's VisionTransformer (e.g. depth=2 for a small test model, drop_path_rate).
No weights are ever downloaded: pretrained weights are a local file (models.load_pretrained, --pretrained).
"""
import importlib.util

import torch.nn as nn
import torch.nn.functional as F

PACKAGE = "timm"
TIMM_HINT = "needs the timm package (pip install timm)"

# The CIFAR-from-scratch widths: timm's vit_tiny / vit_small, with 4 x 4 patches of 32 x 32 images.
CIFAR_VITS = {
    "vit_tiny_patch4": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch4": dict(embed_dim=384, depth=12, num_heads=6),
}
# timm's vit_small_patch16_224 (timm.models.vision_transformer.vit_small_patch16_224's model_args).
VIT_SMALL_PATCH16_224 = dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6)


class MissingPackage(ImportError):
    """A model needs an optional package that is not installed; str() says which and how to install it."""


def timm_available():
    """Whether timm can be imported, without importing it (slow); False where sys.modules["timm"] is None."""
    try:
        return importlib.util.find_spec(PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def _vision_transformer():
    try:
        import timm  # noqa: F401  (first: fails where timm is missing, even with timm.models imported before)
        from timm.models import vision_transformer
    except ImportError as exc:
        raise MissingPackage(TIMM_HINT) from exc
    return vision_transformer


def cifar_vit(name, num_classes=10, **options):
    """timm's VisionTransformer for 32 x 32 inputs: img_size 32, patch 4, the widths of CIFAR_VITS[name]."""
    vision_transformer = _vision_transformer()
    config = dict(img_size=32, patch_size=4, **CIFAR_VITS[name])
    config.update(options)
    return vision_transformer.VisionTransformer(num_classes=num_classes, **config)


class Resize(nn.Module):
    """Resize images to size x size on their device (bilinear, no antialiasing; a no-op at that size)."""

    def __init__(self, size):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def forward(self, x):
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)

    def extra_repr(self):
        return f"size={self.size}, mode=bilinear, antialias=False"


_RESIZED_CLASSES = {}


def resized_vit_class():
    """timm's VisionTransformer with a first layer `resize` (no parameters, so the state dict is timm's).
    Made on first use (timm is imported then); also models.vit.ResizedVisionTransformer."""
    vision_transformer = _vision_transformer()   # MissingPackage whenever timm cannot be imported
    if "class" not in _RESIZED_CLASSES:

        class ResizedVisionTransformer(vision_transformer.VisionTransformer):
            """timm's VisionTransformer whose forward first resizes the images to its img_size."""

            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.resize = Resize(self.patch_embed.img_size)

            def forward(self, x):
                return super().forward(self.resize(x))

        ResizedVisionTransformer.__qualname__ = "ResizedVisionTransformer"   # picklable: module __getattr__
        _RESIZED_CLASSES["class"] = ResizedVisionTransformer
    return _RESIZED_CLASSES["class"]


def __getattr__(name):
    if name == "ResizedVisionTransformer":
        return resized_vit_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def vit_small_patch16_224(num_classes=10, **options):
    """timm's vit_small_patch16_224 (random init; weights: models.load_pretrained) fed CIFAR images resized
    to 224 x 224 by its first layer."""
    config = dict(VIT_SMALL_PATCH16_224)
    config.update(options)
    return resized_vit_class()(num_classes=num_classes, **config)
