"""Reference trajectories of vrl-optim's optimizers for its tests.

Nine optimizers are checked against `torch.optim` and the other eleven against `pytorch_optimizer`
4.1.0 (`REFERENCES` below), with every extra of that package (gradient centralization, AdaNorm,
cautious updates, rectification, gradient-norm clipping, foreach) left off, so each is the paper's plain
algorithm as the package implements it. Where the package and the authors' own code could differ,
`ORIGINALS` runs both on the same trajectory and records the difference in the fixture's metadata
(see docs/optimizers.md for what each comparison shows); the script stops if a comparison no longer
comes out as `ORIGINALS` says.

Run from the repository root (needs torch 2.11.0, pytorch-optimizer 4.1.0, timm 1.0.31,
lion-pytorch 0.2.3 and adabound 0.0.5 in the venv):

    ~/.cache/vrl/venv/bin/python python/optim_reference.py

It writes `crates/vrl-optim/tests/fixtures/optim_reference.safetensors`, read by
`crates/vrl-optim/tests/reference.rs`. Never edit the fixture by hand; change this script and rerun it.

For each case and for float64 and float32, three parameters (`linear.weight` [4, 3], `norm.bias` [3],
`conv.weight` [2, 3, 2, 2]: a matrix, a 1-d tensor without weight decay and a conv-shaped 4-d tensor
that AdaFactor factors over its last two dimensions) take `STEPS` = 100 steps. The gradient of step k
is set directly as `p.grad` (no loss), so the Rust side can feed the very same gradients. All cases
share one gradient sequence (`grads/{dtype}/{param}`, drawn once: a fixed drift plus noise, scaled by a
random factor per step, and exactly zero for `norm.bias` at step `ZERO_STEP`), so that the fixture
stays small; each case starts from its own seeded initial parameters. Cases marked `orthogonal` make
the gradient of `conv.weight` orthogonal to each output channel of the current weight (as for a
weight followed by normalisation), so that AdamP's and SGDP's projection is taken; those gradients
depend on the trajectory and are stored per case. `init_scale` scales the initial parameters (LAMB's
trust ratio clamps the weight norm at 10). Cases marked `hessian` (SophiaH) give the optimizer seeded
Hessian-diagonal estimates every `update_period` steps through `step(hessian=...)`, in place of its
own Hutchinson estimator (which needs a loss), so that vrl's `update_hessian` can be fed the very same
numbers. The learning rate changes every step (`lr_k = lr * (1 + 0.5 sin(0.3 k))`), set as
`group["lr"]` before each `opt.step()`, as vrl passes it to `Optimizer::step(lr)`; cases marked
`lr_ignored` (AdaFactor's `relative_step`) do not use it. vrl decays only parameters with two or more
dimensions, so those form one parameter group with the case's `weight_decay` and the 1-d ones a
group without.

Tensors, all in the file's one flat namespace:

    grads/{dtype}/{param}              [steps, *shape]: the gradient of each step, shared by all cases
    {case}/{dtype}/init/{param}        parameters before the first step
    {case}/{dtype}/grads/{param}       [steps, *shape]: the case's own gradients, replacing the shared ones
    {case}/{dtype}/hessians/{param}    [len(hessian_steps), *shape]: the Hessian-diagonal estimates given
                                       before the steps `hessian_steps` (SophiaH only)
    {case}/{dtype}/final/{param}       parameters after the last step
    {case}/lrs                         float64 [steps], the learning rate of each step

`__metadata__["cases"]` is a JSON list of `{"name", "optimizer", "hparams", "steps",
"params": [[name, shape], ...], "dtypes", "hessian_steps", "own_grads", "lr_sensitive"}`, with
hyper-parameters under vrl's (= PyTorch's) names, so that `hparams` deserialises straight into
`vrl_optim::HParams`; `own_grads` lists the parameters with per-case gradients. `__metadata__["originals"]`
is a JSON list of the `ORIGINALS` comparisons, each with its `max_rel_diff`.

The file is written by hand in the safetensors format (8-byte little-endian header length, JSON
header padded with spaces to a multiple of 8, then the raw little-endian bytes) so that the script
needs no `safetensors` package.
"""

