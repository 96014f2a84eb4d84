"""What the smallest W1 NTK can reach in eager PyTorch: a floor beside gdscope and neural-tangents.

The floor is the empirical NTK of a ReLU MLP ``784→m→m→m→1`` written as bare torch calls and
nothing else: ``addmm`` and ``relu`` per layer, the signals ``Δ`` back by ``mm`` and the ReLU
masks, and per layer ``(H Hᵀ + 1) ⊙ (Δ Δᵀ)`` summed in float64 (the structured rule of
``gdscope/probes/_ntk_structured.py``). No checks, no tiling, no other model: the work without
the instrument around it. It runs interleaved with ``gdscope.probes.ntk_gram`` and
neural-tangents' structured derivatives (jitted), one core, caches swept before each call, as
``bench_peers.py`` times them. Prints one JSON line per method. ``--tiny``: toy sizes.
``--compiled``: also the floor compiled by ``torch.compile`` (inductor's C++ for the CPU; its
compile time, about 15 s, is left out as neural-tangents' ``jit`` is), to see whether compiled
PyTorch reaches below the eager floor at this size.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse
import sys

import numpy as np
import torch
from _common import emit, interleaved, pin_to_one_core, summary


def floor(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``K = Σ_ℓ (H_ℓ H_ℓᵀ + 1) ⊙ (Δ_ℓ Δ_ℓᵀ)`` of a depth-4 ReLU MLP with unit multipliers."""
    layers = list(model.layers)  # pyright: ignore[reportGeneralTypeIssues]
    assert len(layers) == 4 and all(
        layer.multiplier == layer.bias_multiplier == 1.0 for layer in layers
    )
    weights = [layer.weight.detach() for layer in model.layers]  # pyright: ignore[reportGeneralTypeIssues]
    biases = [layer.bias.detach() for layer in model.layers]  # pyright: ignore[reportGeneralTypeIssues]
    with torch.no_grad():
        hidden = [x]
        h = x
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            h = torch.relu(torch.addmm(b, h, w.T))
            hidden.append(h)
        d = weights[-1].expand(x.shape[0], weights[-1].shape[1]) * hidden[3].sign()
        signals = [d]
        for layer in (2, 1):
            d = torch.mm(d, weights[layer]).mul_(hidden[layer].sign())
            signals.append(d)
        signals.reverse()
        total = torch.mm(hidden[3], hidden[3].T).add_(1.0).to(torch.float64)
        for h, d in zip(hidden[:3], signals, strict=True):
            total.add_(torch.mm(h, h.T).add_(1.0).mul_(torch.mm(d, d.T)))
        return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a smoke test)")
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds per method")
    parser.add_argument("--compiled", action="store_true", help="also torch.compile's floor")
    args = parser.parse_args(argv)
    pin_to_one_core()
    torch.set_num_threads(1)
    import jax.numpy as jnp
    from bench_peers import jax_params, nt_kernel

    import gdscope as gs

    n, m = (8, 16) if args.tiny else (64, 256)
    model = gs.models.mlp(784, m, depth=4, out_dim=1, seed=0)
    x = torch.randn(n, 784, generator=torch.Generator().manual_seed(0))
    params, scales = jax_params(model, jnp.float32)
    nt_structured = nt_kernel(scales, 3)
    x32 = jnp.asarray(x.numpy(), jnp.float32)
    fns = {
        "gdscope ntk_gram": lambda: gs.probes.ntk_gram(model, x),
        "eager floor (bare torch calls)": lambda: floor(model, x),
        "neural-tangents STRUCTURED_DERIVATIVES (jit)": lambda: nt_structured(x32, params),
    }
    if args.compiled:
        compiled = torch.compile(floor, dynamic=False)
        fns["torch.compile floor (inductor)"] = lambda: compiled(model, x)
    times, results, cpu = interleaved(fns, rounds=args.rounds, warmup=1)
    reference = np.asarray(results["gdscope ntk_gram"], dtype=np.float64)
    for name, ts in times.items():
        gram = np.asarray(results[name], dtype=np.float64).reshape(reference.shape)
        err = float(np.abs(gram - reference).max() / np.abs(reference).max())
        emit(
            {
                "workload": "W1 ntk_gram floor",
                "method": name,
                "n": n,
                "m": m,
                "device": "cpu (1 thread)",
                **summary(ts, cpu[name]),
                "rel_err_to_ntk_gram": err,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
