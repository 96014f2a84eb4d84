"""W2d Hessian spectral density (stochastic Lanczos quadrature) against PyHessian's ``density``.

Same network, loss and data as ``_peers_curvature.py`` (fc-tanh 3072→200→200→10, n = 256,
float32). Both methods run :data:`DENSITY_STEPS` Lanczos steps with full reorthogonalization from
one Rademacher probe (PyHessian's ``density(iter, n_v=1)``; gdscope's
``hessian_spectral_density(steps, probes=1)``, which works on the first layer's data span when
``n ≤ d/2``). Accuracy, against references independent of both: the largest node against the
sharpness by scipy ``eigsh`` on curvlinops' float64 Hessian (after enough steps Lanczos' top Ritz
value converges to ``λ_max``), and the first moment ``Σ τ θ`` (one probe's estimate of ``tr H / P``)
against the exact trace (the layer identity of ``_peers_curvature.exact_trace``) over ``P``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from _common import emit, interleaved, summary
from _peers_curvature import Case, data, exact_trace, fc_tanh, pyhessian_run, reference_sharpness

import gdscope as gs

DENSITY_STEPS = 30


@contextlib.contextmanager
def _symmetric_eig() -> Iterator[None]:
    """``torch.eig`` for PyHessian's ``density``: removed from torch (2.0), which now raises.

    PyHessian 0.1 diagonalizes its symmetric tridiagonal ``T`` with ``torch.eig(T,
    eigenvectors=True)`` and reads the real parts ``a[:, 0]`` and eigenvectors' first row. For a
    symmetric ``T`` that is ``torch.linalg.eigh``: real eigenvalues (imaginary column 0).
    """

    def eig(matrix: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        values, vectors = torch.linalg.eigh(matrix)
        pairs = torch.stack([values, torch.zeros_like(values)], dim=1)
        return pairs, vectors if eigenvectors else torch.empty(0)

    removed = torch.eig  # pyright: ignore[reportAttributeAccessIssue]
    torch.eig = eig  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        torch.eig = removed  # pyright: ignore[reportAttributeAccessIssue]


def _pyhessian_density(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    """Return PyHessian's (largest node, first moment) from one probe."""

    def density(h: object) -> tuple[list[list[float]], list[list[float]]]:
        with _symmetric_eig():
            return h.density(iter=DENSITY_STEPS, n_v=1)  # type: ignore[attr-defined]

    nodes, weights = pyhessian_run(model, batch, density)
    first = sum(float(t) * float(w) for t, w in zip(nodes[0], weights[0], strict=True))
    return float(max(nodes[0])), first


def _gdscope_density(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    slq = gs.probes.hessian_spectral_density(
        model, gs.losses.mse, batch, steps=DENSITY_STEPS, probes=1
    )
    return float(slq.nodes.max()), float((slq.weights * slq.nodes).sum())


def run_density(case: Case, rounds: int) -> None:
    model, batch = fc_tanh(case), data(case)
    sharp = reference_sharpness(model, batch)
    dim = sum(p.numel() for p in model.parameters())
    mean = exact_trace(copy.deepcopy(model).double(), (batch[0].double(), batch[1].double())) / dim
    ours = f"gdscope hessian_spectral_density ({DENSITY_STEPS} steps, 1 probe)"
    fns = {
        ours: lambda: _gdscope_density(model, batch),
        f"PyHessian density ({DENSITY_STEPS} steps, 1 probe)": lambda: _pyhessian_density(
            model, batch
        ),
    }
    times, values, cpu = interleaved(fns, rounds=rounds, warmup=1)
    ours_ms = summary(times[ours])["median_ms"]
    for name, ts in times.items():
        stats = summary(ts, cpu[name])
        top, first = values[name]
        emit(
            {
                "workload": "W2d Hessian spectral density",
                **vars(case),
                "device": "cpu (1 thread)",
                "method": name,
                **stats,
                "ratio_to_gdscope": round(stats["median_ms"] / ours_ms, 3),
                "hvps": DENSITY_STEPS,
                "top_node": top,
                "top_rel_err": abs(top - sharp) / abs(sharp),
                "reference_sharpness": sharp,
                "first_moment": first,
                "exact_mean_eigenvalue": mean,
            }
        )
