"""PyTorch reference for `vrl bench model-step` (the PyTorch side of `cargo xtask bench models`).

Measures the throughput, in images per second, of one full training step of a timm model in PyTorch
eager mode on the CPU (or `--device cuda`): forward in train mode, cross-entropy, backward and an AdamW update, on one
fixed random batch `[batch, in_chans, img_size, img_size]` (default 3 channels, 32x32) with random
labels (no data loading). With `--precision bf16`, forward and loss run under
`torch.autocast("cpu", dtype=torch.bfloat16)` (the loss on float32 logits), as vrl's bf16 autocast
does; weights, gradients and AdamW stay float32. The model is
`timm.create_model(MODEL, pretrained=False, **SETTINGS)`, the network vrl builds under the same name and `--set model.KEY=VALUE` arguments (the keys that the three
benchmarked models take, `num_classes`, `img_size`, `patch_size`, `in_chans`, have the same names in
both). The optimizer mirrors vrl's `adamw` with `lr=1e-3, weight_decay=0.05`, where weight decay
applies to parameters with two or more dimensions only (two parameter groups); torch's default AdamW
implementation on the CPU (one parameter at a time), as vrl's.

After 10 warm-up steps, steps are timed with `time.perf_counter` until `--seconds` have passed (at
least 20 steps). Usage:

    $VRL_PYTHON python/bench_model_step.py --model resnet18 [--set model.num_classes=100]...
        [--batch-size 128] [--threads N] [--seconds 3.0] [--precision fp32|bf16] [--device cpu|cuda[:N]] [--json]

With `--json`, the only line on stdout is
`{"name": "<model>_step", "impl": "pytorch", "model": M, "batch_size": B, "threads": T, "steps": n,
"precision": P, "images_per_sec": x}`.
"""

import argparse
import ast
import json
import sys
import time

import timm
import torch
import torch.nn.functional as F

WARMUP_STEPS = 10
MIN_STEPS = 20


def parse_set(items, parser):
    """`model.KEY=VALUE` strings to keyword arguments (values as Python literals, e.g. 100, 0.1)."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("model.") or len(key) <= len("model."):
            parser.error(f"--set {item}: model arguments are set as model.KEY=VALUE")
        try:
            kwargs[key[len("model."):]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser.error(f"--set {item}: {value!r} is not a number or other literal")
    return kwargs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="timm model name")
    parser.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time to spend in timed steps")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: torch.autocast around forward and loss (fp16 needs a GradScaler; not offered)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (a CUDA step is timed to loss.item())")
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    parser.add_argument("--phases", action="store_true",
                        help="also print mean ms of forward+loss, backward and optimizer on stderr")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print torch.profiler's table of the N most expensive ops on stderr")
    args = parser.parse_args()
    if args.batch_size <= 0 or args.seconds < 0:
        parser.error("--batch-size must be positive and --seconds non-negative")
    if args.threads is not None:
        if args.threads <= 0:
            parser.error("--threads must be positive")
        torch.set_num_threads(args.threads)
    kwargs = parse_set(args.set, parser)

    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    model = timm.create_model(args.model, pretrained=False, **kwargs).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3
    )
    side = kwargs.get("img_size", 32)
    classes = kwargs.get("num_classes", 1000)
    x = torch.randn(args.batch_size, kwargs.get("in_chans", 3), side, side, device=device)
    y = torch.randint(0, classes, (args.batch_size,), device=device)
    model.train()

    def forward_loss():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            return F.cross_entropy(model(x).float(), y)

    def step():
        loss = forward_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(WARMUP_STEPS):
        step()

    if args.phases:
        total, n = [0.0, 0.0, 0.0], 0
        start = time.perf_counter()
        cpu_start = time.process_time()
        while n < MIN_STEPS or time.perf_counter() - start < args.seconds:
            t0 = time.perf_counter()
            loss = forward_loss()
            loss.item()
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            t3 = time.perf_counter()
            for i, t in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                total[i] += t
            n += 1
        cpu = (time.process_time() - cpu_start) / n * 1e3
        print("phases (ms per step): forward+loss {:.1f}, backward {:.1f}, optimizer {:.1f}; CPU time {:.1f}".format(
            *(t / n * 1e3 for t in total), cpu), file=sys.stderr)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile), file=sys.stderr)

    steps = 0
    start = time.perf_counter()
    while True:
        loss = step()
        steps += 1
        elapsed = time.perf_counter() - start
        if steps >= MIN_STEPS and elapsed >= args.seconds:
            break
    if not torch.isfinite(torch.tensor(loss)):
        print(f"loss is not finite after {WARMUP_STEPS + steps} steps", file=sys.stderr)
        sys.exit(1)
    images_per_sec = steps * args.batch_size / elapsed
    threads = torch.get_num_threads()
    name = f"{args.model}_step"

    if args.json:
        print(json.dumps({
            "name": name,
            "impl": "pytorch",
            "model": args.model,
            "batch_size": args.batch_size,
            "threads": threads,
            "precision": args.precision, "device": args.device,
            "steps": steps,
            "images_per_sec": images_per_sec,
        }))
    else:
        print(
            f"{name} (pytorch {torch.__version__}, timm {timm.__version__}, eager, cpu, {args.precision}): batch "
            f"{args.batch_size}, {threads} threads, {steps} steps in {elapsed:.2f} s: {images_per_sec:.0f} images/s"
        )


if __name__ == "__main__":
    main()
