"""W2 / W2b: sharpness (top Hessian eigenvalue) of fc-tanh 3072→200→200→10, gdscope against anchors.

W2: one sharpness measurement on n inputs, MSE, requested relative error 1e-3.
    Anchors: scipy ``eigsh(LinearOperator(hvp), k=2, tol=0)`` with a reverse-over-reverse HVP that
    rebuilds the gradient graph per product, as the edge-of-stability code calls it; PyHessian-style
    power iteration (cached gradient graph, stop at 1e-3 relative change, at most 100 products).
    Error is relative to a tight Lanczos run (tol 1e-10).
W2b: 100 full-batch GD steps with sharpness every 10 (warm-started), against the same 100 steps
    without it: the tracking overhead ratio.

Prints one JSON line per measurement. ``--small`` runs CPU sizes.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import device_name, emit, median_ms, parse_args, pick_device, sync
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

import gdscope as gs


def fc_tanh(seed: int, device: torch.device) -> nn.Module:
    """Cohen et al.'s fc-tanh network with PyTorch's default initialization."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3072, 200),
        nn.Tanh(),
        nn.Linear(200, 200),
        nn.Tanh(),
        nn.Linear(200, 10),
    ).to(device)


def data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3072, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=gen), 10).float()
    return x.to(device), y.to(device)


def eos_eigsh(model: nn.Module, batch) -> float:
    """The edge-of-stability code's call: eigsh on an HVP operator, k=2, tol=0 (float64 numpy)."""
    params = [p for p in model.parameters() if p.requires_grad]
    dim = sum(p.numel() for p in params)
    x, y = batch

    def matvec(v: np.ndarray) -> np.ndarray:
        vec = torch.as_tensor(v, dtype=torch.float32, device=x.device).reshape(-1)
        loss = gs.losses.mse(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        hv = torch.autograd.grad(flat @ vec, params)
        return torch.cat([h.reshape(-1) for h in hv]).double().cpu().numpy()

    values = eigsh(
        LinearOperator((dim, dim), matvec=matvec, dtype=np.float64), k=2, tol=0, which="LA"
    )[0]
    return float(values.max())


def pyhessian_power(model: nn.Module, batch, iters: int = 100, tol: float = 1e-3) -> float:
    """PyHessian's top eigenvalue: power iteration on a cached gradient graph."""
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = batch
    loss = gs.losses.mse(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen).to(p.device) for p in params]
    norm = torch.sqrt(sum((u * u).sum() for u in v))
    v = [u / norm for u in v]
    value = None
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        norm = torch.sqrt(sum((h * h).sum() for h in hv))
        v = [h / norm for h in hv]
        if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
            return new
        value = new
    return float(value)


def run_w2(n: int, device: torch.device, repeats: int) -> None:
    model, batch = fc_tanh(0, device), data(n, device)
    reference = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10)
    ours_ms, ours = median_ms(
        lambda: gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-3), device, repeats=repeats
    )
    base = {
        "workload": "W2 sharpness",
        "n": n,
        "device": device_name(device),
        "reference": reference,
    }
    emit(
        {
            **base,
            "method": "gdscope sharpness (Lanczos, tol 1e-3)",
            "median_ms": round(ours_ms, 3),
            "rel_err": abs(ours - reference) / reference,
        }
    )
    for name, fn, reps in (
        ("edge-of-stability eigsh(k=2, tol=0)", lambda: eos_eigsh(model, batch), 1),
        ("PyHessian power iteration (tol 1e-3)", lambda: pyhessian_power(model, batch), repeats),
    ):
        anchor_ms, value = median_ms(fn, device, repeats=reps, warmup=0 if reps == 1 else 1)
        emit(
            {
                **base,
                "method": name,
                "median_ms": round(anchor_ms, 3),
                "rel_err": abs(value - reference) / reference,
                "gdscope_ms": round(ours_ms, 3),
                "speedup": round(anchor_ms / ours_ms, 2),  # gdscope's, as in bench_ntk
            }
        )


def run_w2b(n: int, device: torch.device) -> None:
    batch = data(n, device)

    def train(probes: dict[str, int]) -> float:
        model = fc_tanh(0, device)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        sync(device)
        start = time.perf_counter()
        gs.train(model, opt, batch, 100, probes=probes)
        sync(device)
        return (time.perf_counter() - start) * 1e3

    train({"loss": 1})
    plain = min(train({"loss": 1}) for _ in range(2))
    tracked = min(train({"loss": 1, "sharpness": 10}) for _ in range(2))
    emit(
        {
            "workload": "W2b GD + sharpness every 10",
            "n": n,
            "device": device_name(device),
            "steps": 100,
            "train_only_ms": round(plain, 1),
            "with_tracking_ms": round(tracked, 1),
            "tracking_overhead": round((tracked - plain) / plain, 3),
        }
    )


def main() -> None:
    args = parse_args(__doc__)
    device = pick_device(args.device)
    n = 500 if args.small else 5000
    run_w2(n, device, args.repeats or (3 if args.small else 10))
    run_w2b(n, device)


if __name__ == "__main__":
    main()
