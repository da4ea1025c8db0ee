"""timm's ConvNeXt (V1 and V2) in small configurations (perturbed: timm initialises layer scale to
1e-6 and GRN to zero, which would hide the residual branches)."""

CASES = [
    {
        "case": "convnext_tiny_small",
        "timm_name": "convnext_tiny",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=5),
        "vrl_model": "convnext_tiny",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 16, 24, 32], num_classes=5),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
        "count_models": ["convnext_tiny", "convnext_atto", "convnextv2_tiny", "convnextv2_atto"],
    },
    {
        "case": "convnextv2_tiny_gray",
        "timm_name": "convnextv2_tiny",
        "timm_kwargs": dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 24), in_chans=1, num_classes=6),
        "vrl_model": "convnextv2_tiny",
        "vrl_args": dict(depths=[1, 1, 1, 1], widths=[8, 16, 16, 24], in_chans=1, num_classes=6),
        "input_shape": (2, 1, 48, 48),
        "perturb": 0.05,
    },
    {
        "case": "convnextv2_atto_patch2",
        "timm_name": "convnextv2_atto",
        "timm_kwargs": dict(depths=(1, 2, 1, 1), dims=(8, 8, 16, 16), patch_size=2, num_classes=4),
        "vrl_model": "convnextv2_atto",
        "vrl_args": dict(depths=[1, 2, 1, 1], widths=[8, 8, 16, 16], patch_size=2, num_classes=4),
        "input_shape": (3, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        # V1 with the 1x1-convolution MLP (timm's `conv_mlp`) and layer scale.
        "case": "convnext_atto_small",
        "timm_name": "convnext_atto",
        "timm_kwargs": dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 24), num_classes=5),
        "vrl_model": "convnext_atto",
        "vrl_args": dict(depths=[1, 1, 1, 1], widths=[8, 16, 16, 24], num_classes=5),
        "input_shape": (2, 3, 32, 32),
        "perturb": 0.05,
    },
    {
        "case": "convnext_atto_drop_path",
        "timm_name": "convnext_atto",
        "timm_kwargs": dict(depths=(1, 1, 2, 1), dims=(8, 8, 16, 16), num_classes=4, drop_path_rate=0.5),
        "vrl_model": "convnext_atto",
        "vrl_args": dict(depths=[1, 1, 2, 1], widths=[8, 8, 16, 16], num_classes=4, drop_path_rate=0.5),
        "input_shape": (8, 3, 32, 32),
        "perturb": 0.05,
        "train_seed": 12,
    },
]
