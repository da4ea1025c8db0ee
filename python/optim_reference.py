"""Reference trajectories of vrl-optim's optimizers for its tests.

SGD and AdamW are checked against `torch.optim`; the others against `pytorch_optimizer` 4.1.0
(`REFERENCES` below), with every extra of that package (gradient centralization, AdaNorm, cautious
updates, rectification, gradient-norm clipping, foreach) left off, so each is the paper's plain
algorithm as the package implements it.

Run from the repository root (needs torch and pytorch-optimizer):

    $VRL_PYTHON python/optim_reference.py

It writes `crates/vrl-optim/tests/fixtures/optim_reference.safetensors`, read by
`crates/vrl-optim/tests/reference.rs`. Never edit the fixture by hand; change this script and rerun it.

For each case and for float64 and float32, three parameters (`linear.weight` [4, 3], `norm.bias` [3],
`conv.weight` [2, 3, 2, 2]) take 10 steps. The gradient of step k is a seeded random tensor set
directly as `p.grad` (no loss), so the Rust side can feed the very same gradients. Cases marked
`orthogonal` make the gradient of `conv.weight` orthogonal to each output channel of the current
weight (as for a weight followed by normalisation), so that AdamP's and SGDP's projection is taken;
`init_scale` scales the initial parameters (LAMB's trust ratio clamps the weight norm at 10).
Cases marked `hessian` (SophiaH) give the optimizer seeded Hessian-diagonal estimates every
`update_period` steps through `step(hessian=...)`, in place of its own Hutchinson estimator (which needs a
loss), so that vrl's `update_hessian` can be fed the very same numbers.
The learning rate changes every step (`lr_k = lr * (1 + 0.1 k)`), set as `group["lr"]` before each
`opt.step()`, as vrl passes it to `Optimizer::step(lr)`. vrl decays only parameters with two or more
dimensions, so those form one parameter group with the case's `weight_decay` and the 1-d ones a group
without.

Tensors, all in the file's one flat namespace:

    {case}/{dtype}/init/{param}        parameters before the first step
    {case}/{dtype}/grad/{k}/{param}    gradient of step k (0-based), in the case's dtype
    {case}/{dtype}/hessian/{k}/{param} Hessian-diagonal estimate given before step k (SophiaH only)
    {case}/{dtype}/final/{param}       parameters after the last step
    {case}/lrs                         float64 [steps], the learning rate of each step

`__metadata__["cases"]` is a JSON list of `{"name", "optimizer", "hparams", "lrs", "steps",
"params": [[name, shape], ...], "dtypes", "hessian_steps"}`, with hyper-parameters under vrl's (= PyTorch's) names, so
that `hparams` deserialises straight into `vrl_optim::HParams`.

The file is written by hand in the safetensors format (8-byte little-endian header length, JSON
header padded with spaces to a multiple of 8, then the raw little-endian bytes) so that the script
needs no `safetensors` package.
"""

import json
import math
import struct
import sys
from pathlib import Path

import inspect
from importlib.metadata import version

import pytorch_optimizer
import torch

OUT = Path(__file__).resolve().parent.parent / "crates/vrl-optim/tests/fixtures/optim_reference.safetensors"
STEPS = 10
PARAMS = [("linear.weight", [4, 3]), ("norm.bias", [3]), ("conv.weight", [2, 3, 2, 2])]
DTYPES = {"f64": (torch.float64, "F64"), "f32": (torch.float32, "F32")}

