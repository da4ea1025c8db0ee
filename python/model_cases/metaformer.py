"""timm's MetaFormer baselines (PoolFormerV2, ConvFormer, CAFormer) in small configurations, the
paper's IdentityFormer and RandFormer, and the BOCB study's ConvFormer-S12, CAFormer-S12 and
AttentionFormer-S12, which timm does not register, built through timm's `MetaFormer` class with the
paper's token mixers (perturbed: timm initialises residual scales and StarReLU scales to 1, biases
and StarReLU shifts to 0, norms to 1, which would let a wrong layer go unnoticed). See
`crates/vrl-models/src/metaformer.rs` for where the unregistered configurations come from."""

import torch
from timm.models.metaformer import (
    Attention,
    GroupNorm1NoBias,
    LayerNorm2dNoBias,
    LayerNormNoBias,
    MetaFormer,
    SepConv,
)


class RandomMixing(torch.nn.Module):
    """RandFormer's token mixer (Yu et al., 2022; sail-sg/metaformer `metaformer_baselines.py`): a frozen
    `softmax(rand(N, N))` mixing the N tokens, here on timm's `[B, C, H, W]` layout."""

    def __init__(self, num_tokens=196, **kwargs):
        super().__init__()
        self.random_matrix = torch.nn.Parameter(
            torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1), requires_grad=False
        )

    def forward(self, x):
        b, c, h, w = x.shape
        x = torch.einsum("mn, bcn -> bcm", self.random_matrix, x.reshape(b, c, h * w))
        return x.reshape(b, c, h, w)


# timm's registered constructors fix depths and dims, so the small cases build the class with the
# arguments of `poolformerv2_s12`, `convformer_s18` and `caformer_s18` (timm 1.0.31).
def poolformerv2(**kwargs):
    return MetaFormer(norm_layers=GroupNorm1NoBias, use_mlp_head=False, **kwargs)


def convformer(**kwargs):
    return MetaFormer(token_mixers=SepConv, norm_layers=LayerNorm2dNoBias, **kwargs)


def caformer(**kwargs):
    return MetaFormer(
        token_mixers=[SepConv, SepConv, Attention, Attention],
        norm_layers=[LayerNorm2dNoBias] * 2 + [LayerNormNoBias] * 2,
        **kwargs,
    )


def attentionformer(**kwargs):
    """CAFormer with attention in every stage (BOCB's AttentionFormer)."""
    return MetaFormer(token_mixers=Attention, norm_layers=LayerNormNoBias, **kwargs)


def random_mixing(num_tokens):
    """RandomMixing over `num_tokens` tokens as a class (timm's stage checks `issubclass`)."""

    def init(self, **kwargs):
        RandomMixing.__init__(self, num_tokens)

    return type(f"RandomMixing{num_tokens}", (RandomMixing,), {"__init__": init})


def s12_baseline(token_mixers, **kwargs):
    """The PoolFormerV2-S12 network (timm's `poolformerv2_s12` arguments) with other token mixers."""
    return MetaFormer(token_mixers=token_mixers, norm_layers=GroupNorm1NoBias, use_mlp_head=False, **kwargs)


S12 = dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512))

# Full-size models that timm does not register, for `param_counts.json` (RandFormer's frozen mixing
# matrices are not trainable and not counted, as in vrl).
COUNT_BUILDS = {
    "identityformer_s12": lambda: s12_baseline(torch.nn.Identity, **S12),
    "randformer_s12": lambda: s12_baseline(
        [torch.nn.Identity, torch.nn.Identity, random_mixing(196), random_mixing(49)], **S12
    ),
    "convformer_s12": lambda: convformer(**S12),
    "caformer_s12": lambda: caformer(**S12),
    "attentionformer_s12": lambda: attentionformer(**S12),
}

