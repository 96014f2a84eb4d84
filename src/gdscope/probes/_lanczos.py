r"""Extreme eigenvalues of a symmetric matrix by Lanczos with full reorthogonalization.

From a random unit ``q_1`` the three-term recurrence ``β_{j} q_{j+1} = K q_j − α_j q_j − β_{j−1}
q_{j−1}`` (each new vector re-orthogonalized twice against all previous ones, so no ghost copies
appear) builds ``Q_m`` with ``Q_m K Q_mᵀ = T_m`` tridiagonal. The Ritz values ``θ_i`` (eigenvalues
of ``T_m``) approach the extreme eigenvalues of ``K`` first, and ``‖K y_i − θ_i y_i‖ = β_m |s_{m,i}|``
bounds their error, as does ``r_i²/gap_i`` (Golub & Van Loan, "Matrix computations", §10.1; gap to
the nearest other Ritz value as a proxy). Iterations continue until ``min(r_i, r_i²/gap_i)`` falls
below ``tol · max(|θ_i|, 10⁻¹²‖K‖_F)`` for every wanted ``θ_i`` or the space is all of ``ℝⁿ``.
The products ``K q`` run on ``K``'s device in float64; ``T_m`` is diagonalized on the CPU
(``scipy.linalg.eigh_tridiagonal``) at ``m = 16`` and then every ``max(16, m/8)`` iterations.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

_FIRST_CHECK = 16


def _ritz(alphas: list[float], betas: list[float]) -> tuple[Tensor, Tensor]:
    """Return the Ritz values and the last components of the Ritz vectors of ``T_m``."""
    m = len(alphas)
    theta, s = scipy.linalg.eigh_tridiagonal(np.asarray(alphas), np.asarray(betas[: m - 1]))
    return torch.from_numpy(theta), torch.from_numpy(s[-1].copy())


def _error_bound(theta: Tensor, resid: Tensor, idx: Tensor) -> Tensor:
    """``min(r, r²/gap)`` per wanted Ritz value: the residual and the Kato–Temple-type bound."""
    r = resid[idx].abs()
    if theta.numel() == 1:
        return r
    others = (theta[idx, None] - theta[None, :]).abs()
    others[torch.arange(idx.numel()), idx] = float("inf")
    gap = others.min(dim=1).values
    return torch.minimum(r, r * r / gap)


def _floor(values: Tensor, scale: float) -> Tensor:
    return values.abs().clamp(min=scale)


def _wanted(theta: Tensor, k: int, which: str) -> Tensor:
    m = theta.numel()
    k = min(k, m)
    low, high = torch.arange(k), torch.arange(m - k, m)
    picks = {"smallest": low, "largest": high, "both": torch.cat([low, high]).unique()}
    return picks[which]


def lanczos_extremes(
    matrix: Tensor, k: int, which: str = "both", *, tol: float = 1e-8, seed: int = 0
) -> Tensor:
    """Return the ``k`` smallest and/or largest eigenvalues of symmetric ``matrix``, ascending, float64 CPU.

    Args:
        matrix: ``(n, n)`` symmetric tensor on any device.
        k: how many eigenvalues at each wanted end.
        which: ``"smallest"``, ``"largest"`` or ``"both"``.
        tol: relative error bound at which a Ritz value counts as converged.
        seed: seed of the random start vector.

    """
    a = matrix.to(torch.float64)
    n = a.shape[0]
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).to(a.device)
    basis = torch.zeros(min(n, 64), n, dtype=torch.float64, device=a.device)  # grows by doubling
    basis[0] = q / q.norm()
    alphas: list[float] = []
    betas: list[float] = []
    scale = float(torch.linalg.matrix_norm(a, ord="fro")) * 1e-12
    next_check = _FIRST_CHECK
    while True:
        m = len(alphas) + 1
        w = a @ basis[m - 1]
        alphas.append(float(basis[m - 1] @ w))
        q_mat = basis[:m]  # (m, n)
        for _ in range(2):
            w = w - (q_mat @ w) @ q_mat
        beta = float(w.norm())
        betas.append(beta)
        done = m == n or beta <= scale * 1e-4
        if done or m >= next_check:
            next_check = m + max(_FIRST_CHECK, m // 8)
            theta, last = _ritz(alphas, betas)
            idx = _wanted(theta, k, which)
            if done or bool(
                (_error_bound(theta, beta * last, idx) <= tol * _floor(theta[idx], scale)).all()
            ):
                return theta[idx].cpu()
        if m == basis.shape[0]:
            basis = torch.cat([basis, torch.zeros_like(basis[: min(m, n - m)])])
        basis[m] = w / beta
