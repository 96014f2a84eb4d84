r"""Lanczos for a few extreme eigenpairs of a symmetric operator.

The operator is only seen through ``matvec`` (a Hessian-vector product, a Gram's ``K v``). The
basis lives on its device in float64 (or ``basis_dtype``); ``T_m`` stays on the CPU, where
``scipy.linalg.eigh_tridiagonal`` finds only the wanted Ritz values, their neighbours and their
eigenvectors (bisection and inverse iteration, ``O(m)`` per pair, not ``O(m³)`` for ``eigh``).
Convergence is checked after every step while ``m < 64``, then every ``⌊m/32⌋``
steps (at most about 3% more products than checking every step), and always at a breakdown or at
``max_iter``; the pairs returned are those of the check that stopped the run, so they meet the
stopping rule at the step returned.

Stopping rule and what it guarantees (``bound="residual"``, the default). After ``m`` steps the
Lanczos relation ``A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ`` holds, so a Ritz pair ``(θ, y = Q_m s)``
of ``T_m`` has the residual

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

``bound="gap"`` stops instead on ``min(r, r²/gap) ≤ tol·|θ|``, with ``gap`` the distance from
``θ`` to the nearest other Ritz value. If ``θ`` is the Ritz value closest to ``λ`` and ``gap`` is
no larger than the distance from ``θ`` to the rest of the spectrum of ``A``, Kato–Temple gives
``|θ − λ| ≤ r²/gap``; the gap between Ritz values is the standard practical estimate of that
distance (Golub & Van Loan, "Matrix Computations", §10.1; Parlett ch. 11), so this rule is NOT a
guarantee: an eigenvalue that the Krylov space has not yet resolved (an unconverged neighbour
closer than the nearest Ritz value) makes the estimate, and the stopping decision, wrong; in
particular it may stop before a breakdown, so it can miss the second copy of a repeated
eigenvalue. It needs fewer steps for the same ``tol`` (15–25% fewer on our Grams and Hessians),
and the eigenvector's angle is only ``O(r/gap)``. Its misses are not rare: on a small LayerNorm
net's Hessian at ``tol = 1e-3``, 15 of 60 random starts ended further than ``tol`` from
``λ_max`` (the worst 216× ``tol``, at ``λ₂``); an independent review, 2026-12-05.

``"LM"`` stops only once the extreme pairs at both ends meet the rule (the far end's Ritz value
may still overtake). A tiny ``β`` is a breakdown (a restart) only below ``32u·max|α|`` or where
``tol`` cannot need it; a dropped ``β`` is added to every bound. float64 adds no rounding term:
a ``tol`` below about ``u·max|α|/|θ|`` is met on rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from gdscope import _checks as check
from gdscope.probes._krylov import (
    KrylovBasis,
    check_start,
    fresh_direction,
    lanczos_step,
    length_stretch,
    random_direction,
    unit_vector,
)
from gdscope.probes._ritz import extreme_last_entries, ritz_pairs

__all__ = ["Bound", "EigResult", "Which", "lanczos_topk", "top_eigenpair"]

Which = Literal["LA", "LM", "SA", "BE"]
Bound = Literal["residual", "gap"]
_WHICH: tuple[str, ...] = ("LA", "LM", "SA", "BE")
_BOUNDS: tuple[str, ...] = ("residual", "gap")
_STRIDE = 32  # check convergence every max(1, m // _STRIDE) steps


@dataclass(frozen=True)
class EigResult:
    """Ritz pairs from :func:`lanczos_topk`, ordered as requested by ``which``.

    Attributes:
        values: ``(k,)`` float64 CPU Ritz values (for ``"LA"`` descending, ``"SA"`` ascending,
            ``"LM"`` by descending magnitude, ``"BE"`` ascending, ``2k`` of them).
        vectors: ``(dim, k)`` float64 unit Ritz vectors, on the operator's device.
        iterations: number of ``matvec`` calls.
        residual_norms: ``(k,)`` float64 bounds ``(|β s_last| + ρ)/‖Q s‖`` of the residuals
            ``‖A y − θ y‖`` of the unit vectors returned (``ρ`` the rounding of a float32
            basis, 0 for float64; the product's own rounding is not included).
        converged: whether every pair met the stopping rule of ``bound``.

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
    bound: Bound = "residual",
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    basis_dtype: torch.dtype = torch.float64,
    reorthogonalize: bool = True,
) -> EigResult:
    r"""Return ``k`` extreme eigenpairs of a symmetric operator by Lanczos.

    Each step applies ``matvec`` to the newest basis vector ``q_j`` (float64, on ``device``), sets
    ``α_j = q_jᵀ A q_j``, applies the three-term recurrence, then removes from the result its
    components along all previous ``q`` (classical Gram–Schmidt, repeated when the first pass
    cancels, "twice is enough"), and normalizes with ``β_j``. At the checks (every step while
    ``j < 64``, then every ``⌊j/32⌋`` steps) the wanted Ritz pairs of the ``j × j`` tridiagonal
    ``T`` are computed; the run stops once each has ``|β_j s_{j,last}| ≤ tol·|θ|`` (or, with
    ``bound="gap"``, ``min(r, r²/gap) ≤ tol·|θ|``; see the module docstring for what each
    guarantees). If the Krylov space becomes invariant (``β ≤ max(10⁻¹², 10u)·max(|α|, |β|)``,
    ``u`` the basis's unit roundoff: a float32 ``β`` at the rounding of one step is noise) it
    restarts, up to ``k`` times, with a random vector orthogonal to the basis (the off-diagonal
    entry is then exactly 0), and stops only once the new block's own wanted Ritz pairs
    converged too. This finds a top eigenvector a deficient ``v0`` could not see, and copies of
    a repeated eigenvalue when the space becomes invariant before the stopping rule is met (a
    Krylov space holds one vector per distinct eigenvalue). Either rule may stop first: with
    ``k > 1`` the copies of an exactly repeated top eigenvalue may then be missed and the later
    values returned are the next distinct ones; each value returned is still an eigenvalue to
    ``tol``. On ``diag(5, 5, 1, …)`` this happens at ``tol ≈ 1e-3`` and the breakdown comes
    first at ``tol ≤ 1e-12``; on the Hessian of a one-layer net with 4 outputs (``I₄ ⊗ A``,
    the top eigenvalue 4 times) ``k = 3`` returned two copies and the next distinct value at
    every ``tol`` down to 1e-13, the gap to it being large enough for the restarted block to
    converge before it breaks down. Where multiplicities matter, compare with a dense solve or
    ask for more values than the multiplicity.

    Args:
        matvec: ``v ↦ A v`` for a symmetric ``A``; called with ``(dim,)`` vectors of
            ``basis_dtype`` on ``device``; each product is read before the next call, so it may
            return the same buffer every time.
        dim: size of ``A``.
        k: number of eigenpairs (``"BE"``: at each end).
        which: ``"LA"`` largest algebraic (the sharpness), ``"LM"`` largest magnitude,
            ``"SA"`` smallest algebraic, ``"BE"`` both ends: the ``k`` smallest and the ``k``
            largest, ascending (all ``dim`` if ``2k > dim``).
        tol: relative tolerance of the stopping rule.
        bound: ``"residual"``, the rigorous rule ``r ≤ tol·|θ|``, or ``"gap"``, the practical
            estimate ``min(r, r²/gap) ≤ tol·|θ|`` (not a guarantee).
        max_iter: most ``matvec`` calls; default ``min(dim, max(300, 20k))``.
        v0: start vector (e.g. the previous top eigenvector when tracking); random if None.
        generator: draws the random start and restart vectors (default: seeded with 0).
        device: where the basis lives; default that of ``v0``, else the CPU.
        basis_dtype: of the basis and of ``matvec``'s argument; float32 halves the traffic of
            reorthogonalization and skips removing components it measures below
            ``√(u/max_iter)`` (see :mod:`gdscope.probes._krylov`; the rule then also divides
            each residual by the shortest length a Ritz vector can have), and adds the rounding
            ``√m·u·max(|α|, |β|)`` (``u`` the unit roundoff) to each bound, which still bounds
            the computed relation's error.
        reorthogonalize: measure and restore orthogonality at every step (above). ``False``
            (only for ``k = 1`` at one end) runs the plain three-term recurrence, without the
            pass over the basis per step: the computed relation ``A Q = Q T + β q eᵀ + F``
            holds to rounding whatever the orthogonality (Paige 1976), so ``‖A y − θ y‖ ≤
            |β s_m| + ‖F‖`` for ``y = Q s`` regardless; the rule is checked with the computed
            length ``‖Q s‖`` of the candidate (one pass over the basis when it would stop), so
            the bound still holds for the unit vector returned. Orthogonality is lost along
            Ritz vectors that have converged (Paige), at either end, and copies ("ghosts") of
            their values then slow the run; so once an extreme Ritz pair has converged to
            ``|β s_m| ≤ √u·max(|α|, |β|)`` (or ``β`` is that small), the run starts again,
            reorthogonalized, from the same vector (the products count together). Without
            reorthogonalization ``θ`` need not be ``≤ λ_max``; it is within the bound of an
            eigenvalue.

    For ``k > 1``, wanted eigenvalues closer than about the residual tolerance may merge into one
    Ritz value (the ``k``-th returned is then a farther one); with the residual rule each ``θ`` is
    still within ``tol·|θ|`` of some eigenvalue; a smaller ``tol`` splits a cluster.

    Returns:
        An :class:`EigResult`; ``converged`` is False if ``max_iter`` ran out first.

    Raises:
        ValueError: on ``k`` outside ``[1, dim]``, an unknown ``which`` or ``bound``, a ``tol``
            that is not a finite number > 0, ``max_iter < 1``, a ``v0`` of the wrong size, zero
            or not finite, or ``reorthogonalize=False`` with ``k > 1`` or ``which="BE"``.

    Example:
        >>> a = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> res = lanczos_topk(lambda v: a @ v, 100, 1, which="BE", tol=1e-10)
        >>> [round(value, 8) for value in res.values.tolist()]
        [1.0, 100.0]

    """
    k, tol, max_iter = _check_args(dim, k, which, tol, bound, v0, max_iter)
    if not reorthogonalize and (k > 1 or which == "BE"):
        raise ValueError(
            f"reorthogonalize=False is only for one eigenvalue at one end (k=1, which != 'BE'), "
            f"got k={k}, which={which!r}: without it a run finds copies of converged values"
        )
    if device is None:
        device = v0.device if v0 is not None else torch.device("cpu")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    max_iter = min(dim, max(300, 20 * k)) if max_iter is None else max(min(max_iter, dim), k)
    wanted = min(2 * k, dim) if which == "BE" else k
    start = (
        random_direction(dim, generator, device)
        if v0 is None
        else unit_vector(v0.detach().to(device))
    )
    used, scale = 0, 0.0  # products and largest |α|, |β| of a plain run that handed over
    while True:
        budget = max_iter - used
        basis = KrylovBasis(
            dim,
            device,
            capacity=min(budget, 64),
            dtype=basis_dtype,
            max_steps=budget,
            reorthogonalize=reorthogonalize,
        )
        try:
            run = _run(matvec, basis, start, k, which, tol, bound, budget, generator, wanted, scale)
        finally:
            basis.release()
        if isinstance(run, EigResult):
            return replace(run, iterations=run.iterations + used)
        used, scale, reorthogonalize = used + run[0], run[1], True  # again, from the start


