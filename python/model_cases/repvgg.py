"""RepVGG (`repvgg.rs`), timm's `byobnet.py` `repvgg_a1`.

timm takes stage depths and widths only through `ByoModelCfg.blocks`, which are not JSON, so the small
fixtures build through `vrl_repvgg` (registered here): `repvgg_a1`'s config with `blocks` replaced by
`depths` / `widths` (vrl's `ModelArgs.depths` / `widths`) and the stem of `min(64, widths[0])` channels.
It also calibrates the batch norms and widens the classifier (`calibrate_batch_norm`) so that logits
are of order 1.
"""

from dataclasses import replace

import torch
from timm.models import build_model_with_cfg, register_model
from timm.models.byobnet import ByobNet, ByoBlockCfg, model_cfgs


def calibrate_batch_norm(model, in_chans):
    """Random batch norm affine parameters, running statistics of real activations."""
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
        # timm's head init (std .01) gives logits ~0.1; widen it so that differences show.
        fc = model.get_classifier()
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) / fc.weight.shape[1] ** 0.5)
    return model


def vrl_repvgg(pretrained=False, depths=(2, 4, 14, 1), widths=(64, 128, 256, 1280), **kwargs):
    blocks = tuple(ByoBlockCfg(type="rep", d=d, c=c, gs=0) for d, c in zip(depths, widths))
    cfg = replace(model_cfgs["repvgg_a1"], blocks=blocks, stem_chs=min(64, widths[0]))
    model = build_model_with_cfg(ByobNet, "repvgg_a1", pretrained, model_cfg=cfg, **kwargs)
    return calibrate_batch_norm(model, kwargs.get("in_chans", 3))


vrl_repvgg.__module__ = "timm.models.byobnet"  # register_model looks the module up in sys.modules
register_model(vrl_repvgg)

CASES = [
    dict(
        case="repvgg_a1_small",
        timm_name="vrl_repvgg",
        timm_kwargs=dict(depths=[1, 2, 3, 1], widths=[16, 24, 32, 48], num_classes=7),
        vrl_model="repvgg_a1",
        vrl_args=dict(depths=[1, 2, 3, 1], widths=[16, 24, 32, 48], num_classes=7),
        input_shape=(2, 3, 32, 32),
        count_models=["repvgg_a1"],
    ),
    dict(
        case="repvgg_a1_wide_stem",
        timm_name="vrl_repvgg",
        timm_kwargs=dict(depths=[2, 1, 1, 1], widths=[72, 16, 16, 24], in_chans=2),
        vrl_model="repvgg_a1",
        vrl_args=dict(depths=[2, 1, 1, 1], widths=[72, 16, 16, 24], in_chans=2),
        input_shape=(3, 2, 32, 32),
        count_models=["repvgg_a1"],
    ),
]
