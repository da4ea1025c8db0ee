"""timm's EfficientNet-builder family (`efficientnet.rs`): MobileNetV2 and EfficientNet-B0.

timm's registered entry points fix `channel_multiplier` (and for B0 `depth_multiplier`), so the small
fixtures build through the generators `_gen_mobilenet_v2` / `_gen_efficientnet` directly, registered
here as `vrl_mobilenetv2` / `vrl_efficientnet` (full arch strings, multipliers as keyword arguments).
vrl maps `ModelArgs.width_multiplier` / `depth_multiplier` onto the same two arguments. They also
calibrate the batch norms (`calibrate_batch_norm`) so that eval-mode logits are not vanishingly small.
"""

import torch
from timm.models import register_model
from timm.models.efficientnet import _gen_efficientnet, _gen_mobilenet_v2


def calibrate_batch_norm(model, in_chans):
    """Gives the batch norms random affine parameters and running statistics of real activations.

    At initialisation (running mean 0, variance 1) eval-mode logits of these nets are ~1e-4, too small
    for a relative comparison to see anything; with calibrated statistics they are of order 1.
    """
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
            m.momentum = 1.0
        model.train()
        model(torch.randn(8, in_chans, 32, 32, generator=gen))
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
    return model


def vrl_mobilenetv2(pretrained=False, **kwargs):
    model = _gen_mobilenet_v2("mobilenetv2_100", pretrained=pretrained, **kwargs)
    return calibrate_batch_norm(model, kwargs.get("in_chans", 3))


def vrl_efficientnet(pretrained=False, **kwargs):
    model = _gen_efficientnet("efficientnet_b0", pretrained=pretrained, **kwargs)
    return calibrate_batch_norm(model, kwargs.get("in_chans", 3))


for _fn in (vrl_mobilenetv2, vrl_efficientnet):
    _fn.__module__ = "timm.models.efficientnet"  # register_model looks the module up in sys.modules
    register_model(_fn)

CASES = [
    dict(
        case="mobilenetv2_small",
        timm_name="vrl_mobilenetv2",
        timm_kwargs=dict(channel_multiplier=0.15, depth_multiplier=0.5, num_classes=7),
        vrl_model="mobilenetv2_100",
        vrl_args=dict(width_multiplier=0.15, depth_multiplier=0.5, num_classes=7),
        input_shape=(2, 3, 32, 32),
        count_models=["mobilenetv2_100"],
    ),
    dict(
        case="efficientnet_b0_small",
        timm_name="vrl_efficientnet",
        timm_kwargs=dict(channel_multiplier=0.2, depth_multiplier=0.5, num_classes=5, in_chans=1),
        vrl_model="efficientnet_b0",
        vrl_args=dict(width_multiplier=0.2, depth_multiplier=0.5, num_classes=5, in_chans=1),
        input_shape=(2, 1, 32, 32),
        count_models=["efficientnet_b0"],
    ),
    dict(
        case="efficientnet_b0_width",
        timm_name="vrl_efficientnet",
        timm_kwargs=dict(channel_multiplier=0.15, depth_multiplier=0.34, num_classes=10),
        vrl_model="efficientnet_b0",
        vrl_args=dict(width_multiplier=0.15, depth_multiplier=0.34, num_classes=10),
        input_shape=(3, 3, 32, 32),
        count_models=["efficientnet_b0"],
    ),
    dict(
        # Stochastic depth on the residual blocks (timm: rate * block / blocks), seeded.
        case="efficientnet_b0_drop_path",
        timm_name="vrl_efficientnet",
        timm_kwargs=dict(channel_multiplier=0.1, depth_multiplier=0.34, num_classes=4, drop_path_rate=0.5),
        vrl_model="efficientnet_b0",
        vrl_args=dict(width_multiplier=0.1, depth_multiplier=0.34, num_classes=4, drop_path_rate=0.5),
        input_shape=(8, 3, 32, 32),
        train_seed=16,
    ),
]