def _run(
    matvec: Callable[[Tensor], Tensor],
    basis: KrylovBasis,
    start: Tensor,
    k: int,
    which: str,
    tol: float,
    bound: str,
    max_iter: int,
    generator: torch.Generator,
    wanted: int,
    scale: float = 0.0,
) -> EigResult | tuple[int, float]:
    """Run the Lanczos loop of :func:`lanczos_topk` in ``basis`` (released by the caller).

    A basis without reorthogonalization hands over, ``(products, scale)``, once an extreme
    Ritz pair has converged to the level where copies appear (:func:`_an_end_converged`): a
    reorthogonalized run then starts again from the same vector, its breakdown test starting
    from the largest ``|α|, |β|`` seen. (Going on from the wanted Ritz vector instead saved
    products but inherited the lost orthogonality: on one operator its true residual stalled at
    3e-5 where the reorthogonalized run reached 7e-6.)
    """
    dim, device, basis_dtype = start.numel(), start.device, basis.dtype
    unit = 0.0 if basis_dtype == torch.float64 else basis.unit
    first = basis.append_slot()
    first.copy_(start.reshape(-1))
    first.div_(torch.linalg.vector_norm(first))
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples q_j and q_{j+1}
    dropped = 0.0  # the largest coupling β a breakdown set to 0: a perturbation of T of that norm
    block = 0  # first index of the current Krylov block (moves on a restart)
    next_check = 1
    w = basis.work
    while True:
        m = len(alphas) + 1
        alpha, beta = lanczos_step(matvec, basis, betas[-1] if betas else 0.0)
        alphas.append(alpha)
        scale = max(scale, abs(alpha), *(abs(b) for b in betas[-1:]))
        broke = beta <= basis.breakdown * max(scale, 1e-300)  # an invariant space
        if broke and beta > 32 * basis.unit * scale:  # not rounding: does the tolerance need it?
            wanted_now = ritz_pairs(alphas, betas, k, which).values.abs().min()
            broke = beta <= 0.1 * tol * float(wanted_now)
        if broke or m >= max_iter or m >= next_check:
            next_check = m + max(1, m // _STRIDE)
            ritz = ritz_pairs(alphas, betas, k, which)
            step_rounding = unit * m**0.5 * scale  # of a basis coarser than float64
            stretch = length_stretch(basis.orthogonality, m)  # 1 where nothing was measured
            rounding = step_rounding + basis.removed_bound(ritz.vectors)  # and what CGS took out
            rounding += dropped
            residuals, errors = ritz.error_bounds(beta * stretch, bound, rounding)
            converged = ritz.values.numel() == wanted and _met(errors, ritz.values, tol)
            if which == "LM" and converged:  # the far end, still moving out, may overtake
                ends = ritz_pairs(alphas, betas, k, "BE")
                end_slack = step_rounding + basis.removed_bound(ends.vectors) + dropped
                end_errors = ends.error_bounds(beta * stretch, bound, end_slack)[1]
                converged = bool((end_errors <= tol * ritz.values.abs().min()).all())
            if block > 0 and converged:
                block_ritz = ritz_pairs(alphas[block:], betas[block:], k, which)
                block_slack = step_rounding + basis.removed_bound(block_ritz.vectors, block)
                block_errors = block_ritz.error_bounds(beta * stretch, bound, block_slack)[1]
                converged = _met(block_errors, block_ritz.values, tol)
            restart = broke and _restarts(betas) < k and m < max_iter
            if (converged and not restart) or m >= max_iter:
                vectors = (basis.matrix() @ ritz.vectors.to(device, basis_dtype)).double()
                lengths = torch.linalg.vector_norm(vectors, dim=0)
                if not basis.reorthogonalize:  # the rule assumed unit length: check it
                    errors = ritz.error_bounds(beta, bound, rounding, lengths.cpu())[1]
                    converged = converged and _met(errors, ritz.values, tol)
                # of the unit vectors returned, with the rounding of a float32 basis
                residuals = (residuals / stretch + rounding) / lengths.cpu()
                if converged or m >= max_iter:
                    return EigResult(ritz.values, vectors / lengths, m, residuals, converged)
        if not basis.reorthogonalize and _an_end_converged(alphas, betas, beta, basis, scale):
            return m, scale  # before the basis grows copies of that pair
        if broke:  # invariant subspace: restart orthogonally, decoupled (β = 0)
            dropped = max(dropped, beta)
            betas.append(0.0)
            block = m
            basis.append(fresh_direction(basis, generator, dim, device))
        else:
            betas.append(beta)
            basis.append_divided(w, beta)


def _an_end_converged(
    alphas: list[float], betas: list[float], beta: float, basis: KrylovBasis, scale: float
) -> bool:
    """Whether an extreme Ritz pair has converged to ``|β s_m| ≤ √u·‖T‖`` (``u`` the basis's).

    In a basis that is not reorthogonalized, orthogonality is lost along the Ritz vectors that
    have converged (Paige 1976; Parlett & Scott 1979, "The Lanczos algorithm with selective
    orthogonalization"), and copies of their values appear; the extremes converge first, and a
    tiny ``β`` (a near-breakdown) makes every residual small at once. Handing over to a
    reorthogonalized run there keeps a far end that converges long before the wanted one (a
    Hessian with a large negative outlier) from slowing the wanted end down.
    """
    last = extreme_last_entries(alphas, betas)
    return bool((beta * last).abs().min() <= basis.unit**0.5 * scale)


def _met(errors: Tensor, values: Tensor, tol: float) -> bool:
    return bool((errors <= tol * values.abs()).all())


def _restarts(betas: list[float]) -> int:
    """Count the restarts so far (exact zeros on the off-diagonal)."""
    return sum(1 for b in betas if b == 0.0)


def _check_args(
    dim: int, k: int, which: str, tol: float, bound: str, v0: Tensor | None, max_iter: int | None
) -> tuple[int, float, int | None]:
    """Return ``k``, ``tol`` and ``max_iter`` checked (numpy scalars accepted, bools refused)."""
    if which not in _WHICH:
        raise ValueError(f"which must be one of {', '.join(_WHICH)}, got {which!r}")
    if bound not in _BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(_BOUNDS)}, got {bound!r}")
    k = check.positive_int("k", k)
    if k > dim:
        raise ValueError(f"k must be between 1 and dim = {dim}, got k={k!r}")
    tol = check.real("tol", tol, low=0.0, low_open=True)
    max_iter = None if max_iter is None else check.positive_int("max_iter", max_iter)
    if v0 is not None:
        check_start(v0, dim)
    return k, tol, max_iter


def top_eigenpair(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    *,
    what: str,
    tol: float = 1e-3,
    bound: Bound = "residual",
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    basis_dtype: torch.dtype = torch.float64,
    reorthogonalize: bool = True,
) -> tuple[float, Tensor]:
    """Return the largest eigenvalue and its vector (:func:`lanczos_topk` with ``k = 1``).

    What every sharpness-like probe does (``sharpness``, ``ggn_sharpness``,
    ``preconditioned_sharpness``): a run that stops before ``tol`` warns (``RuntimeWarning``,
    naming ``what``) and still returns its best estimate.
    """
    res = lanczos_topk(
        matvec, dim, tol=tol, bound=bound, max_iter=max_iter, v0=v0, generator=generator,
        device=device, basis_dtype=basis_dtype, reorthogonalize=reorthogonalize,
    )  # fmt: skip
    if not res.converged:
        warnings.warn(
            f"{what}: Lanczos stopped after {res.iterations} products with residual "
            f"{res.residual_norms[0].item():.3e} > tol·|θ| = {tol * abs(res.values[0].item()):.3e}",
            RuntimeWarning,
            stacklevel=3,
        )
    return float(res.values[0]), res.vectors[:, 0]
