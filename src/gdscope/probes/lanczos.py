r"""Lanczos with full reorthogonalization for a few extreme eigenpairs of a symmetric operator.

The operator is only seen through ``matvec`` (a Hessian-vector product, say). The Krylov basis
lives on the operator's device in float64; the tridiagonal eigenproblem is solved in float64.

Stopping rule and what it guarantees. After ``m`` steps the Lanczos relation
``A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ`` holds, so a Ritz pair ``(θ, y = Q_m s)`` of ``T_m`` has the
residual

.. math::  \|A y - θ y\| = |β_m\, s_m|

(the last entry of the unit eigenvector ``s`` of ``T_m``). For a symmetric ``A``, the interval
``[θ − ‖r‖, θ + ‖r‖]`` holds an eigenvalue of ``A`` for any unit ``y`` with residual ``r``
(Parlett, "The Symmetric Eigenvalue Problem", Thm 4.5.1). Stopping when ``|β_m s_m| ≤ tol·|θ|``
for each requested Ritz pair therefore guarantees ``|θ − λ| ≤ tol·|θ|`` for SOME eigenvalue ``λ``.
For the largest algebraic Ritz value, Courant–Fischer gives ``θ ≤ λ_max``: it is a lower bound,
and when the nearest eigenvalue is ``λ_max`` (what a Krylov space built from a start vector with a
component along the top eigenvector delivers) the relative error is at most ``tol``. With full
reorthogonalization (repeated when it cancels: "twice is enough", Giraud, Langou & Rozložník 2005) the computed
relation holds to working precision, so the bound is the real residual up to rounding of ``matvec``
itself (an fp32 Hessian-vector product adds an error of about ``1e-7·‖A‖``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["EigResult", "Which", "lanczos_topk"]

Which = Literal["LA", "LM", "SA"]
_WHICH: tuple[str, ...] = ("LA", "LM", "SA")
_DGKS = 0.7071  # a second Gram–Schmidt pass when a pass keeps less than 1/√2 of the norm


@dataclass(frozen=True)
class EigResult:
    """Ritz pairs from :func:`lanczos_topk`, ordered as requested by ``which``.

    Attributes:
        values: ``(k,)`` float64 Ritz values (for ``"LA"`` descending, ``"SA"`` ascending,
            ``"LM"`` by descending magnitude).
        vectors: ``(dim, k)`` float64 unit Ritz vectors, on the operator's device.
        iterations: number of ``matvec`` calls.
        residual_norms: ``(k,)`` float64 bounds ``‖A y − θ y‖ = |β s_last|``.
        converged: whether every residual met ``≤ tol·|θ|``.

    """

    values: Tensor
    vectors: Tensor
    iterations: int
    residual_norms: Tensor
    converged: bool


def lanczos_topk(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    k: int = 1,
    *,
    which: Which = "LA",
    tol: float = 1e-3,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> EigResult:
    r"""Return ``k`` extreme eigenpairs of a symmetric operator by Lanczos.

    Each step applies ``matvec`` to the newest basis vector ``q_j`` (float64, on ``device``), sets
    ``α_j = q_jᵀ A q_j``, applies the three-term recurrence, then removes from the result its
    components along all previous ``q`` (classical Gram–Schmidt, repeated when the first pass
    cancels, "twice is enough"), and normalizes with ``β_j``. After every step the
    ``j × j`` tridiagonal ``T`` is diagonalized; the run stops once each of the ``k`` selected
    Ritz pairs has ``|β_j s_{j,last}| ≤ tol·|θ|`` (see the module docstring for the guarantee).
    If the Krylov space becomes invariant (``β ≈ 0``) it restarts, up to ``k`` times, with a
    random vector orthogonal to the basis (the off-diagonal entry is then exactly 0), and stops
    only once the new block's own wanted Ritz pairs converged too. This finds a top eigenvector
    a deficient ``v0`` could not see, and copies of a repeated eigenvalue (a Krylov space holds
    one vector per distinct eigenvalue).

    Args:
        matvec: ``v ↦ A v`` for a symmetric ``A``; called with float64 ``(dim,)`` vectors on
            ``device``; its output is cast to float64.
        dim: size of ``A``.
        k: number of eigenpairs.
        which: ``"LA"`` largest algebraic (the sharpness), ``"LM"`` largest magnitude,
            ``"SA"`` smallest algebraic.
        tol: relative residual tolerance (see above).
        max_iter: most ``matvec`` calls; default ``min(dim, max(300, 20k))``.
        v0: start vector (e.g. the previous top eigenvector when tracking); random if None.
        generator: draws the random start and restart vectors (default: seeded with 0).
        device: where the basis lives; default that of ``v0``, else the CPU.

    A single-vector Krylov method resolves eigenvalues only once its Ritz values separate: for
    ``k > 1``, wanted eigenvalues closer together than about the residual tolerance may be merged
    into one Ritz value (and the ``k``-th returned value be a farther one). Each returned ``θ`` is
    still within ``tol·|θ|`` of some eigenvalue; ask a smaller ``tol`` to split a cluster.

    Returns:
        An :class:`EigResult`; ``converged`` is False if ``max_iter`` ran out first.

    Raises:
        ValueError: on ``k`` outside ``[1, dim]``, an unknown ``which``, ``tol < 0`` or a ``v0``
            of the wrong size or zero.

    """
    _check_args(dim, k, which, tol, v0)
    if device is None:
        device = v0.device if v0 is not None else torch.device("cpu")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    max_iter = min(dim, max(300, 20 * k)) if max_iter is None else max(min(max_iter, dim), k)
    start = _random(dim, generator, device) if v0 is None else v0.detach().to(device, torch.float64)
    basis = _Basis(dim, device, capacity=min(max_iter, 64))
    basis.append(start / torch.linalg.vector_norm(start))
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples q_j and q_{j+1}
    block = 0  # first index of the current Krylov block (moves on a restart)
    scale = 0.0
    while True:
        j = len(alphas)
        w = matvec(basis.last()).to(device, torch.float64).reshape(dim)
        alphas.append(float(basis.last() @ w))
        scale = max(scale, abs(alphas[-1]), *(abs(b) for b in betas[-1:]))
        w = w - alphas[-1] * basis.last()  # three-term recurrence, then full reorthogonalization
        if betas and betas[-1] != 0.0:
            w = w - betas[-1] * basis.previous()
        w = basis.orthogonalize(w)
        beta = float(torch.linalg.vector_norm(w))
        theta, s = _tridiagonal_eigh(alphas, betas)
        idx = _select(theta, k, which)
        residuals = (beta * s[-1, idx]).abs()
        converged = bool((residuals <= tol * theta[idx].abs()).all())
        if block > 0:
            converged = converged and _block_converged(
                alphas[block:], betas[block:], beta, k, which, tol
            )
        broke = beta <= 1e-12 * max(scale, 1e-300)
        restart = broke and _restarts(betas) < k and j + 1 < max_iter
        if (converged and not restart) or j + 1 >= max_iter:
            vectors = basis.matrix() @ s[:, idx].to(device)
            return EigResult(theta[idx], vectors, j + 1, residuals, converged)
        if broke:  # invariant subspace: restart orthogonally, decoupled (β = 0)
            betas.append(0.0)
            block = j + 1
            basis.append(_fresh_direction(basis, generator, dim, device))
        else:
            betas.append(beta)
            basis.append(w / beta)


def _restarts(betas: list[float]) -> int:
    """Count the restarts so far (exact zeros on the off-diagonal)."""
    return sum(1 for b in betas if b == 0.0)


def _block_converged(
    alphas: list[float], betas: list[float], beta: float, k: int, which: str, tol: float
) -> bool:
    """Whether the current Krylov block's own wanted Ritz pairs have converged.

    After a restart the block-diagonal ``T`` holds the exact eigenvalues found before the
    breakdown (residual 0); the run must also have explored the new block before it stops.
    """
    theta, s = _tridiagonal_eigh(alphas, betas[: len(alphas) - 1])
    idx = _select(theta, k, which)
    return bool(((beta * s[-1, idx]).abs() <= tol * theta[idx].abs()).all())


def _check_args(dim: int, k: int, which: str, tol: float, v0: Tensor | None) -> None:
    if which not in _WHICH:
        raise ValueError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and dim = {dim}, got k={k!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got tol={tol!r}")
    if v0 is not None:
        if v0.numel() != dim:
            raise ValueError(f"v0 must have {dim} entries, got shape {tuple(v0.shape)}")
        if not bool(torch.linalg.vector_norm(v0.detach().to(torch.float64)) > 0):
            raise ValueError("v0 must be a nonzero vector; pass v0=None for a random start")


def _random(dim: int, generator: torch.Generator, device: torch.device | str) -> Tensor:
    draw = torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device)
    return draw.to(device)


def _fresh_direction(
    basis: _Basis, generator: torch.Generator, dim: int, device: torch.device | str
) -> Tensor:
    w = basis.orthogonalize(_random(dim, generator, device))
    return w / torch.linalg.vector_norm(w)


def _tridiagonal_eigh(alphas: list[float], betas: list[float]) -> tuple[Tensor, Tensor]:
    """Eigenpairs (ascending) of the symmetric tridiagonal with diagonal ``alphas``, in float64."""
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    theta, s = torch.linalg.eigh(t)
    return theta, s


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    """Return the indices of the ``k`` wanted Ritz values among ascending ``theta`` (fewer if too few)."""
    k = min(k, theta.numel())
    if which == "LA":
        return torch.arange(theta.numel() - 1, theta.numel() - 1 - k, -1)
    if which == "SA":
        return torch.arange(k)
    return torch.argsort(theta.abs(), descending=True, stable=True)[:k]


class _Basis:
    """Growing float64 Krylov basis, one vector per row, with repeated classical Gram–Schmidt."""

    def __init__(self, dim: int, device: torch.device | str, capacity: int) -> None:
        self._q = torch.empty(capacity, dim, dtype=torch.float64, device=device)  # (m, dim)
        self._m = 0

    def append(self, q: Tensor) -> None:
        if self._m == self._q.shape[0]:
            grown = self._q.new_empty(2 * self._m, self._q.shape[1])
            grown[: self._m] = self._q
            self._q = grown
        self._q[self._m] = q
        self._m += 1

    def last(self) -> Tensor:
        return self._q[self._m - 1]

    def matrix(self) -> Tensor:
        """Return the basis as ``(dim, m)`` columns (a transposed view)."""
        return self._q[: self._m].T

    def previous(self) -> Tensor:
        return self._q[self._m - 2]

    def orthogonalize(self, w: Tensor) -> Tensor:
        """Remove from ``w`` its components along the basis: once, and again if needed.

        Classical Gram–Schmidt; a second pass runs when the first removed more than a ``1/√2``
        share of the norm (Daniel, Gragg, Kaufman & Stewart 1976), and twice is enough
        (Giraud, Langou & Rozložník 2005). After the three-term recurrence the first pass only
        removes rounding-level components, so the second is rarely needed.
        """
        q = self._q[: self._m]  # (m, dim), rows contiguous
        norm = torch.linalg.vector_norm(w)
        for _ in range(2):
            w = torch.addmv(w, q.T, q @ w, alpha=-1.0)
            new_norm = torch.linalg.vector_norm(w)
            if new_norm > _DGKS * norm:
                break
            norm = new_norm
        return w
