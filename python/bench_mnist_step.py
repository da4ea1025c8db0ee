"""PyTorch reference for `vrl bench mnist-step` (the PyTorch side of `cargo xtask bench`).

Measures the throughput, in images per second, of one full training step of the MNIST CNN in PyTorch
eager mode on the CPU: forward in train mode (batch statistics in BatchNorm), cross-entropy, backward
and an SGD update, on one fixed random batch (no data loading, no augmentation). The model mirrors
`crates/vrl-models/src/mnist_cnn.rs` layer for layer:

    conv1 (1→32, 3×3, padding 1, no bias) → BatchNorm2d(32) → ReLU → MaxPool2d(2)
    conv2 (32→64, 3×3, padding 1, no bias) → BatchNorm2d(64) → ReLU → MaxPool2d(2)
    flatten → Linear(64·7·7 → 10)

and the optimizer mirrors vrl's `sgd` with `lr=0.05, momentum=0.9, nesterov=true, weight_decay=5e-4`,
where weight decay applies to parameters with two or more dimensions only (two parameter groups).

After 10 warm-up steps, steps are timed with `time.perf_counter` until `--seconds` have passed (at
least 20 steps). Usage:

    $VRL_PYTHON python/bench_mnist_step.py [--batch-size 128] [--threads N] [--seconds 3.0] [--json]

With `--json`, the only line on stdout is
`{"name": "mnist_train_step", "impl": "pytorch", "batch_size": B, "threads": T, "steps": n,
"images_per_sec": x}`.
"""

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

WARMUP_STEPS = 10
MIN_STEPS = 20


class MnistCnn(nn.Module):
    """The network of `crates/vrl-models/src/mnist_cnn.rs` (with its default `drop_rate` of 0)."""

    def __init__(self, widths=(32, 64), num_classes=10, in_chans=1, img_size=28):
        super().__init__()
        w1, w2 = widths
        self.conv1 = nn.Conv2d(in_chans, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        side = img_size // 4
        self.fc = nn.Linear(w2 * side * side, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # [B, 32, 14, 14]
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # [B, 64, 7, 7]
        return self.fc(x.flatten(1))  # [B, 10]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time to spend in timed steps")
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = parser.parse_args()
    if args.batch_size <= 0 or args.seconds < 0:
        parser.error("--batch-size must be positive and --seconds non-negative")
    if args.threads is not None:
        if args.threads <= 0:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = MnistCnn()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.05,
        momentum=0.9,
        nesterov=True,
    )
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))

    def step():
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(WARMUP_STEPS):
        step()

    steps = 0
    start = time.perf_counter()
    while True:
        loss = step()
        steps += 1
        elapsed = time.perf_counter() - start
        if steps >= MIN_STEPS and elapsed >= args.seconds:
            break
    if not torch.isfinite(loss):
        print(f"loss is not finite after {WARMUP_STEPS + steps} steps", file=sys.stderr)
        sys.exit(1)
    images_per_sec = steps * args.batch_size / elapsed
    threads = torch.get_num_threads()

    if args.json:
        print(json.dumps({
            "name": "mnist_train_step",
            "impl": "pytorch",
            "batch_size": args.batch_size,
            "threads": threads,
            "steps": steps,
            "images_per_sec": images_per_sec,
        }))
    else:
        print(
            f"mnist_train_step (pytorch {torch.__version__}, eager, cpu): batch {args.batch_size}, "
            f"{threads} threads, {steps} steps in {elapsed:.2f} s: {images_per_sec:.0f} images/s"
        )


if __name__ == "__main__":
    main()
