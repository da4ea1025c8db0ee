"""AlexNet cases: torchvision's `AlexNet` (timm has none), with `dropout=0` so train mode is
deterministic. torchvision has no width arguments, so the small versions swap its convolutions and
linear layers for narrower ones in place: same `nn.Sequential` indices (keys), same forward."""

import torch.nn as nn
import torchvision


def small_alexnet(widths, mlp_ratio, num_classes, in_chans=3, drop_rate=0.0):
    """torchvision's AlexNet with the convolution widths and classifier width vrl's args describe."""
    model = torchvision.models.alexnet(weights=None, num_classes=num_classes, dropout=drop_rate)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    c = in_chans
    for i, w in zip(convs, widths, strict=True):
        old = model.features[i]
        model.features[i] = nn.Conv2d(c, w, old.kernel_size, stride=old.stride, padding=old.padding)
        c = w
    hidden = int(4096 * mlp_ratio)
    model.classifier[1] = nn.Linear(c * 6 * 6, hidden)
    model.classifier[4] = nn.Linear(hidden, hidden)
    model.classifier[6] = nn.Linear(hidden, num_classes)
    return model


# 64x64 input: a 1x1 map that the adaptive pool spreads to 6x6.
SMALL = {"widths": [4, 8, 8, 8, 8], "mlp_ratio": 1 / 256, "num_classes": 7, "drop_rate": 0.0}
# 288x288 input: an 8x8 map that the adaptive pool averages down to 6x6 (overlapping windows).
LARGE_INPUT = {
    "widths": [4, 4, 8, 8, 4],
    "mlp_ratio": 1 / 512,
    "num_classes": 3,
    "in_chans": 1,
    "drop_rate": 0.0,
}

CASES = [
    {
        "case": "alexnet_small",
        "source": "torchvision",
        "timm_name": "alexnet",
        "timm_kwargs": SMALL,
        "build": lambda: small_alexnet(**SMALL),
        "vrl_model": "alexnet",
        "vrl_args": SMALL,
        "input_shape": (2, 3, 64, 64),
        "count_models": ["alexnet"],
    },
    {
        "case": "alexnet_large_input",
        "source": "torchvision",
        "timm_name": "alexnet",
        "timm_kwargs": LARGE_INPUT,
        "build": lambda: small_alexnet(**LARGE_INPUT),
        "vrl_model": "alexnet",
        "vrl_args": LARGE_INPUT,
        "input_shape": (1, 1, 288, 288),
    },
]
