"""VGG cases: timm's `VGG` class with a shrunk layer `cfg` (which `timm.create_model` cannot override)
and a narrow pre-logits MLP (`mlp_ratio`; its output width stays 4096, as in timm)."""

import torch.nn as nn
from timm.models.vgg import VGG


def vgg_bn(depths, widths, **kwargs):
    """timm's VGG with batch norm for the `cfg` that vrl's `depths` / `widths` describe."""
    cfg = []
    for d, w in zip(depths, widths):
        cfg += [w] * d + ["M"]
    return VGG(cfg=cfg, norm_layer=nn.BatchNorm2d, **kwargs)


SMALL = {"depths": [1, 1, 2, 1, 1], "widths": [8, 8, 16, 16, 16], "mlp_ratio": 1 / 256, "num_classes": 5}
# Three stages: a 64x64 input leaves an 8x8 map, larger than the 7x7 pre-logits kernel (no resize).
WIDE_MAP = {"depths": [1, 1, 1], "widths": [4, 8, 8], "mlp_ratio": 1 / 512, "num_classes": 3, "in_chans": 1}

CASES = [
    {
        "case": "vgg13_bn_small",
        "timm_name": "vgg13_bn",
        "timm_kwargs": SMALL,
        "build": lambda: vgg_bn(**SMALL),
        "randomize_norms": True,
        "vrl_model": "vgg13_bn",
        "vrl_args": SMALL,
        "input_shape": (2, 3, 32, 32),
        "count_models": ["vgg13_bn"],
    },
    {
        "case": "vgg13_bn_wide_map",
        "timm_name": "vgg13_bn",
        "timm_kwargs": WIDE_MAP,
        "build": lambda: vgg_bn(**WIDE_MAP),
        "randomize_norms": True,
        "vrl_model": "vgg13_bn",
        "vrl_args": WIDE_MAP,
        "input_shape": (2, 1, 64, 64),
    },
]
