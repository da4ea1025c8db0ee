"""Reference numbers for crates/vrl-vae: the ELBO decomposition of beta-TCVAE / beta-STCVAE on fixed tensors.

Writes crates/vrl-vae/tests/fixtures/vae_reference.json, read by crates/vrl-vae/tests/reference.rs.
Run with the project venv:  ~/.cache/vrl/venv/bin/python python/vae_reference.py

Follows Chen et al. (2018), "Isolating Sources of Disentanglement in VAEs": minibatch-weighted sampling
(weights 1/(N M)) and minibatch-stratified sampling (their appendix; the wrap-around weight in the last
row, so that each row of the weight matrix sums to one). Latent groups are runs of
`s` consecutive dimensions. Everything in float64. Also records the parameter count and state-dict
shapes of a PyTorch module with the architecture of crates/vrl-vae/src/conv_vae.rs.
"""

import json
import math
import pathlib

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/vrl-vae/tests/fixtures/vae_reference.json"


class Encoder(nn.Module):
    def __init__(self, in_chans=1, latent_dim=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 32, 4, 2, 1)
        self.conv2 = nn.Conv2d(32, 32, 4, 2, 1)
        self.conv3 = nn.Conv2d(32, 64, 2, 2, 0)
        self.conv4 = nn.Conv2d(64, 64, 2, 2, 0)
        self.fc = nn.Linear(1024, 256)
        self.fc_mean = nn.Linear(256, latent_dim)
        self.fc_log_var = nn.Linear(256, latent_dim)


class Decoder(nn.Module):
    def __init__(self, in_chans=1, latent_dim=10):
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, 256)
        self.fc2 = nn.Linear(256, 1024)
        self.deconv1 = nn.ConvTranspose2d(64, 64, 4, 2, 1)
        self.deconv2 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.deconv3 = nn.ConvTranspose2d(32, 32, 4, 2, 1)
        self.deconv4 = nn.ConvTranspose2d(32, in_chans, 4, 2, 1)


class ConvVae(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()


def log_normal(z, mean, log_var):
    return -0.5 * ((z - mean) ** 2 / log_var.exp() + log_var + math.log(2 * math.pi))


def log_weights(estimator, m, n):
    if estimator == "minibatch_weighted":
        return torch.full((m, m), -math.log(n * m), dtype=torch.float64)
    w = torch.full((m, m), 1.0 / (m - 1), dtype=torch.float64)
    strat = (n - (m - 1)) / (n * (m - 1))
    for j in range(m):
        w[j, j] = 1.0 / n
        w[j, (j + 1) % m] = strat
    return w.log()


def decomposition(z, mean, log_var, s, estimator, n):
    m, d = z.shape
    lw = log_weights(estimator, m, n)
    mat = log_normal(z[:, None, :], mean[None, :, :], log_var[None, :, :])  # [j, i, d]

    def log_q(dims):
        return torch.logsumexp(lw + mat[:, :, dims].sum(-1), dim=1)

    log_qz = log_q(list(range(d)))
    log_groups = sum(log_q(list(range(g, g + s))) for g in range(0, d, s))
    log_dims = sum(log_q([k]) for k in range(d))
    log_qzx = log_normal(z, mean, log_var).sum(-1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
    return {
        "index_code_mi": (log_qzx - log_qz).mean().item(),
        "tc_between": (log_qz - log_groups).mean().item(),
        "tc_within": (log_groups - log_dims).mean().item(),
        "dimwise_kl": (log_dims - log_pz).mean().item(),
        "kl": (log_qzx - log_pz).mean().item(),
    }


def main():
    rng = np.random.default_rng(20180209)
    m, d = 12, 10
    mean = torch.tensor(rng.normal(size=(m, d)))
    log_var = torch.tensor(rng.normal(size=(m, d)) * 0.5 - 1.0)
    z = mean + (0.5 * log_var).exp() * torch.tensor(rng.normal(size=(m, d)))
    x = torch.tensor((rng.uniform(size=(m, 1, 8, 8)) < 0.3).astype(np.float64))
    logits = torch.tensor(rng.normal(size=(m, 1, 8, 8)) * 2.0)

    cases = []
    for estimator in ["minibatch_weighted", "minibatch_stratified"]:
        for s in [1, 2, 5, 10]:
            for n in [m, 1000, 737280]:
                cases.append({"estimator": estimator, "group_size": s, "dataset_size": n,
                              **decomposition(z, mean, log_var, s, estimator, n)})

    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean().item()
    kl_cf = (0.5 * (mean ** 2 + log_var.exp() - log_var - 1)).sum(1).mean().item()
    losses = []
    for estimator in ["minibatch_weighted", "minibatch_stratified"]:
        n = 737280
        t1 = decomposition(z, mean, log_var, 1, estimator, n)
        t2 = decomposition(z, mean, log_var, 2, estimator, n)
        for name, objective, total in [
            ("vae", {"name": "vae"}, rec + kl_cf),
            ("beta_vae", {"name": "beta_vae", "beta": 4.0}, rec + 4.0 * kl_cf),
            ("beta_tcvae", {"name": "beta_tcvae", "alpha": 1.0, "beta": 6.0, "gamma": 1.0},
             rec + t1["index_code_mi"] + 6.0 * t1["tc_between"] + t1["dimwise_kl"]),
            ("beta_stcvae", {"name": "beta_stcvae", "group_size": 2, "alpha": 0.5, "beta_between": 6.0,
                             "beta_within": 2.0, "gamma": 1.5},
             rec + 0.5 * t2["index_code_mi"] + 6.0 * t2["tc_between"] + 2.0 * t2["tc_within"]
             + 1.5 * t2["dimwise_kl"]),
        ]:
            losses.append({"case": name, "estimator": estimator, "dataset_size": n, "objective": objective,
                           "total": total})

    model = ConvVae()
    fixture = {
        "generator": "python/vae_reference.py",
        "torch": torch.__version__,
        "inputs": {"z": z.tolist(), "mean": mean.tolist(), "log_var": log_var.tolist(),
                   "x": x.flatten(1).tolist(), "logits": logits.flatten(1).tolist()},
        "reconstruction": rec,
        "kl_closed_form": kl_cf,
        "decomposition": cases,
        "losses": losses,
        "param_count": sum(p.numel() for p in model.parameters()),
        "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fixture, indent=1) + "\n")
    tmp.replace(OUT)
    print(f"wrote {OUT}: {len(cases)} decomposition cases, {len(losses)} losses, "
          f"{fixture['param_count']} parameters")


if __name__ == "__main__":
    main()
