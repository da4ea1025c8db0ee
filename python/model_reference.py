"""Generates the timm reference fixtures of the model zoo, which `crates/vrl-models/tests/timm_reference.rs`
runs on first use (into `target/tmp/model-reference/<hash of this script, the cases and the pins>/`).

For each case of every module in `python/model_cases/` (each defines `CASES`, a list of dicts), it
builds the timm model (`timm_name` with `timm_kwargs`: small depths and widths, so fixtures stay small;
or torchvision's for `"source": "torchvision"`, or the case's own `build`; see model_cases/README.md)
from a fixed seed, runs a seeded input through it in eval mode and in train mode (drop rates 0, so
both are deterministic), and writes one safetensors file per case with

    state/<key>    every entry of timm's state dict, as timm names it
    input          the input batch, float32 [N, C, H, W]
    logits_eval    timm's output in eval mode
    logits_train   timm's output in train mode (batch statistics in batch norm)
    loss_weight,   for the first case of each family: a fixed weight w and the gradients of
    grad/<key>     sum(w * logits) in train mode with respect to every parameter

and metadata `{"timm": version, "torch": version, "vrl_model": name, "vrl_args": {...}}`, where
`vrl_args` are the `vrl_models::ModelArgs` that build the same network in vrl. A case with
`"train_seed": s` has stochastic depth on (`drop_path_rate` > 0): its train-mode forward passes start
from `torch.manual_seed(s)` (metadata `train_seed`), so that vrl, seeding LibTorch's shared CPU
generator with `tch::manual_seed(s)`, must draw the same per-sample masks in the same order. It also writes `param_counts.json`: the
number of trainable parameters of every registered model at its default configuration, as timm
(or, for the models timm does not register, timm's classes built with the paper's arguments)
reports it; `vrl models list` must show the same counts.

The Rust test loads the weights into vrl's model by their timm keys (so the test fails on any key or
shape difference) and compares the logits. timm's version must be the one pinned in
`python/requirements.txt`, which `cargo xtask test` installs into the venv. Usage:

    $VRL_PYTHON python/model_reference.py --out DIR [CASE...]
"""

import argparse
import importlib
import json
import pathlib
import time

import timm
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pinned_version(package):
    """The version `python/requirements.txt` pins `package` to."""
    for line in (ROOT / "python" / "requirements.txt").read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if name == package:
            return version
    raise SystemExit(f"python/requirements.txt pins no version of {package}")


def load_cases():
    cases = []
    for path in sorted((ROOT / "python" / "model_cases").glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"model_cases.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # The first case of each family also records gradients.
        cases.extend(dict(c, _grads=(i == 0)) for i, c in enumerate(module.CASES))
    return cases


def create(name, kwargs=None, source="timm"):
    """timm's model `name`, or torchvision's where `source` is "torchvision" (e.g. AlexNet)."""
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, **(kwargs or {}))
    return timm.create_model(name, pretrained=False, **(kwargs or {}))


def param_count(build):
    """Trainable parameters of the model `build()` returns, built on the meta device (no memory, no
    initialisation work: counting every full-size model takes seconds instead of tens)."""
    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def randomize_norms(model):
    """Random affine parameters and running statistics for every batch norm, so that fixtures also
    check branches that timm's init silences (zero-init last BN of residual blocks) and the use of
    running statistics in eval mode. Draws from the seeded global generator."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def run_case(case, out):
    torch.manual_seed(case.get("seed", 0))
    if "build" in case:  # built through the family's class, for shrinking what create_model cannot
        model = case["build"]()
    elif case.get("timm_class"):
        # Registered names that fix some constructor arguments (e.g. `mixer_s16_224` its patch size
        # and width) cannot be shrunk through create_model: build the family's class directly.
        module_name, cls_name = case["timm_class"].rsplit(".", 1)
        model = getattr(importlib.import_module(module_name), cls_name)(**case.get("timm_kwargs", {}))
    else:
        model = create(case["timm_name"], case.get("timm_kwargs", {}), case.get("source", "timm"))
    if "patch" in case:  # a change timm has no option for (e.g. a CIFAR stem), same state-dict keys
        model = case["patch"](model)
    if case.get("randomize_norms"):
        model = randomize_norms(model)
    if case.get("perturb"):
        # timm initialises some parameters to constants (zero heads, LayerNorm ones/zeros, layer
        # scale 1e-6) that would let a wrong layer go unnoticed: add seeded noise to every parameter.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * case["perturb"])
    n, c, h, w = case.get("input_shape", (2, 3, 32, 32))
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(n, c, h, w, generator=gen)
    tensors = {f"state/{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    seed = case.get("train_seed")

    def train_forward(seed=seed):
        # Stochastic depth draws from the global CPU generator, which LibTorch shares with tch: the
        # Rust test seeds `tch::manual_seed(train_seed)` and must draw the same masks in the same order.
        if seed is not None:
            torch.manual_seed(seed)
        return model(x)

    with torch.no_grad():
        model.eval()
        logits_eval = model(x)
        model.train()
        logits_train = train_forward()
        if seed is not None and torch.equal(train_forward(seed + 1), logits_train):
            raise SystemExit(f"{case['case']}: the train-mode logits do not depend on the seed (no drop path?)")
    tensors["input"] = x
    tensors["logits_eval"] = logits_eval.contiguous()
    tensors["logits_train"] = logits_train.contiguous()
    if case.get("_grads"):
        # Gradients of a fixed linear function of the train-mode logits, for one case per family.
        weight = torch.randn(logits_train.shape, generator=torch.Generator().manual_seed(99))
        model.zero_grad(set_to_none=True)
        (train_forward() * weight).sum().backward()
        tensors["loss_weight"] = weight
        for k, p in model.named_parameters():
            if p.grad is not None:
                tensors[f"grad/{k}"] = p.grad.detach().clone().contiguous()
    meta = {
        "timm": timm.__version__,
        "torch": torch.__version__,
        "source": case.get("source", "timm"),
        "timm_name": case["timm_name"],
        "timm_kwargs": json.dumps(case.get("timm_kwargs", {})),
        "vrl_model": case["vrl_model"],
        "vrl_args": json.dumps(case.get("vrl_args", {})),
    }
    if seed is not None:
        meta["train_seed"] = str(seed)
    path = out / f"{case['case']}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    size = path.stat().st_size
    print(f"{case['case']}: {sum(p.numel() for p in model.parameters())} params, {size / 1e6:.2f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory for the fixtures")
    parser.add_argument("cases", nargs="*", help="only these cases (default: all)")
    args = parser.parse_args()
    want = pinned_version("timm")
    if timm.__version__ != want:
        raise SystemExit(
            f"timm {timm.__version__} is installed, python/requirements.txt pins {want}: "
            "run `cargo xtask test`, which installs the pinned version"
        )
    start = time.perf_counter()
    cases = load_cases()
    unknown = set(args.cases) - {c["case"] for c in cases}
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        if not args.cases or case["case"] in args.cases:
            run_case(case, args.out)
    counts = {}
    for case in cases:
        source = case.get("source", "timm")
        for name in case.get("count_models", []):
            counts[name] = param_count(lambda name=name: create(name, source=source))
        for name, build in case.get("count_builds", {}).items():
            counts[name] = param_count(build)
    (args.out / "param_counts.json").write_text(json.dumps(dict(sorted(counts.items())), indent=2) + "\n")
    print(f"{len(cases)} cases and {len(counts)} parameter counts in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
