"""timm's VisionTransformer (ViT, DeiT) in small configurations."""

COUNT = ["vit_tiny_patch16_224", "vit_small_patch16_224", "deit_small_patch16_224"]

CASES = [
    {
        "case": "vit_tiny_small_gray",
        "timm_name": "vit_tiny_patch16_224",
        "timm_kwargs": dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                            in_chans=1, num_classes=7),
        "vrl_model": "vit_tiny_patch16_224",
        "vrl_args": dict(img_size=32, patch_size=8, widths=[32], depths=[2], num_heads=[4],
                         in_chans=1, num_classes=7),
        "input_shape": (2, 1, 32, 32),
        "perturb": 0.02,
        "count_models": COUNT,
    },
    {
        "case": "vit_small_mlp2_patch4",
        "timm_name": "vit_small_patch16_224",
        "timm_kwargs": dict(img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=2,
                            mlp_ratio=2.0, num_classes=10),
        "vrl_model": "vit_small_patch16_224",
        "vrl_args": dict(img_size=16, patch_size=4, widths=[24], depths=[3], num_heads=[2],
                         mlp_ratio=2.0, num_classes=10),
        "input_shape": (3, 3, 16, 16),
        "perturb": 0.02,
    },
    {
        "case": "deit_small_1000",
        "timm_name": "deit_small_patch16_224",
        "timm_kwargs": dict(img_size=32, patch_size=16, embed_dim=48, depth=1, num_heads=3),
        "vrl_model": "deit_small_patch16_224",
        "vrl_args": dict(img_size=32, patch_size=16, widths=[48], depths=[1], num_heads=[3]),
        "input_shape": (2, 3, 32, 32),
    },
    {
        # Stochastic depth on: rates 0, 0.25, 0.5 over the three blocks, masks per sample, drawn from
        # the seeded generator that tch shares (see model_reference.py).
        "case": "vit_tiny_drop_path",
        "timm_name": "vit_tiny_patch16_224",
        "timm_kwargs": dict(img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=2,
                            num_classes=5, drop_path_rate=0.5),
        "vrl_model": "vit_tiny_patch16_224",
        "vrl_args": dict(img_size=16, patch_size=4, widths=[24], depths=[3], num_heads=[2],
                         num_classes=5, drop_path_rate=0.5),
        "input_shape": (8, 3, 16, 16),
        "perturb": 0.02,
        "train_seed": 7,
    },
]
