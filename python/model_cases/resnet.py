"""ResNet cases: timm's `ResNet` shrunk through its `layers` (depths) and `channels` (widths) kwargs."""

import torch.nn as nn


def cifar_stem(model):
    """vrl's `cifar_stem`: a 3x3 stride-1 stem convolution and no max-pool (timm has no such option)."""
    model.conv1 = nn.Conv2d(model.conv1.in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


CASES = [
    {
        "case": "resnet18_small",
        "timm_name": "resnet18",
        "timm_kwargs": {"layers": [2, 1, 1, 1], "channels": [8, 16, 24, 32], "num_classes": 7},
        "randomize_norms": True,
        "vrl_model": "resnet18",
        "vrl_args": {"depths": [2, 1, 1, 1], "widths": [8, 16, 24, 32], "num_classes": 7},
        "input_shape": (2, 3, 64, 64),
        "count_models": ["resnet18"],
    },
    {
        "case": "resnet50_small",
        "timm_name": "resnet50",
        "timm_kwargs": {"layers": [1, 2, 1, 1], "channels": [8, 16, 16, 24], "num_classes": 5, "in_chans": 1},
        "randomize_norms": True,
        "vrl_model": "resnet50",
        "vrl_args": {"depths": [1, 2, 1, 1], "widths": [8, 16, 16, 24], "num_classes": 5, "in_chans": 1},
        "input_shape": (3, 1, 48, 48),
        "count_models": ["resnet50"],
    },
    {
        "case": "resnet18_cifar_stem",
        "timm_name": "resnet18",
        "timm_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 16, 32], "num_classes": 10},
        "patch": cifar_stem,
        "randomize_norms": True,
        "vrl_model": "resnet18",
        "vrl_args": {"depths": [1, 1, 1, 1], "widths": [8, 16, 16, 32], "num_classes": 10, "cifar_stem": True},
        "input_shape": (2, 3, 32, 32),
    },
    {
        # Stochastic depth (timm: rate * block / (blocks - 1)) on the residual branch, seeded.
        "case": "resnet18_drop_path",
        "timm_name": "resnet18",
        "timm_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 8, 16, 16], "num_classes": 5,
                        "drop_path_rate": 0.5},
        "randomize_norms": True,
        "vrl_model": "resnet18",
        "vrl_args": {"depths": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_classes": 5,
                     "drop_path_rate": 0.5},
        "input_shape": (8, 3, 32, 32),
        "train_seed": 11,
    },
]
