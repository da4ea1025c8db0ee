"""Reference learning rates for vrl's `Step` and `OneCycle` schedules, computed by torch's schedulers.

Writes `crates/vrl-optim/tests/fixtures/schedule_reference.json`, read by
`crates/vrl-optim/tests/schedule.rs`: a list of cases, each with the schedule as vrl serializes it
(`schedule`), the base rate (`lr`; for OneCycle, torch's `max_lr`), the number of steps (`total`) and
torch's rate at every step 0..total (`lrs`). Run: `$VRL_PYTHON python/schedule_reference.py`.

Step: linear warm-up of `warmup_steps` (vrl's own, as for `Constant`/`Cosine`), then
`torch.optim.lr_scheduler.StepLR(step_size, gamma)` counted from the end of warm-up. The warm-up rates
are vrl's `lr * (step + 1) / warmup_steps`, written here by hand (torch has no such warm-up).
OneCycle: `torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, total_steps=total, pct_start, div_factor,
final_div_factor, anneal_strategy=anneal, three_phase=False)`.
"""

import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/vrl-optim/tests/fixtures/schedule_reference.json"


def rates(make, lr, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def step_case(lr, total, warmup, step_size, gamma):
    after = rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma), lr, total - warmup)
    warm = [lr * (s + 1) / warmup for s in range(warmup)]
    return {
        "schedule": {"kind": "step", "warmup_steps": warmup, "step_size": step_size, "gamma": gamma},
        "lr": lr,
        "total": total,
        "lrs": warm + after,
    }


def one_cycle_case(lr, total, pct_start, div_factor, final_div_factor, anneal="cos"):
    make = lambda o: torch.optim.lr_scheduler.OneCycleLR(  # noqa: E731
        o,
        max_lr=lr,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal,
        three_phase=False,
        cycle_momentum=False,
    )
    return {
        "schedule": {
            "kind": "one_cycle",
            "pct_start": pct_start,
            "div_factor": div_factor,
            "final_div_factor": final_div_factor,
            "anneal": anneal,
        },
        "lr": lr,
        "total": total,
        "lrs": rates(make, lr, total),
    }


def main():
    cases = [
        step_case(0.1, 40, 0, 10, 0.1),
        step_case(0.3, 37, 5, 7, 0.5),
        one_cycle_case(0.1, 50, 0.3, 25.0, 1e4),
        one_cycle_case(1.0, 23, 0.25, 10.0, 100.0),
        one_cycle_case(0.05, 100, 0.1, 25.0, 1e4),
        one_cycle_case(0.2, 30, 0.4, 20.0, 50.0, anneal="linear"),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