CASES = [
    {
        "case": "poolformerv2_s12_small",
        "timm_name": "poolformerv2_s12",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=5),
        "build": lambda: poolformerv2(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=5),
        "vrl_model": "poolformerv2_s12",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 16, 24, 32], num_classes=5),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
        "count_models": ["poolformerv2_s12", "convformer_s18", "caformer_s18"],
        "count_builds": COUNT_BUILDS,
    },
    {
        # widths 16 → 16: timm has no down-sampling where the width stays.
        "case": "convformer_s18_gray",
        "timm_name": "convformer_s18",
        "timm_kwargs": dict(depths=(1, 1, 1, 2), dims=(8, 16, 16, 24), in_chans=1, num_classes=6),
        "build": lambda: convformer(depths=(1, 1, 1, 2), dims=(8, 16, 16, 24), in_chans=1, num_classes=6),
        "vrl_model": "convformer_s18",
        "vrl_args": dict(depths=[1, 1, 1, 2], widths=[8, 16, 16, 24], in_chans=1, num_classes=6),
        "input_shape": (2, 1, 48, 48),
        "perturb": 0.05,
    },
    {
        "case": "caformer_s18_small",
        "timm_name": "caformer_s18",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), num_classes=7),
        "build": lambda: caformer(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), num_classes=7),
        "vrl_model": "caformer_s18",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 16, 32, 64], num_classes=7),
        "input_shape": (2, 3, 64, 64),
        "perturb": 0.05,
    },
    {
        # Not registered in timm: timm's MetaFormer class with the identity as token mixer.
        "case": "identityformer_s12_small",
        "timm_name": "identityformer_s12",
        "timm_kwargs": dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32), num_classes=4),
        "build": lambda: s12_baseline(
            torch.nn.Identity, depths=(1, 2, 1, 1), dims=(8, 16, 24, 32), num_classes=4
        ),
        "vrl_model": "identityformer_s12",
        "vrl_args": dict(depths=[1, 2, 1, 1], widths=[8, 16, 24, 32], num_classes=4),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        # Not registered in timm: timm's MetaFormer class with the paper's RandomMixing in stages 2-3
        # (64×64 input: 4×4 and 2×2 maps there, so 16 and 4 tokens).
        "case": "randformer_s12_small",
        "timm_name": "randformer_s12",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=3, img_size=64),
        "build": lambda: s12_baseline(
            [torch.nn.Identity, torch.nn.Identity, random_mixing(16), random_mixing(4)],
            depths=(1, 1, 2, 1),
            dims=(8, 16, 24, 32),
            num_classes=3,
        ),
        "vrl_model": "randformer_s12",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 16, 24, 32], num_classes=3, img_size=64),
        "input_shape": (2, 3, 64, 64),
        "perturb": 0.05,
    },
    {
        "case": "convformer_s12_small",
        "timm_name": "convformer_s12",
        "timm_kwargs": dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=5),
        "build": lambda: convformer(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=5),
        "vrl_model": "convformer_s12",
        "vrl_args": dict(depths=[1, 1, 1, 1], widths=[8, 16, 24, 32], num_classes=5),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        "case": "caformer_s12_small",
        "timm_name": "caformer_s12",
        "timm_kwargs": dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 32), num_classes=4),
        "build": lambda: caformer(depths=(1, 1, 1, 1), dims=(8, 16, 32, 32), num_classes=4),
        "vrl_model": "caformer_s12",
        "vrl_args": dict(depths=[1, 1, 1, 1], widths=[8, 16, 32, 32], num_classes=4),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        # Attention from stage 0 on (8×8 tokens); stages 1 and 3 keep the width, so no down-sampling.
        "case": "attentionformer_s12_small",
        "timm_name": "attentionformer_s12",
        "timm_kwargs": dict(depths=(1, 1, 1, 1), dims=(32, 32, 64, 64), num_classes=6),
        "build": lambda: attentionformer(depths=(1, 1, 1, 1), dims=(32, 32, 64, 64), num_classes=6),
        "vrl_model": "attentionformer_s12",
        "vrl_args": dict(depths=[1, 1, 1, 1], widths=[32, 32, 64, 64], num_classes=6),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        # Stochastic depth on both branches of every block, in the NCHW and the token stages.
        "case": "caformer_s12_drop_path",
        "timm_name": "caformer_s12",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 32), num_classes=3, drop_path_rate=0.5),
        "build": lambda: caformer(depths=(1, 1, 2, 1), dims=(8, 16, 32, 32), num_classes=3, drop_path_rate=0.5),
        "vrl_model": "caformer_s12",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 16, 32, 32], num_classes=3, drop_path_rate=0.5),
        "input_shape": (8, 3, 32, 32),
        "perturb": 0.05,
        "train_seed": 13,
    },
]
