"""W3: a sweep of M two-layer ReLU nets trained together, gdscope's ensemble against the loop.

W3: M nets f(x) = m^{-1/2} a·ReLU(W x) (Du et al., frozen ±1 outer layer; m hidden units, d inputs)
    on n sphere points, T full-batch GD steps, fp32, one learning rate per member (lr is a sweep axis).
    Anchor: the eager one-by-one loop, ``gdscope.train`` per member (what a study runs per trial).
    Methods: ``train_ensemble`` exact (vmap, matrix products per member: bitwise the loop's
    numbers), fast (vmap, all batched: equal up to rounding) and fast under ``torch.compile``.
    FLOPs per member and step: forward ``2nmd + 2nm``, gradient of W ``2nmd + 2nm``.

The loop is timed on the first ``--loop-members`` members (8 by default) and scaled to M: its cost
is exactly linear in M. Errors are the largest relative difference of the members' final losses
from the loop's. Prints one JSON line per measurement. ``--small`` runs CPU sizes.
"""

from __future__ import annotations

import time

import torch
from _common import device_name, emit, median_ms, pick_device, sync

import gdscope as gs
from gdscope.ensemble import NotBatchableError, train_ensemble

FULL = {"members": 64, "m": 1024, "n": 512, "d": 32, "steps": 1000}
SMALL = {"members": 64, "m": 256, "n": 128, "d": 32, "steps": 100}
PEAK_FP32 = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12}
"""Dense fp32 (non-tensor-core) peak FLOP/s by GPU name, for the FLOP floor."""


def flops(members: int, m: int, n: int, d: int, steps: int) -> float:
    return float(members * steps * (4 * n * m * d + 4 * n * m))


def build(size: dict[str, int], device: torch.device, count: int | None = None):
    members = size["members"] if count is None else count
    nets = [
        gs.models.two_layer(size["d"], size["m"], seed=s, device=device) for s in range(members)
    ]
    lrs = [0.5 + 0.5 * s / size["members"] for s in range(members)]
    opts = [torch.optim.SGD(net.parameters(), lr=lr) for net, lr in zip(nets, lrs, strict=True)]
    return nets, opts


def loop(size, x, y, device, count):
    nets, opts = build(size, device, count)
    return [
        gs.train(net, opt, (x, y), size["steps"], probes={"loss": size["steps"]})
        for net, opt in zip(nets, opts, strict=True)
    ]


def ensemble(size, x, y, device, **options):
    nets, opts = build(size, device)
    return train_ensemble(
        nets, opts, (x, y), size["steps"], probes={"loss": size["steps"]}, **options
    )


def final_losses(traces) -> list[float]:
    return [t.final("loss") for t in traces]


def rel_err(got: list[float], ref: list[float]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(got, ref, strict=False))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="CPU sizes")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--loop-members", type=int, default=8)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    size = SMALL if args.small else FULL
    repeats = args.repeats or 3
    x, y = gs.data.sphere(n=size["n"], d=size["d"], seed=0)
    x, y = x.to(device), y.to(device)
    count = min(args.loop_members, size["members"])
    loop_ms, ref = median_ms(lambda: loop(size, x, y, device, count), device, repeats=1, warmup=0)
    anchor_ms = loop_ms * size["members"] / count
    total = flops(**size)
    peak = next((v for k, v in PEAK_FP32.items() if k in device_name(device)), None)
    common = {
        "workload": "W3 ensemble GD",
        **size,
        "device": device_name(device),
        "flops": total,
        "flop_floor_ms": None if peak is None else round(total / peak * 1e3, 3),
    }
    emit(
        {
            **common,
            "method": "eager loop (gdscope.train per member)",
            "median_ms": round(anchor_ms, 3),
            "timed_members": count,
            "speedup": 1.0,
        }
    )
    methods = [("gdscope ensemble exact (vmap, per-member products)", {"exact": True})]
    methods.append(("gdscope ensemble fast (vmap, batched)", {"exact": False}))
    if not args.no_compile:
        methods.append(("gdscope ensemble fast + torch.compile", {"exact": False, "compile": True}))
    for name, options in methods:
        extra = {}
        try:
            if options.get("compile"):
                start = time.perf_counter()
                ensemble(size, x, y, device, **options)
                sync(device)
                extra["compile_and_first_run_s"] = round(time.perf_counter() - start, 2)
            ms, traces = median_ms(
                lambda o=options: ensemble(size, x, y, device, **o),
                device,
                repeats=repeats,
                warmup=0 if extra else 1,
            )
        except NotBatchableError as err:  # the exact path refuses: a measured outcome, recorded
            emit({**common, "method": name, "median_ms": None, "refused": str(err)})
            continue
        got = final_losses(traces)[:count]
        emit(
            {
                **common,
                "method": name,
                "median_ms": round(ms, 3),
                "anchor": "eager loop",
                "anchor_ms": round(anchor_ms, 3),
                "speedup": round(anchor_ms / ms, 2),
                "gflops_per_s": round(total / ms / 1e6, 1),
                "rel_err": rel_err(got, final_losses(ref)),
                "bitwise": [t.records for t in traces[:count]] == [t.records for t in ref],
                **extra,
            }
        )


if __name__ == "__main__":
    main()
