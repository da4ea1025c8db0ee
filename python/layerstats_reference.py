"""Reference layer statistics for `vrl-layerstats`, computed by WeightWatcher 0.7.7.

Writes, for `crates/vrl-layerstats/tests/reference.rs`:
  * `crates/vrl-layerstats/tests/fixtures/layerstats_reference.safetensors`: seeded weights (random and
    heavy-tailed dense matrices and convolution kernels, a rank-deficient matrix, layers too small for
    an α, bf16/f16/f64 copies, a bias) and 1-D samples `sample.*` for the power-law fit;
  * `.../layerstats_reference.json`: `weightwatcher.WeightWatcher(model=state_dict).analyze()` with its
    defaults, one entry per layer it analysed (alpha, xmin, D, sigma, num_pl_spikes, entropy, norm,
    spectral_norm, N, M, rf, num_evals, status), and for each sample WeightWatcher's `WWFit` and the
    `powerlaw` package's `Fit` (alpha, xmin, D).

Run: `$VRL_PYTHON -m pip install weightwatcher==0.7.7 && $VRL_PYTHON python/layerstats_reference.py`.
"""

import json
import logging
import pathlib
import warnings

import numpy as np
import powerlaw
import torch
from safetensors.torch import save_file

warnings.simplefilter("ignore")
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
import weightwatcher  # noqa: E402
from weightwatcher.WW_powerlaw import WWFit  # noqa: E402

WW_VERSION = "0.7.7"
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/vrl-layerstats/tests/fixtures"


def weights(rng):
    """name -> torch tensor (float32 unless named otherwise)."""
    g = lambda *s: rng.standard_normal(s)  # noqa: E731
    t = lambda df, *s: rng.standard_t(df, s)  # noqa: E731
    w = {}
    # Marchenko-Pastur bulk: α large and loosely determined.
    w["dense_gauss.weight"] = 0.1 * g(120, 80)
    w["dense_gauss.bias"] = 0.1 * g(120)
    # Heavy-tailed entries give a power-law ESD.
    w["dense_heavy.weight"] = 0.05 * t(2.5, 150, 100)
    # A bulk with a few large spikes (a trained layer's shape).
    u, v = g(100, 4), g(4, 70)
    w["dense_spiked.weight"] = 0.05 * g(100, 70) + 0.2 * (u * np.array([3.0, 2.0, 1.5, 1.0])) @ v / 10
    # Rank 20 of 60: the zero eigenvalues are left out of the fit by the 1e-5 threshold.
    w["dense_lowrank.weight"] = g(90, 20) @ g(20, 60) * 0.05
    # 14 eigenvalues: WeightWatcher's small-sample fit.
    w["dense_small_n.weight"] = 0.1 * t(3.0, 40, 14)
    # 5 eigenvalues: below min_evals = 8, WeightWatcher skips the layer.
    w["dense_tiny.weight"] = 0.1 * g(10, 5)
    w["conv_gauss.weight"] = 0.1 * g(32, 24, 3, 3)
    # out < in with an odd kernel.
    w["conv_heavy.weight"] = 0.05 * t(2.5, 24, 40, 3, 3)
    w["conv_pointwise.weight"] = 0.05 * t(3.0, 80, 48, 1, 1)
    # A stem: 3 input channels, 25 kernel positions, 75 pooled eigenvalues.
    w["conv_stem.weight"] = 0.1 * g(16, 3, 5, 5)
    # An even kernel with out < in (WeightWatcher's N/M bookkeeping swaps N and M here).
    w["conv_even.weight"] = 0.1 * t(4.0, 16, 32, 2, 2)
    # out + in < kh + kw: WeightWatcher's other slicing branch; 49 eigenvalues of 1 each.
    w["conv_flip.weight"] = 0.3 * g(2, 1, 7, 7)
    # Tiny weights: part of the ESD falls below the 1e-5 threshold.
    w["conv_faint.weight"] = 2e-3 * t(3.0, 24, 16, 3, 3)
    # Tinier still: every eigenvalue below the threshold, so nothing to fit.
    w["conv_silent.weight"] = 1e-4 * g(12, 8, 3, 3)
    out = {k: torch.tensor(a, dtype=torch.float32) for k, a in w.items()}
    out["dense_bf16.weight"] = torch.tensor(0.05 * t(3.0, 64, 48), dtype=torch.bfloat16)
    out["dense_f16.weight"] = torch.tensor(0.05 * t(3.0, 48, 40), dtype=torch.float16)
    out["dense_f64.weight"] = torch.tensor(0.05 * t(3.0, 50, 30), dtype=torch.float64)
    return out


