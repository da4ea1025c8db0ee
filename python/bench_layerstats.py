"""WeightWatcher's twin of `vrl bench layers`: per-layer statistics of every layer of a ResNet-50.

  --make-weights PATH   write timm's resnet50 at its random initialisation (torch.manual_seed(0)) as
                        safetensors, for both sides to read
  --weights PATH        time reading PATH and `weightwatcher.WeightWatcher(model=state_dict).analyze()`
                        (defaults: α by the power-law fit, entropy, norms), as vrl times reading and
                        `vrl_layerstats::analyze_safetensors`
  --compare CSV         afterwards, compare α with the CSV `vrl bench layers --output` wrote: the largest
                        |Δα| over layers both fit, and the layers only one of them fits
  --json                print one JSON line (for `cargo xtask bench layers`)

Run by `cargo xtask bench layers`, which installs weightwatcher==0.7.7 into the venv first.
"""

import argparse
import csv
import json
import logging
import time
import warnings

warnings.simplefilter("ignore")
logging.getLogger("weightwatcher").setLevel(logging.ERROR)

WW_VERSION = "0.7.7"


def make_weights(path):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    print(f"wrote resnet50 (random init, seed 0) to {path}")


def compare(details, csv_path):
    with open(csv_path, newline="") as f:
        ours = {row["name"]: row for row in csv.DictReader(f)}
    ww = {row["name"] + ".weight": row for _, row in details.iterrows()}
    both, only_vrl, only_ww, deltas = 0, [], [], []
    for name, row in ww.items():
        ww_fit = row["status"] == "success" and row["alpha"] != -1
        mine = ours.get(name)
        vrl_fit = mine is not None and mine["alpha"] != ""
        if ww_fit and vrl_fit:
            both += 1
            deltas.append(abs(float(mine["alpha"]) - float(row["alpha"])))
        elif ww_fit:
            only_ww.append(name)
        elif vrl_fit:
            only_vrl.append(name)
    unanalysed = sorted(n for n in ours if n not in ww)
    return {
        "both_fitted": both,
        "max_abs_dalpha": max(deltas) if deltas else None,
        "fitted_only_vrl": len(only_vrl),
        "fitted_only_ww": len(only_ww),
        "layers_only_vrl": len(unanalysed),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--make-weights")
    parser.add_argument("--weights")
    parser.add_argument("--compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.make_weights:
        make_weights(args.make_weights)
        return
    if not args.weights:
        parser.error("--weights or --make-weights is required")

    import weightwatcher
    from safetensors.torch import load_file

    assert weightwatcher.__version__ == WW_VERSION, f"want weightwatcher {WW_VERSION}, have {weightwatcher.__version__}"
    start = time.perf_counter()
    state = load_file(args.weights)
    details = weightwatcher.WeightWatcher(model=state).analyze()
    secs = time.perf_counter() - start
    fitted = int(((details["status"] == "success") & (details["alpha"] != -1)).sum())
    out = {
        "name": "layerstats",
        "impl": f"weightwatcher {WW_VERSION}",
        "layers": len(details),
        "fitted": fitted,
        "seconds": secs,
        "layers_per_sec": len(details) / secs,
    }
    if args.compare:
        out.update(compare(details, args.compare))
    if args.json:
        print(json.dumps(out))
    else:
        print(out)


if __name__ == "__main__":
    main()
