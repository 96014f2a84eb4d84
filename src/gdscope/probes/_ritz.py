r"""Ritz pairs of a Lanczos tridiagonal ``T`` and the error bounds a stopping rule compares.

The eigenpairs ``(θ, s)`` of the ``m × m`` symmetric tridiagonal ``T`` (diagonal ``α``,
off-diagonal ``β``) built by Lanczos give Ritz pairs ``(θ, Q s)`` of the operator, with residual
``‖A Q s − θ Q s‖ = |β_m s_m|`` in exact arithmetic (Parlett, "The Symmetric Eigenvalue
Problem", Thm 4.5.1). Only the values at the wanted ends are computed, by bisection and inverse
iteration (LAPACK ``stebz``/``stein`` through scipy's ``eigh_tridiagonal``).

>>> ritz = ritz_pairs([2.0, 2.0], [1.0], 1, "LA")
>>> [round(v, 12) for v in ritz.values.tolist()], [round(g, 12) for g in ritz.gaps.tolist()]
([3.0], [2.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

__all__ = ["Ritz", "extreme_last_entries", "ritz_pairs"]

_ABSTOL = 2 * float(np.finfo(np.float64).tiny)  # the tightest bisection tolerance of LAPACK stebz


@dataclass(frozen=True)
class Ritz:
    """Wanted Ritz pairs of a tridiagonal: values, eigenvectors ``(m, k)`` and gaps to neighbours."""

    values: Tensor
    vectors: Tensor
    gaps: Tensor

    def error_bounds(
        self,
        beta: float,
        bound: str,
        rounding: float | Tensor = 0.0,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return the residuals ``|β s_m|`` and the bounds (plus ``rounding``) the rule compares.

        With the computed ``lengths = ‖Q s‖`` of the Ritz vectors, both are those of the unit
        vectors ``Q s/‖Q s‖``: divided by ``lengths``.
        """
        residuals = (beta * self.vectors[-1]).abs()
        slack = torch.zeros_like(residuals) + rounding
        if lengths is not None:
            residuals, slack = residuals / lengths, slack / lengths
        if bound == "residual":
            return residuals, residuals + slack
        known = torch.isfinite(self.gaps) & (self.gaps > 0)  # no neighbour, or a tie: no estimate
        kato_temple = torch.where(known, residuals**2 / self.gaps, residuals)
        return residuals, torch.minimum(residuals, kato_temple) + slack


def ritz_pairs(alphas: list[float], betas: list[float], k: int, which: str) -> Ritz:
    """Return the wanted Ritz pairs of ``T`` (diagonal ``alphas``, off-diagonal ``betas[:m-1]``).

    Every wanted set is a prefix and/or a suffix of the ascending Ritz values (the ``k`` of
    largest magnitude lie among the ``k`` smallest and the ``k`` largest), so only the ``k + 1``
    values at the needed ends are computed: the ``k``-th neighbour gives the last gap.
    """
    m = len(alphas)
    diagonal, off = np.asarray(alphas), np.asarray(betas[: m - 1])
    span = min(k + 1, m)
    low = which != "LA"
    high = which != "SA"
    if low and high and 2 * span >= m:
        ranges = [(0, m - 1)]
    else:
        ranges = ([(0, span - 1)] if low else []) + ([(m - span, m - 1)] if high else [])
    index, values, vectors = [], [], []
    for lo, hi in ranges:
        theta, s = _tridiagonal_eigh(diagonal, off, lo, hi)
        index.append(np.arange(lo, hi + 1))
        values.append(theta)
        vectors.append(s)
    idx, theta, s = np.concatenate(index), np.concatenate(values), np.concatenate(vectors, axis=1)
    pick = _select(idx, theta, m, k, which)
    return Ritz(
        torch.from_numpy(theta[pick].copy()),
        torch.from_numpy(s[:, pick].copy()),
        torch.from_numpy(_gaps(idx, theta, pick, m)),
    )


def _tridiagonal_eigh(
    diagonal: np.ndarray, off: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs ``lo..hi`` (ascending) of a symmetric tridiagonal, by bisection and inverse iteration."""
    theta, s = scipy.linalg.eigh_tridiagonal(
        diagonal, off, select="i", select_range=(lo, hi), tol=_ABSTOL
    )
    return theta, s


def _select(idx: np.ndarray, theta: np.ndarray, m: int, k: int, which: str) -> np.ndarray:
    """Return positions (in the computed ``idx``/``theta``) of the wanted values, in output order."""
    k = min(k, m)
    if which == "LA":
        return np.flatnonzero(idx >= m - k)[::-1]
    if which == "SA":
        return np.flatnonzero(idx < k)
    ends = np.flatnonzero((idx < k) | (idx >= m - k))  # ascending
    if which == "BE":
        return ends
    return ends[np.argsort(-np.abs(theta[ends]), kind="stable")[:k]]


def _gaps(idx: np.ndarray, theta: np.ndarray, pick: np.ndarray, m: int) -> np.ndarray:
    """Distance from each picked Ritz value to its nearest other one (``inf`` if ``m = 1``)."""
    gaps = np.full(pick.size, np.inf)
    for out, p in enumerate(pick):
        for q in (p - 1, p + 1):
            if 0 <= q < idx.size and abs(int(idx[q]) - int(idx[p])) == 1:
                gaps[out] = min(gaps[out], abs(theta[q] - theta[p]))
    return gaps


def extreme_last_entries(alphas: list[float], betas: list[float]) -> Tensor:
    """Return ``s_m`` of the smallest and of the largest Ritz pair of ``T``.

    ``|β_m s_m|`` of each is its residual: how far the Ritz pair has converged.
    """
    m = len(alphas)
    diagonal, off = np.asarray(alphas), np.asarray(betas[: m - 1])
    low = _tridiagonal_eigh(diagonal, off, 0, 0)[1]
    high = _tridiagonal_eigh(diagonal, off, m - 1, m - 1)[1]
    return torch.tensor([low[-1, 0], high[-1, 0]], dtype=torch.float64)