import inspect
import json
import math
import struct
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import adabound
import lion_pytorch
import pytorch_optimizer
import timm.optim
import torch

OUT = Path(__file__).resolve().parent.parent / "crates/vrl-optim/tests/fixtures/optim_reference.safetensors"
STEPS = 100
PARAMS = [("linear.weight", [4, 3]), ("norm.bias", [3]), ("conv.weight", [2, 3, 2, 2])]
DTYPES = {"f64": (torch.float64, "F64"), "f32": (torch.float32, "F32")}
# The step at which `norm.bias` gets an all-zero gradient.
ZERO_STEP = 50

# (name, optimizer, hyper-parameters with vrl's names, options of the fixture). `lr` is the base of the
# per-step schedule.
CASES = [
    ("sgd_plain", "sgd", {"lr": 0.1}, {}),
    ("sgd_momentum_wd", "sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}, {}),
    ("sgd_momentum_dampening", "sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}, {}),
    ("sgd_nesterov_wd", "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, {}),
    ("adamw_defaults", "adamw", {"lr": 1e-2}, {}),
    ("adamw_custom", "adamw", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("adamw_amsgrad", "adamw", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1,
                                "amsgrad": True}, {}),
    ("lion_defaults", "lion", {"lr": 1e-3}, {}),
    ("lion_custom_wd", "lion", {"lr": 1e-3, "betas": [0.95, 0.98], "weight_decay": 0.5}, {}),
    ("lamb_defaults", "lamb", {"lr": 1e-2}, {}),
    ("lamb_custom_wd_clamp", "lamb", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-4, "weight_decay": 0.1},
     {"init_scale": 4.0}),
    ("adan_defaults", "adan", {"lr": 1e-2}, {}),
    ("adan_custom_wd", "adan", {"lr": 1e-2, "betas": [0.9, 0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("adan_decoupled_wd", "adan", {"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": True}, {}),
    ("adabelief_defaults", "adabelief", {"lr": 1e-2}, {}),
    ("adabelief_custom_wd", "adabelief", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 0.1},
     {}),
    ("sgdp_momentum_wd", "sgdp", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}, {"orthogonal": True}),
    ("sgdp_nesterov_delta", "sgdp",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2, "delta": 0.2, "wd_ratio": 0.5},
     {"orthogonal": True}),
    ("sgdp_dampening", "sgdp", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}, {"orthogonal": True}),
    ("adamp_wd", "adamp", {"lr": 1e-2, "weight_decay": 0.1}, {"orthogonal": True}),
    ("adamp_nesterov", "adamp",
     {"lr": 1e-2, "betas": [0.8, 0.99], "nesterov": True, "weight_decay": 0.1, "delta": 0.2, "wd_ratio": 0.5},
     {"orthogonal": True}),
    ("lars_defaults", "lars", {"lr": 1.0}, {}),
    ("lars_nesterov_wd", "lars",
     {"lr": 1.0, "momentum": 0.8, "dampening": 0.1, "nesterov": True, "weight_decay": 0.1,
      "trust_coefficient": 0.01}, {}),
    ("lars_no_momentum_wd", "lars", {"lr": 1.0, "momentum": 0.0, "weight_decay": 0.1, "trust_coefficient": 0.02},
     {}),
    ("novograd_defaults", "novograd", {"lr": 1e-2}, {}),
    ("novograd_wd_averaging", "novograd",
     {"lr": 1e-2, "betas": [0.9, 0.99], "eps": 1e-6, "weight_decay": 0.1, "grad_averaging": True}, {}),
    ("novograd_decoupled_wd", "novograd", {"lr": 1e-2, "weight_decay": 0.1, "weight_decouple": True}, {}),
    ("adam_defaults", "adam", {"lr": 1e-2}, {}),
    ("adam_amsgrad_wd", "adam", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1,
                                 "amsgrad": True}, {}),
    ("rmsprop_defaults", "rmsprop", {"lr": 1e-2}, {}),
    ("rmsprop_centered_momentum_wd", "rmsprop", {"lr": 1e-2, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1,
                                                 "momentum": 0.9, "centered": True}, {}),
    ("rmsprop_centered", "rmsprop", {"lr": 1e-2, "centered": True}, {}),
    ("rmsprop_momentum", "rmsprop", {"lr": 1e-2, "momentum": 0.5}, {}),
    ("adagrad_defaults", "adagrad", {"lr": 0.1}, {}),
    ("adagrad_custom", "adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1,
                                   "initial_accumulator_value": 0.1, "eps": 1e-8}, {}),
    ("adadelta_defaults", "adadelta", {"lr": 1.0}, {}),
    ("adadelta_custom", "adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1}, {}),
    ("adamax_defaults", "adamax", {"lr": 1e-2}, {}),
    ("adamax_custom", "adamax", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("nadam_defaults", "nadam", {"lr": 1e-2}, {}),
    ("nadam_custom", "nadam", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1,
                               "momentum_decay": 1e-2}, {}),
    ("nadam_decoupled", "nadam", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}, {}),
    ("radam_defaults", "radam", {"lr": 1e-2}, {}),
    ("radam_custom", "radam", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("radam_decoupled", "radam", {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}, {}),
    ("adabound_defaults", "adabound", {"lr": 1e-2}, {}),
    ("adabound_custom_wd", "adabound",
     {"lr": 1e-2, "final_lr": 0.05, "betas": [0.8, 0.99], "gamma": 0.1, "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("adafactor_defaults_wd", "adafactor", {"lr": 1e-2, "weight_decay": 0.1}, {}),
    ("adafactor_custom", "adafactor",
     {"lr": 1e-2, "betas": [0.8, 0.99], "decay_rate": -0.5, "clip_threshold": 0.5, "scale_parameter": False,
      "weight_decay": 0.1, "eps1": 1e-20}, {}),
    ("adafactor_no_momentum", "adafactor", {"lr": 1e-2, "betas": [0.0, 0.999]}, {}),
    ("adafactor_relative_step", "adafactor", {"lr": 1e-2, "relative_step": True, "weight_decay": 0.1},
     {"lr_ignored": True}),
    ("adafactor_warmup_init", "adafactor",
     {"lr": 1e-2, "relative_step": True, "warmup_init": True, "scale_parameter": False},
     {"lr_ignored": True, "init_scale": 0.2}),
    ("sophia_period3", "sophia", {"lr": 6e-2, "update_period": 3}, {"hessian": True}),
    ("sophia_custom_wd", "sophia",
     {"lr": 6e-2, "betas": [0.9, 0.95], "p": 1.0, "weight_decay": 0.1, "eps": 1e-3, "update_period": 2},
     {"hessian": True}),
]

# Stands for the dtype of the case's parameters in `REFERENCES`.
PARAM_DTYPE = "param dtype"

# vrl name -> (reference class, options fixed to the plain algorithm, passed explicitly; a case's
# hyper-parameters override them).
REFERENCES = {
    "sgd": (torch.optim.SGD, {}),
    "adamw": (torch.optim.AdamW, {}),
    "adam": (torch.optim.Adam, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adagrad": (torch.optim.Adagrad, {}),
    "adadelta": (torch.optim.Adadelta, {}),
    "adamax": (torch.optim.Adamax, {}),
    "nadam": (torch.optim.NAdam, {}),
    "radam": (torch.optim.RAdam, {}),
    "lion": (pytorch_optimizer.Lion, {"weight_decouple": True, "fixed_decay": False}),
    "lamb": (
        pytorch_optimizer.Lamb,
        {"weight_decouple": True, "fixed_decay": False, "rectify": False, "grad_averaging": True,
         "adam": False, "pre_norm": False},
    ),
    "adan": (pytorch_optimizer.Adan, {"max_grad_norm": 0.0}),
    "adabelief": (
        pytorch_optimizer.AdaBelief,
        {"weight_decouple": True, "fixed_decay": False, "rectify": False, "ams_bound": False},
    ),
    "sgdp": (pytorch_optimizer.SGDP, {"weight_decouple": True, "fixed_decay": False}),
    "adamp": (pytorch_optimizer.AdamP, {"weight_decouple": True, "fixed_decay": False}),
    "lars": (pytorch_optimizer.LARS, {}),
    "novograd": (pytorch_optimizer.NovoGrad, {"fixed_decay": False}),
    "adabound": (pytorch_optimizer.AdaBound, {"weight_decouple": True, "fixed_decay": False, "ams_bound": False}),
    # vrl's `relative_step` defaults to false (the rate given to each step is used; a case may still set
    # it), and vrl keeps AdaFactor's momentum in the parameter's dtype (the reference: bfloat16).
    "adafactor": (
        pytorch_optimizer.AdaFactor,
        {"weight_decouple": True, "fixed_decay": False, "ams_bound": False, "relative_step": False,
         "momentum_dtype": PARAM_DTYPE},
    ),
    # The Hessian-diagonal estimates come from the fixture (`step(hessian=...)`), not the reference's
    # own Hutchinson estimator; its `num_samples` and `hessian_distribution` are then unused.
    "sophia": (pytorch_optimizer.SophiaH, {"weight_decouple": True, "fixed_decay": False}),
}


def reference_optimizer(optimizer, hparams):
    """A constructor `groups -> optimizer` for the reference of `optimizer` with the case's `hparams`."""
    cls, fixed = REFERENCES[optimizer]

    def make(groups, dtype):
        h = dict(hparams)
        h.pop("weight_decay", None)
        if "betas" in h:
            h["betas"] = tuple(h["betas"])
        options = {k: (dtype if v is PARAM_DTYPE else v) for k, v in fixed.items()}
        # Single-tensor code path: the one vrl mirrors (CPU defaults to it anyway).
        return cls(groups, foreach=False, **{**options, **h})

    return make


def weight_decay_groups(optimizer, hparams, params):
    """Two parameter groups: dim >= 2 with the case's weight decay (default: the reference's own), the
    others without."""
    cls, _ = REFERENCES[optimizer]
    wd = hparams.get("weight_decay", inspect.signature(cls).parameters["weight_decay"].default)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def orthogonalise(g, p):
    """`g` without its component along each output channel (row of the channel view) of `p`."""
    gv, pv = g.reshape(g.shape[0], -1), p.detach().reshape(p.shape[0], -1)
    return (gv - (gv * pv).sum(1, keepdim=True) / (pv * pv).sum(1, keepdim=True) * pv).reshape(g.shape)


def hessian_steps(hparams, options):
    """The steps (0-based) given a Hessian-diagonal estimate: every `update_period` from the first."""
    return list(range(0, STEPS, int(hparams.get("update_period", 10)))) if options.get("hessian") else []


def learning_rates(lr):
    """The per-step schedule, between 0.5 lr and 1.5 lr, different at every step."""
    return [lr * (1.0 + 0.5 * math.sin(0.3 * k)) for k in range(STEPS)]


def gradient_bank():
    """The shared gradients in float64, `bank[k][i]` for step k and parameter i: a fixed drift plus
    standard normal noise, times a log-normal factor per step, and zero for `norm.bias` at ZERO_STEP."""
    gen = torch.Generator().manual_seed(20240)
    drift = [torch.randn(shape, generator=gen, dtype=torch.float64) for _, shape in PARAMS]
    bank = []
    for k in range(STEPS):
        scale = math.exp(0.5 * torch.randn((), generator=gen, dtype=torch.float64).item())
        grads = [scale * (0.5 * d + torch.randn(d.shape, generator=gen, dtype=torch.float64)) for d in drift]
        if k == ZERO_STEP:
            grads[[n for n, _ in PARAMS].index("norm.bias")].zero_()
        bank.append(grads)
    return bank


def run_case(index, make, groups_of, options, dtype, lrs, bank, spec=PARAMS):
    """Runs `make(groups, dtype)` over a trajectory of the parameters `spec` (name, shape), with the
    gradients `bank[k][i]` and the rates `lrs[k]`. Returns (init, grads, final, hessians) as lists of
    tensors in `spec` order; grads[k][i] for step k, hessians[k][i] for the steps given an estimate."""
    gen = torch.Generator().manual_seed(1000 + index)
    # Drawn in float64 and cast, so both dtypes of a case start from the same numbers.
    scale = options.get("init_scale", 1.0)
    init = [(scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype) for _, shape in spec]
    grads = [[g.to(dtype) for g in step] for step in bank]
    # Hessian-diagonal estimates, mostly positive with some negative entries (as Hutchinson's can be).
    hessians = {
        k: [(2.0 * torch.randn(shape, generator=gen, dtype=torch.float64) + 3.0).to(dtype) for _, shape in spec]
        for k in options.get("hessian_steps", [])
    }
    params = [t.clone().requires_grad_(True) for t in init]
    opt = make(groups_of(params), dtype)
    # `step(hessian=...)` takes them in the order of the parameter groups.
    group_order = [next(i for i, q in enumerate(params) if q is p) for g in opt.param_groups for p in g["params"]]
    for k in range(STEPS):
        opt.zero_grad(set_to_none=True)
        for i, ((pname, _), p) in enumerate(zip(spec, params)):
            if options.get("orthogonal") and pname == "conv.weight":
                grads[k][i] = orthogonalise(grads[k][i], p)
            p.grad = grads[k][i].clone()
        for group in opt.param_groups:
            group["lr"] = lrs[k]
        if k in hessians:
            opt.step(hessian=[hessians[k][i].clone() for i in group_order])
        else:
            opt.step()
    final = [p.detach().clone() for p in params]
    return init, grads, final, hessians


def max_rel_diff(got, expected):
    """The largest per-tensor relative difference, max|a - b| / max|b| (the measure the Rust tests use)."""
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(got, expected))


def plain_groups(wd):
    return lambda params: [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


# The authors' code (or a port of it) against vrl's reference on the same trajectory (float64, the
# shared gradients, weight decay 0.1 on dim >= 2, the per-step schedule around `lr`): (optimizer,
# original, settings, lr, reference constructor, original constructor, options, expected). Constructors
# take (groups, dtype). `expected` is "same" (max relative difference <= 1e-12 after STEPS steps),
# "close" (the same algorithm up to a detail such as where a small epsilon enters: 1e-15 to 1e-6) or "differs"
# (> 1e-3: a different algorithm; docs/optimizers.md says how).
PO = pytorch_optimizer
TWO_D = [("linear.weight", [4, 3]), ("norm.bias", [3])]
ORIGINALS = [
    ("lion", "lion-pytorch 0.2.3 Lion", "", 1e-3, lambda g, _: PO.Lion(g, lr=1e-3, foreach=False),
     lambda g, _: lion_pytorch.Lion(g, lr=1e-3), {}, "same"),
    ("adan", "timm 1.0.31 Adan (port of sail-sg/Adan), proximal decay", "", 1e-2,
     lambda g, _: PO.Adan(g, lr=1e-2, foreach=False), lambda g, _: timm.optim.Adan(g, lr=1e-2, foreach=False), {},
     "same"),
    ("adan", "timm 1.0.31 Adan, no_prox", "weight_decouple", 1e-2,
     lambda g, _: PO.Adan(g, lr=1e-2, weight_decouple=True, foreach=False),
     lambda g, _: timm.optim.Adan(g, lr=1e-2, no_prox=True, foreach=False), {}, "same"),
    ("adabelief", "timm 1.0.31 AdaBelief (port of juntang-zhuang/Adabelief-Optimizer)", "rectify off", 1e-2,
     lambda g, _: PO.AdaBelief(g, lr=1e-2, foreach=False),
     lambda g, _: timm.optim.AdaBelief(g, lr=1e-2, rectify=False, foreach=False), {}, "same"),
    ("sgdp", "timm 1.0.31 SGDP (port of clovaai/AdamP)", "momentum 0.9, nesterov", 0.1,
     lambda g, _: PO.SGDP(g, lr=0.1, momentum=0.9, nesterov=True, foreach=False),
     lambda g, _: timm.optim.SGDP(g, lr=0.1, momentum=0.9, nesterov=True), {"orthogonal": True}, "same"),
    ("adamp", "timm 1.0.31 AdamP (port of clovaai/AdamP)", "eps 1e-8", 1e-2,
     lambda g, _: PO.AdamP(g, lr=1e-2, foreach=False), lambda g, _: timm.optim.AdamP(g, lr=1e-2),
     {"orthogonal": True}, "close"),
    ("adamp", "timm 1.0.31 AdamP", "eps 1e-30", 1e-2,
     lambda g, _: PO.AdamP(g, lr=1e-2, eps=1e-30, foreach=False),
     lambda g, _: timm.optim.AdamP(g, lr=1e-2, eps=1e-30), {"orthogonal": True}, "same"),
    ("lars", "timm 1.0.31 Lars", "momentum 0.9, trust_coefficient 1e-3, timm's eps 1e-30", 1.0,
     lambda g, _: PO.LARS(g, lr=1.0, momentum=0.9, foreach=False),
     lambda g, _: timm.optim.Lars(g, lr=1.0, momentum=0.9, eps=1e-30, foreach=False), {}, "same"),
    # timm keeps NovoGrad's second moment in float32 even for float64 parameters.
    ("novograd", "timm 1.0.31 NvNovoGrad (NVIDIA's)", "", 1e-2,
     lambda g, _: PO.NovoGrad(g, lr=1e-2, foreach=False), lambda g, _: timm.optim.NvNovoGrad(g, lr=1e-2), {},
     "close"),
    ("novograd", "timm 1.0.31 NvNovoGrad (NVIDIA's)", "grad_averaging", 1e-2,
     lambda g, _: PO.NovoGrad(g, lr=1e-2, grad_averaging=True, foreach=False),
     lambda g, _: timm.optim.NvNovoGrad(g, lr=1e-2, grad_averaging=True), {}, "differs"),
    ("adabound", "adabound 0.0.5 AdaBound (Luolc's)", "coupled decay (weight_decouple off)", 1e-2,
     lambda g, _: PO.AdaBound(g, lr=1e-2, weight_decouple=False, foreach=False),
     lambda g, _: adabound.AdaBound(g, lr=1e-2), {}, "close"),
    ("lamb", "timm 1.0.31 Lamb (NVIDIA's, the paper's algorithm)", "decoupled decay, no clipping", 1e-2,
     lambda g, _: PO.Lamb(g, lr=1e-2, max_grad_norm=0.0, foreach=False),
     lambda g, _: timm.optim.Lamb(g, lr=1e-2, max_grad_norm=None, decoupled_decay=True, foreach=False), {},
     "differs"),
    ("adafactor", "timm 1.0.31 Adafactor (port of fairseq's)", "no momentum, scale_parameter off", 1e-2,
     lambda g, _: PO.AdaFactor(g, lr=1e-2, betas=(None, 0.999), relative_step=False, scale_parameter=False,
                               foreach=False),
     lambda g, _: timm.optim.Adafactor(g, lr=1e-2, min_dim_size_to_factor=1), {"spec": TWO_D}, "same"),
    ("adafactor", "timm 1.0.31 Adafactor", "relative_step, no momentum", 1e-2,
     lambda g, _: PO.AdaFactor(g, lr=None, betas=(None, 0.999), relative_step=True, foreach=False),
     lambda g, _: timm.optim.Adafactor(g, lr=None, min_dim_size_to_factor=1), {"spec": TWO_D}, "same"),
]
LIMITS = {"same": (0.0, 1e-12), "close": (1e-15, 1e-6), "differs": (1e-3, math.inf)}


def compare_originals(bank):
    """Runs every ORIGINALS comparison; returns the records for the metadata."""
    records = []
    for index, (optimizer, original, settings, lr, ref, orig, options, expected) in enumerate(ORIGINALS):
        spec = options.get("spec", PARAMS)
        keep = [[n for n, _ in PARAMS].index(n) for n, _ in spec]
        sub_bank = [[step[i] for i in keep] for step in bank]
        finals = []
        for make in (ref, orig):
            with warnings.catch_warnings():
                # adabound 0.0.5 uses torch's deprecated `add_(Number, Tensor)`.
                warnings.simplefilter("ignore")
                _, _, final, _ = run_case(
                    500 + index, make, plain_groups(0.1), options, torch.float64, learning_rates(lr), sub_bank, spec
                )
            finals.append(final)
        diff = max_rel_diff(finals[1], finals[0])
        low, high = LIMITS[expected]
        print(f"  {optimizer} vs {original} ({settings or 'defaults'}): max rel diff {diff:.3e}, {expected}")
        assert low <= diff <= high, f"{optimizer} vs {original}: {diff:e} is not `{expected}`"
        records.append({"optimizer": optimizer, "original": original, "settings": settings,
                        "expected": expected, "max_rel_diff": diff})
    return records


def save_safetensors(path, tensors, metadata):
    """Writes `tensors` (name -> contiguous CPU tensor of float64/float32) in the safetensors format."""
    assert sys.byteorder == "little", "safetensors stores little-endian data"
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        tag = {torch.float64: "F64", torch.float32: "F32"}[t.dtype]
        data = bytes(t.contiguous().view(torch.uint8).flatten().tolist())
        header[name] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def main():
    bank = gradient_bank()
    tensors = {}
    for dname, (dtype, _) in DTYPES.items():
        for i, (pname, _) in enumerate(PARAMS):
            tensors[f"grads/{dname}/{pname}"] = torch.stack([step[i] for step in bank]).to(dtype)
    cases = []
    for index, (name, optimizer, hparams, options) in enumerate(CASES):
        lrs = learning_rates(hparams["lr"])
        assert all(math.isfinite(lr) and lr > 0 for lr in lrs)
        tensors[f"{name}/lrs"] = torch.tensor(lrs, dtype=torch.float64)
        steps_with_hessian = hessian_steps(hparams, options)
        make = reference_optimizer(optimizer, hparams)
        groups_of = lambda params: weight_decay_groups(optimizer, hparams, params)  # noqa: E731
        own_grads = ["conv.weight"] if options.get("orthogonal") else []
        for dname, (dtype, _) in DTYPES.items():
            init, grads, final, hessians = run_case(
                index, make, groups_of, {**options, "hessian_steps": steps_with_hessian}, dtype, lrs, bank
            )
            for i, (pname, _) in enumerate(PARAMS):
                tensors[f"{name}/{dname}/init/{pname}"] = init[i]
                if hessians:
                    tensors[f"{name}/{dname}/hessians/{pname}"] = torch.stack([h[i] for h in hessians.values()])
                if pname in own_grads:
                    tensors[f"{name}/{dname}/grads/{pname}"] = torch.stack([g[i] for g in grads])
                tensors[f"{name}/{dname}/final/{pname}"] = final[i]
        cases.append({
            "name": name,
            "optimizer": optimizer,
            "hparams": hparams,
            "steps": STEPS,
            "params": PARAMS,
            "dtypes": list(DTYPES),
            "hessian_steps": steps_with_hessian,
            "own_grads": own_grads,
            "lr_sensitive": not options.get("lr_ignored", False),
        })
    print("vrl's reference against the original code:")
    originals = compare_originals(bank)
    packages = ["torch", "pytorch-optimizer", "timm", "lion-pytorch", "adabound"]
    generator = "python/optim_reference.py, " + ", ".join(f"{p} {version(p)}" for p in packages)
    metadata = {"cases": json.dumps(cases), "originals": json.dumps(originals), "generator": generator}
    save_safetensors(OUT, tensors, metadata)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(tensors)} tensors, {len(cases)} cases)")


if __name__ == "__main__":
    main()
