"""DenseNet cases: timm's `densenet121` shrunk through its `growth_rate` and `block_config` kwargs."""

CASES = [
    {
        "case": "densenet121_small",
        "timm_name": "densenet121",
        "timm_kwargs": {"growth_rate": 4, "block_config": [2, 3, 2, 2], "num_classes": 6},
        "randomize_norms": True,
        "vrl_model": "densenet121",
        "vrl_args": {"widths": [4], "depths": [2, 3, 2, 2], "num_classes": 6},
        "input_shape": (2, 3, 64, 64),
        "count_models": ["densenet121"],
    },
    {
        # Three blocks and an odd channel count at the first transition (6 + 3 = 9 // 2 = 4 channels).
        "case": "densenet121_three_blocks",
        "timm_name": "densenet121",
        "timm_kwargs": {"growth_rate": 3, "block_config": [1, 2, 1], "num_classes": 4, "in_chans": 2},
        "randomize_norms": True,
        "vrl_model": "densenet121",
        "vrl_args": {"widths": [3], "depths": [1, 2, 1], "num_classes": 4, "in_chans": 2},
        "input_shape": (3, 2, 40, 40),
    },
]
