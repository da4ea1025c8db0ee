"""Generates the timm reference fixtures of the model zoo (`crates/vrl-models/tests/fixtures/models/`).

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
`vrl_args` are the `vrl_models::ModelArgs` that build the same network in vrl. It also writes
`param_counts.json`: the parameter count of every registered model at its default configuration, as
timm reports it (for `vrl models list`, whose counts must be equal).

The Rust test `crates/vrl-models/tests/timm_reference.rs` loads the weights into vrl's model by their
timm keys (so the test fails on any key or shape difference) and compares the logits.

Usage (timm is needed only here, not by the tests):

    $VRL_PYTHON -m pip install timm==1.0.31
    $VRL_PYTHON python/model_reference.py [CASE...]
"""

import importlib
import json
import pathlib
import sys

import timm
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "vrl-models" / "tests" / "fixtures" / "models"


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


def param_count(name, kwargs=None, source="timm"):
    model = create(name, kwargs, source)
    return sum(p.numel() for p in model.parameters())


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


def run_case(case):
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
    with torch.no_grad():
        model.eval()
        logits_eval = model(x)
        model.train()
        logits_train = model(x)
    tensors["input"] = x
    tensors["logits_eval"] = logits_eval.contiguous()
    tensors["logits_train"] = logits_train.contiguous()
    if case.get("_grads"):
        # Gradients of a fixed linear function of the train-mode logits, for one case per family.
        weight = torch.randn(logits_train.shape, generator=torch.Generator().manual_seed(99))
        model.zero_grad(set_to_none=True)
        (model(x) * weight).sum().backward()
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
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{case['case']}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    size = path.stat().st_size
    print(f"{case['case']}: {sum(p.numel() for p in model.parameters())} params, {size / 1e6:.2f} MB")


def main():
    wanted = set(sys.argv[1:])
    cases = load_cases()
    for case in cases:
        if not wanted or case["case"] in wanted:
            run_case(case)
    counts_path = OUT / "param_counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    for case in cases:
        for name in case.get("count_models", []):
            if not wanted or case["case"] in wanted or name not in counts:
                counts[name] = param_count(name, source=case.get("source", "timm"))
    counts_path.write_text(json.dumps(dict(sorted(counts.items())), indent=2) + "\n")


if __name__ == "__main__":
    main()
