"""W1 / W1b: empirical NTK Gram and its extreme eigenvalues, gdscope against the anchor methods.

W1: MLP 784→m→m→m→k (PyTorch-default-like standard parameterization), Gram on n inputs, fp32.
    Anchor: the PyTorch NTK tutorial's method, ``vmap(jacrev)`` per-example Jacobians contracted
    with einsum (run only where its Jacobian fits in memory).
W1b: λ_min and λ_max of an n×n Gram. Anchor: full ``torch.linalg.eigvalsh``.

Prints one JSON line per measurement. ``--small`` runs CPU sizes.
"""

from __future__ import annotations

import torch
from _common import device_name, emit, median_ms, parse_args, pick_device
from torch.func import functional_call, jacrev, vmap

import gdscope as gs

FULL_W1 = [
    (64, 1024, 1),
    (1024, 1024, 1),
    (4096, 1024, 1),
    (1024, 4096, 1),
    (4096, 4096, 1),
    (1024, 1024, 10),
]
SMALL_W1 = [(64, 256, 1), (256, 512, 1), (512, 512, 1), (128, 256, 10)]
ANCHOR_BYTES = 8 * 2**30


def jacrev_contraction(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch NTK tutorial: per-example Jacobians by vmap(jacrev), then J Jᵀ by einsum."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(single), (None, 0))(params, x)
    blocks = [torch.einsum("Naf,Mbf->NaMb", j.flatten(2), j.flatten(2)) for j in jac.values()]
    gram = torch.stack(blocks).sum(0)
    n, k = gram.shape[0], gram.shape[1]
    return gram.reshape(n * k, n * k)


def structured_flops(n: int, m: int, k: int, d: int = 784) -> float:
    """Multiply-adds ×2 of the per-layer Gram route: input Grams plus signal Grams, all layers."""
    widths_in = [d, m, m, m]
    widths_out = [m, m, m, k]
    grams = sum(2 * n * n * (a + b * k * k) for a, b in zip(widths_in, widths_out, strict=True))
    backward = 2 * 2 * n * k * (d * m + 2 * m * m + m * k)
    return float(grams + backward)


def run_w1(sizes, device: torch.device, repeats: int) -> None:
    for n, m, k in sizes:
        run_w1_case(n, m, k, device, repeats)


def run_w1_case(n: int, m: int, k: int, device: torch.device, repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 784, generator=gen).to(device)
    model = gs.models.mlp(784, m, depth=4, out_dim=k, seed=0, device=device)
    ours_ms, gram = median_ms(lambda: gs.probes.ntk_gram(model, x), device, repeats=repeats)
    record = {
        "workload": "W1 ntk_gram",
        "method": "gdscope structured",
        "n": n,
        "m": m,
        "k": k,
        "device": device_name(device),
        "median_ms": round(ours_ms, 3),
        "flops": structured_flops(n, m, k),
        "gflops_per_s": round(structured_flops(n, m, k) / ours_ms / 1e6, 1),
    }
    params = sum(p.numel() for p in model.parameters())
    if n * k * params * 4 <= ANCHOR_BYTES:
        anchor_ms, ref = median_ms(
            lambda: jacrev_contraction(model, x), device, repeats=max(1, repeats // 2)
        )
        err = float((gram - ref.double()).abs().max() / ref.double().abs().max())
        record.update(
            anchor="vmap(jacrev) contraction",
            anchor_ms=round(anchor_ms, 3),
            speedup=round(anchor_ms / ours_ms, 2),
            rel_err=err,
        )
    else:
        record.update(
            anchor="vmap(jacrev) contraction",
            anchor_ms=None,
            note=f"anchor Jacobian needs {n * k * params * 4 / 2**30:.1f} GiB",
        )
    emit(record)


def run_w1b(n: int, device: torch.device, repeats: int) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 784, generator=gen).to(device)
    model = gs.models.mlp(784, 512, depth=4, seed=0, device=device)
    gram = gs.probes.ntk_gram(model, x)
    ours_ms, spec = median_ms(
        lambda: gs.probes.ntk_spectrum(gram, k=1, method="lanczos"), device, repeats=repeats
    )
    anchor_ms, eig = median_ms(lambda: torch.linalg.eigvalsh(gram), device, repeats=repeats)
    err = max(  # λ_min's error on λ_max's scale: a negative λ_min must not hide it
        abs(spec.lambda_min - float(eig[0])) / float(eig[-1]),
        abs(spec.lambda_max - float(eig[-1])) / float(eig[-1]),
    )
    emit(
        {
            "workload": "W1b lambda_min/lambda_max",
            "method": "gdscope ntk_spectrum(k=1, Lanczos)",
            "n": n,
            "device": device_name(device),
            "median_ms": round(ours_ms, 3),
            "anchor": "eigvalsh (full)",
            "anchor_ms": round(anchor_ms, 3),
            "speedup": round(anchor_ms / ours_ms, 2),
            "rel_err": err,
        }
    )


def main() -> None:
    args = parse_args(__doc__)
    device = pick_device(args.device)
    repeats = args.repeats or (3 if args.small else 10)
    run_w1(SMALL_W1 if args.small else FULL_W1, device, repeats)
    run_w1b(1024 if args.small else 4096, device, repeats)


if __name__ == "__main__":
    main()
