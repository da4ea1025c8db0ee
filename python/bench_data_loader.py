"""PyTorch reference for `vrl bench data` (the PyTorch side of `cargo xtask bench`).

Measures how many training images per second `torch.utils.data.DataLoader` delivers for CIFAR-shaped
data with the standard CIFAR training transforms, the way a PyTorch script would do it:

    Dataset.__getitem__: decode the example from the CIFAR binary record (label byte + 3072 pixel bytes,
                         planar RGB 32x32) -> uint8 tensor [3, 32, 32]
                         -> zero-pad 4 -> random 32x32 crop -> random horizontal flip (p = 0.5)
                         -> float / 255 -> normalise with CIFAR-10's mean and std
    DataLoader(batch_size=128, shuffle=True, num_workers=2, drop_last=False), default collate

The transforms are written with torch tensor ops (the same operations as torchvision's
`RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `Normalize(mean, std)` on tensors), so only
torch is needed. The data are random bytes held in memory (50,000 records by default), as the data
set's real decode cost in both implementations is slicing a record out of the file's bytes.

After one warm-up pass over `--warmup` batches (worker start-up included there), batches are counted
for `--seconds` (at least 20 batches). Usage:

    $VRL_PYTHON python/bench_data_loader.py [--images 50000] [--batch-size 128] [--workers 2]
                                            [--seconds 5.0] [--json]

With `--json` the only line on stdout is
`{"name": "cifar_loader", "impl": "pytorch", "batch_size": B, "workers": W, "images_per_sec": x}`.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
RECORD = 1 + 3 * 32 * 32


class CifarRecords(torch.utils.data.Dataset):
    """CIFAR-10 binary records in memory, decoded and augmented per example."""

    def __init__(self, records: np.ndarray):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        label = int(rec[0])
        img = torch.from_numpy(rec[1:].reshape(3, 32, 32).copy())
        img = F.pad(img, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        img = img[:, top : top + 32, left : left + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        img = (img.float() / 255.0 - MEAN) / STD
        return img, label


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    records = rng.integers(0, 256, size=(args.images, RECORD), dtype=np.uint8)
    records[:, 0] %= 10
    loader = torch.utils.data.DataLoader(
        CifarRecords(records),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )

    def batches():
        while True:
            yield from loader

    it = batches()
    for _ in range(args.warmup):
        next(it)
    start = time.perf_counter()
    images = 0
    n = 0
    while n < 20 or time.perf_counter() - start < args.seconds:
        x, _ = next(it)
        images += x.shape[0]
        n += 1
    ips = images / (time.perf_counter() - start)
    if args.json:
        print(json.dumps({"name": "cifar_loader", "impl": "pytorch", "batch_size": args.batch_size,
                          "workers": args.workers, "images_per_sec": ips}))
    else:
        print(f"cifar_loader: {ips:.0f} images/s (batch {args.batch_size}, {args.workers} workers)")


if __name__ == "__main__":
    main()
