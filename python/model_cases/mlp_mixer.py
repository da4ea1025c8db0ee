"""timm's MlpMixer in small configurations (perturbed: timm initialises the head to zero)."""

CASES = [
    {
        "case": "mixer_s16_small",
        "timm_name": "mixer_s16_224",
        "timm_class": "timm.models.mlp_mixer.MlpMixer",
        "timm_kwargs": dict(img_size=32, patch_size=8, embed_dim=32, num_blocks=2, num_classes=5),
        "vrl_model": "mixer_s16_224",
        "vrl_args": dict(img_size=32, patch_size=8, widths=[32], depths=[2], num_classes=5),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.02,
        "count_models": ["mixer_s16_224"],
    },
    {
        "case": "mixer_s16_ratio2_in2",
        "timm_name": "mixer_s16_224",
        "timm_class": "timm.models.mlp_mixer.MlpMixer",
        "timm_kwargs": dict(img_size=24, patch_size=4, embed_dim=16, num_blocks=3, mlp_ratio=2.0,
                            in_chans=2, num_classes=4),
        "vrl_model": "mixer_s16_224",
        "vrl_args": dict(img_size=24, patch_size=4, widths=[16], depths=[3], mlp_ratio=2.0,
                         in_chans=2, num_classes=4),
        "input_shape": (3, 2, 24, 24),
        "perturb": 0.05,
    },
]