def samples(rng):
    """name -> 1-D float64 array for the power-law fit alone."""
    n = 800
    pareto = 1.0 * (1.0 - rng.random(n)) ** (-1.0 / 1.5)  # α = 2.5, x_min = 1
    bulk = np.concatenate([0.1 + 0.9 * rng.random(n // 2), (1.0 - rng.random(n // 2)) ** (-1.0 / 2.0)])
    return {
        "sample.pareto_2_5": pareto,
        "sample.bulk_tail_3": bulk,  # uniform bulk under an α = 3 tail from 1
        "sample.lognormal": rng.lognormal(0.0, 1.0, 600),  # not a power law: the fit still runs
        "sample.small_n": (1.0 - rng.random(15)) ** (-1.0 / 2.0),  # 15 values: WWFit's small-sample branch
    }


def num(x):
    x = float(x)
    return None if np.isnan(x) else x


def main():
    assert weightwatcher.__version__ == WW_VERSION, f"want weightwatcher {WW_VERSION}, have {weightwatcher.__version__}"
    rng = np.random.default_rng(20240607)
    tensors = weights(rng)
    sample_arrays = samples(rng)

    details = weightwatcher.WeightWatcher(model=dict(tensors)).analyze()
    layers = []
    for _, row in details.iterrows():
        layers.append(
            {
                "name": row["name"] + ".weight",
                "N": int(row["N"]),
                "M": int(row["M"]),
                "rf": int(row["rf"]),
                "num_evals": int(row["num_evals"]),
                "alpha": num(row["alpha"]),
                "xmin": num(row["xmin"]),
                "D": num(row["D"]),
                "sigma": num(row["sigma"]),
                "num_pl_spikes": int(row["num_pl_spikes"]),
                "status": row["status"],
                "entropy": num(row["entropy"]),
                "norm": num(row["norm"]),
                "spectral_norm": num(row["spectral_norm"]),
            }
        )

    fits = []
    for name, x in sample_arrays.items():
        ww = WWFit(x)
        pl = powerlaw.Fit(x, verbose=False)
        fits.append(
            {
                "name": name,
                "ww": {"alpha": float(ww.alpha), "xmin": float(ww.xmin), "D": float(ww.D), "sigma": float(ww.sigma)},
                "powerlaw": {"alpha": float(pl.alpha), "xmin": float(pl.xmin), "D": float(pl.D)},
            }
        )

    OUT.mkdir(parents=True, exist_ok=True)
    to_save = {k: v.contiguous() for k, v in tensors.items()}
    to_save.update({k: torch.tensor(v, dtype=torch.float64) for k, v in sample_arrays.items()})
    save_file(to_save, str(OUT / "layerstats_reference.safetensors"))
    doc = {
        "weightwatcher": WW_VERSION,
        "powerlaw": powerlaw.__version__,
        "analyze": "WeightWatcher(model=state_dict).analyze() with its defaults",
        "layers": layers,
        "samples": fits,
    }
    (OUT / "layerstats_reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    for l in layers:
        print(f"{l['name']:<24} M={l['M']:<4} rf={l['rf']:<3} evals={l['num_evals']:<4} alpha={l['alpha']} "
              f"xmin={l['xmin']} status={l['status']} entropy={l['entropy']}")
    for f in fits:
        print(f["name"], f["ww"], f["powerlaw"])


if __name__ == "__main__":
    main()
