"""timm's SwinTransformer in small configurations. Each case has a stage whose feature map is larger
than the window with two or more blocks, so the shifted windows and their attention mask are used;
drop_path_rate is set to 0 explicitly (Swin's default is 0.1). Perturbed, so that LayerNorm affines
and the head take generic values (the relative position bias tables are already random)."""

CASES = [
    {
        # grid 16: stage 0 (16x16) and stage 1 (8x8) use shifted 4x4 windows (16 and 4 windows);
        # stage 2 (4x4) clamps the window to the map, without shift.
        "case": "swin_tiny_small_gray",
        "timm_name": "swin_tiny_patch4_window7_224",
        "timm_kwargs": dict(img_size=32, patch_size=2, window_size=4, embed_dim=8, depths=(2, 2, 1),
                            num_heads=(1, 2, 4), in_chans=1, num_classes=7, drop_path_rate=0.0),
        "vrl_model": "swin_tiny_patch4_window7_224",
        "vrl_args": dict(img_size=32, patch_size=2, window_size=4, widths=[8], depths=[2, 2, 1],
                         num_heads=[1, 2, 4], in_chans=1, num_classes=7, drop_path_rate=0.0),
        "input_shape": (2, 1, 32, 32),
        "perturb": 0.05,
        "count_models": ["swin_tiny_patch4_window7_224"],
    },
    {
        # The registered window 7 and patch 4 at 56x56: stage 0 (14x14) has 2x2 shifted windows,
        # stages 1-3 (7, 4, 2) clamp the window; heads (3) not dividing the width 16 (head width 5).
        "case": "swin_tiny_window7_56",
        "timm_name": "swin_tiny_patch4_window7_224",
        "timm_kwargs": dict(img_size=56, embed_dim=8, depths=(3, 2, 1, 1), num_heads=(1, 3, 2, 4),
                            mlp_ratio=2.0, drop_path_rate=0.0),
        "vrl_model": "swin_tiny_patch4_window7_224",
        "vrl_args": dict(img_size=56, widths=[8], depths=[3, 2, 1, 1], num_heads=[1, 3, 2, 4],
                         mlp_ratio=2.0, drop_path_rate=0.0),
        "input_shape": (2, 3, 56, 56),
        "perturb": 0.05,
    },
    {
        # Feature maps the window does not divide (10 -> padded to 12, 5 -> 8) and an odd map
        # before patch merging (5 -> 3), as timm pads them.
        "case": "swin_tiny_padded_40",
        "timm_name": "swin_tiny_patch4_window7_224",
        "timm_kwargs": dict(img_size=40, patch_size=4, window_size=4, embed_dim=8, depths=(2, 2, 2),
                            num_heads=(2, 2, 4), num_classes=4, drop_path_rate=0.0),
        "vrl_model": "swin_tiny_patch4_window7_224",
        "vrl_args": dict(img_size=40, patch_size=4, window_size=4, widths=[8], depths=[2, 2, 2],
                         num_heads=[2, 2, 4], num_classes=4, drop_path_rate=0.0),
        "input_shape": (3, 3, 40, 40),
        "perturb": 0.05,
    },
    {
        # Stochastic depth (Swin's default is 0.1; here 0.5), seeded.
        "case": "swin_tiny_drop_path",
        "timm_name": "swin_tiny_patch4_window7_224",
        "timm_kwargs": dict(img_size=16, patch_size=2, window_size=4, embed_dim=8, depths=(2, 1),
                            num_heads=(1, 2), num_classes=3, drop_path_rate=0.5),
        "vrl_model": "swin_tiny_patch4_window7_224",
        "vrl_args": dict(img_size=16, patch_size=2, window_size=4, widths=[8], depths=[2, 1],
                         num_heads=[1, 2], num_classes=3, drop_path_rate=0.5),
        "input_shape": (8, 3, 16, 16),
        "perturb": 0.05,
        "train_seed": 14,
    },
]