# (name, optimizer, hyper-parameters with vrl's names, options of the fixture). `lr` is the base of the
# per-step schedule.
CASES = [
    ("sgd_plain", "sgd", {"lr": 0.1}, {}),
    ("sgd_momentum_wd", "sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}, {}),
    ("sgd_momentum_dampening", "sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}, {}),
    ("sgd_nesterov_wd", "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, {}),
    ("adamw_defaults", "adamw", {"lr": 1e-2}, {}),
    ("adamw_custom", "adamw", {"lr": 1e-2, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1}, {}),
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
    ("adamp_nesterov", "adamp", {"lr": 1e-2, "betas": [0.8, 0.99], "nesterov": True, "weight_decay": 0.1},
     {"orthogonal": True}),
    ("lars_defaults", "lars", {"lr": 1.0}, {}),
    ("lars_nesterov_wd", "lars",
     {"lr": 1.0, "momentum": 0.8, "dampening": 0.1, "nesterov": True, "weight_decay": 0.1,
      "trust_coefficient": 0.01}, {}),
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
    # The Hessian-diagonal estimates come from the fixture (`step(hessian=...)`), not the reference's
    # own Hutchinson estimator; its `num_samples` and `hessian_distribution` are then unused.
    "sophia": (pytorch_optimizer.SophiaH, {"weight_decouple": True, "fixed_decay": False}),
    "adafactor": (
        pytorch_optimizer.AdaFactor,
        {"weight_decouple": True, "fixed_decay": False, "ams_bound": False, "relative_step": False,
         "momentum_dtype": PARAM_DTYPE},
    ),
}


def make_optimizer(optimizer, hparams, params):
    """The reference optimizer, with weight decay on parameters of two or more dimensions only."""
    cls, fixed = REFERENCES[optimizer]
    h = dict(hparams)
    if "betas" in h:
        h["betas"] = tuple(h["betas"])
    # The reference's own default (torch requires nothing else; vrl's defaults are the same).
    wd = h.pop("weight_decay", inspect.signature(cls).parameters["weight_decay"].default)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": wd},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # Single-tensor code path: the one vrl mirrors (CPU defaults to it anyway).
    fixed = {k: (params[0].dtype if v is PARAM_DTYPE else v) for k, v in fixed.items()}
    return cls(groups, foreach=False, **{**fixed, **h})


def orthogonalise(g, p):
    """`g` without its component along each output channel (row of the channel view) of `p`."""
    gv, pv = g.reshape(g.shape[0], -1), p.detach().reshape(p.shape[0], -1)
    return (gv - (gv * pv).sum(1, keepdim=True) / (pv * pv).sum(1, keepdim=True) * pv).reshape(g.shape)


def hessian_steps(hparams, options):
    """The steps (0-based) given a Hessian-diagonal estimate: every `update_period` from the first."""
    return list(range(0, STEPS, hparams.get("update_period", 10))) if options.get("hessian") else []


def run_case(index, optimizer, hparams, options, dtype, lrs):
    """Returns (init, grads, final, hessians) as lists of tensors in PARAMS order; grads[k][i] for step
    k, hessians[k][i] for the steps of `hessian_steps`."""
    gen = torch.Generator().manual_seed(1000 + index)
    # Drawn in float64 and cast, so both dtypes of a case start from the same numbers.
    scale = options.get("init_scale", 1.0)
    init = [(scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype) for _, shape in PARAMS]
    grads = [
        [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for _, shape in PARAMS]
        for _ in range(STEPS)
    ]
    # Hessian-diagonal estimates, mostly positive with some negative entries (as Hutchinson's can be).
    hessians = {
        k: [(2.0 * torch.randn(shape, generator=gen, dtype=torch.float64) + 3.0).to(dtype) for _, shape in PARAMS]
        for k in hessian_steps(hparams, options)
    }
    params = [t.clone().requires_grad_(True) for t in init]
    opt = make_optimizer(optimizer, hparams, params)
    # `step(hessian=...)` takes them in the order of the parameter groups.
    group_order = [next(i for i, q in enumerate(params) if q is p) for g in opt.param_groups for p in g["params"]]
    for k in range(STEPS):
        opt.zero_grad(set_to_none=True)
        for i, ((pname, _), p) in enumerate(zip(PARAMS, params)):
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
    tensors = {}
    cases = []
    for index, (name, optimizer, hparams, options) in enumerate(CASES):
        lrs = [hparams["lr"] * (1 + 0.1 * k) for k in range(STEPS)]
        assert all(math.isfinite(lr) for lr in lrs)
        tensors[f"{name}/lrs"] = torch.tensor(lrs, dtype=torch.float64)
        for dname, (dtype, _) in DTYPES.items():
            init, grads, final, hessians = run_case(index, optimizer, hparams, options, dtype, lrs)
            for i, (pname, _) in enumerate(PARAMS):
                tensors[f"{name}/{dname}/init/{pname}"] = init[i]
                for k, h in hessians.items():
                    tensors[f"{name}/{dname}/hessian/{k}/{pname}"] = h[i]
                for k in range(STEPS):
                    tensors[f"{name}/{dname}/grad/{k}/{pname}"] = grads[k][i]
                tensors[f"{name}/{dname}/final/{pname}"] = final[i]
        cases.append({
            "name": name,
            "optimizer": optimizer,
            "hparams": hparams,
            "lrs": lrs,
            "steps": STEPS,
            "params": PARAMS,
            "dtypes": list(DTYPES),
            "hessian_steps": hessian_steps(hparams, options),
        })
    generator = (
        f"python/optim_reference.py, torch {torch.__version__}, "
        f"pytorch-optimizer {version('pytorch-optimizer')}"
    )
    metadata = {"cases": json.dumps(cases), "generator": generator}
    save_safetensors(OUT, tensors, metadata)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(tensors)} tensors, {len(cases)} cases)")


if __name__ == "__main__":
    main()
