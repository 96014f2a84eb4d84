r"""Spectral density of the loss Hessian by stochastic Lanczos quadrature (SLQ).

For a symmetric ``A`` (``P × P``) with eigenpairs ``(λ_i, u_i)`` and a unit probe ``v``, the
spectral measure ``μ_v = Σ_i (u_i^\top v)^2 δ_{λ_i}`` has ``E_v[μ_v] = \frac1P Σ_i δ_{λ_i}`` for
``v = z/\sqrt P`` with Rademacher ``z``. ``m`` Lanczos steps from ``v`` give a tridiagonal
``T_m = S\, \mathrm{diag}(θ)\, S^\top`` whose Ritz values ``θ_k`` and weights ``τ_k = S_{1k}^2``
are the ``m``-node Gauss quadrature of ``μ_v``:

.. math::  v^\top f(A)\, v ≈ Σ_k τ_k f(θ_k), \quad \text{exact for polynomials of degree} < 2m,

so the density smoothed by a Gaussian ``g_σ`` is estimated by averaging over ``n_v`` probes,

.. math::  φ_σ(t) = \frac1P Σ_i g_σ(t − λ_i) ≈ \frac1{n_v} Σ_{v} Σ_k τ_k^{(v)} g_σ(t − θ_k^{(v)})

(Lin, Saad & Yang 2016, "Approximating spectral densities of large matrices", §3.2; Ghorbani,
Krishnan & Xiao 2019, "An investigation into neural net optimization via Hessian eigenvalue
density", §2; PyHessian, Yao et al. 2020). The Lanczos steps use full reorthogonalization (the
Krylov basis of :mod:`gdscope.probes.lanczos`), so no ghost Ritz values appear; a breakdown
(invariant Krylov space) ends a probe early, with the quadrature then exact for every ``f``.
A Hessian whose first layer sees few inputs is reduced to their span first, exactly
(:func:`hessian_spectral_density`).

Near 0. For the nodes ``θ_1 < … < θ_m`` of ``μ_v``'s Gauss rule, the Chebyshev–Markov–Stieltjes
inequalities ``Σ_{k<j} τ_k ≤ μ_v((−∞, θ_j))`` and ``μ_v((−∞, θ_j]) ≤ Σ_{k≤j} τ_k`` (Szegő 1939,
"Orthogonal Polynomials", §3.41) put the true cdf at a ``t`` between ``θ_j`` and ``θ_{j+1}``
within ``τ_j`` below and ``τ_{j+1}`` above the rule's: mass is resolved only to the weight of
the nodes next to ``t``. A null space with small eigenvalues of both signs around it is carried
by ONE heavy node a little off 0, on a side that changes with the Hessian; 0 itself is resolved
only where Lanczos reaches it to roundoff (an invariant Krylov space, the data span's null-space
column). On ``mlp(20, 32, depth=3)`` with 8 examples (P = 1761; 83 % zero eigenvalues, 8.2 %
negative, steady along gradient descent) 24 steps put a node of weight 0.4–0.7 within
``2.4e-3·max|θ|`` of 0 on either side, and the weight of the negative nodes read 0.05 → 0.51 →
0.72 → 0.23 → 0.07 along one run; 200 steps left it at ``±3e-6·max|θ|`` and ``cdf(−1e-9)`` at
0.39. Over 57 checkpoints of gradient descent (that net, a cross-entropy ``mlp(6, 24,
depth=3)``, a CNN, ReLU and tanh MLPs) the node stayed within ``5.9e-3·max|θ|`` of 0, the
weight below 0 was off the dense spectrum's fraction by up to 0.61, and the weight of the nodes
below ``−τ·max|θ|`` (:meth:`SpectralDensity.negative_mass`) was off the fraction below
``−τ·max|λ|`` by at most 0.031 at ``τ = 0.03``, 0.067 at ``1e-2`` and 0.195 at ``3e-3``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from gdscope._checks import nonnegative_float, positive_float, positive_int
from gdscope.functional import LossFn, Params
from gdscope.probes._data_span import DataSpan
from gdscope.probes._differentiating import differentiating
from gdscope.probes._hessian_build import Batch, span_operator
from gdscope.probes._hvp import HessianOperator
from gdscope.probes._krylov import KrylovBasis, lanczos_step
from gdscope.probes._subset import Selection

__all__ = ["NEGATIVE_TAU", "SpectralDensity", "hessian_spectral_density", "spectral_density"]

NEGATIVE_TAU = 0.03
"""Relative threshold of :meth:`SpectralDensity.negative_mass`: nodes below ``−0.03·max|θ|``.

Five times the farthest a 24-step rule put the node carrying a null space from 0 (``5.9e-3``
over 57 checkpoints, module docstring), where the mass below it was within 0.031 of the dense
spectrum's; 3.5 times the spacing ``π²/(2m²)`` (of the spectrum's width, Chebyshev's
nodes) of an ``m = 24`` rule's first nodes at an end, below which it cannot split mass."""
DEFAULT_PROBES = 8
"""Rademacher probe vectors when neither ``probes`` nor ``vectors`` is given (PyHessian's ``n_v``
is 1; eight give the moments a standard error)."""


@dataclass(frozen=True)
class SpectralDensity:
    """Gauss quadrature nodes and weights of each probe's spectral measure.

    Attributes:
        nodes: ``(n_v, m)`` float64 Ritz values ``θ_k`` per probe (padded with 0 where a probe
            broke down early, with weight 0). On a data span (:func:`hessian_spectral_density`)
            one more column: the node 0, with the probe's mass in the Hessian's null space.
        weights: ``(n_v, m)`` float64 ``τ_k ≥ 0``; each row sums to 1.

    """

    nodes: Tensor
    weights: Tensor

    def density(self, t: Tensor, sigma: float) -> Tensor:
        """Return the Gaussian-smoothed density ``φ_σ(t)`` (integrates to 1) at the points ``t``."""
        sigma = positive_float("sigma", sigma)
        z = (_points(t)[:, None, None] - self.nodes) / sigma
        g = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
        return (g * self.weights).sum(-1).mean(-1)

    def cdf(self, t: Tensor, sigma: float = 0.0) -> Tensor:
        """Return ``∫_{-∞}^t φ_σ``, the rule's fraction of eigenvalues ``≤ t`` (a step at σ = 0).

        Per probe it is within the weight of the nodes on either side of ``t`` of the true
        fraction (Chebyshev–Markov–Stieltjes, module docstring). Ritz values within
        :func:`spectral_density`'s ``zero_tol`` of 0 are stored as exact zeros, so ``cdf(0)``
        counts the null space and ``cdf(-tiny)`` leaves it out ONLY where Lanczos resolved 0 to
        roundoff (an invariant Krylov space; the data span's null-space column). Otherwise one
        heavy node carries the null space with the small eigenvalues around it, a little off 0
        on a side that changes with the Hessian: on ``mlp(20, 32, depth=3)`` (83 % zero, 8.2 %
        negative eigenvalues) a node of weight about 0.6 sat up to ``2.4e-3·max|θ|`` off 0 after
        24 steps (``3e-6·max|θ|`` after 200), and ``cdf(−1e-9)`` read 0.05 to 0.72 in training.
        Neither then gives the fraction of eigenvalues ``≤ 0`` or ``< 0``; :meth:`negative_mass`
        measures the negative mass the rule does resolve.
        """
        sigma = nonnegative_float("sigma", sigma)
        diff = _points(t)[:, None, None] - self.nodes
        if sigma > 0:
            below = 0.5 * torch.erfc(-diff / (sigma * math.sqrt(2)))
        else:
            below = (diff >= 0).to(torch.float64)
        return (below * self.weights).sum(-1).mean(-1)

    def extremes(self) -> tuple[float, float]:
        """Return the smallest and largest Ritz values (``≈ λ_min``, ``λ_max``), padding left out.

        The padded nodes (0, at weight 0) are not Ritz values: on a negative-definite Hessian
        ``nodes.max()`` would read 0.

        >>> values = -torch.tensor([3.0, 2, 2, 1, 1], dtype=torch.float64)
        >>> slq = spectral_density(lambda v: values * v, 5, steps=5)
        >>> [round(e, 9) for e in slq.extremes()], float(slq.nodes.max())
        ([-3.0, -1.0], 0.0)
        """
        ritz = self.nodes[self.weights > 0]
        return float(ritz.min()), float(ritz.max())

    def negative_mass(self, tau: float = NEGATIVE_TAU) -> float:
        """Return the weight of the nodes below ``−τ·max|θ|``, averaged over the probes.

        The estimate of the fraction of eigenvalues below ``−τ·max|λ|`` that leaves out the
        node carrying a null space (:meth:`cdf`; ``τ`` well above its offset from 0, see
        :data:`NEGATIVE_TAU`); per probe it is within the weight of the nodes on either side of
        ``−τ·max|θ|`` of the true fraction. 0 for the zero operator.

        >>> values = torch.tensor([-1.0, -1e-6, 0.0, 0.0, 2.0], dtype=torch.float64)
        >>> slq = spectral_density(lambda v: values * v, 5, steps=5)
        >>> round(slq.negative_mass(), 9), round(float(slq.cdf(-1e-9)), 9)
        (0.2, 0.4)
        """
        tau = nonnegative_float("tau", tau)
        below = self.nodes < -tau * float(self.nodes.abs().max())
        return float((self.weights * below).sum(-1).mean())

    def moment(self, power: int) -> tuple[float, float]:
        """Return the estimate of ``tr(A^power)/P`` and its standard error over the probes.

        Each probe's value ``Σ_k τ_k θ_k^power = vᵀ A^power v`` is exact for ``power < 2m``.
        """
        per_probe = (self.weights * self.nodes**power).sum(-1)
        n = per_probe.numel()
        se = float(per_probe.std() / math.sqrt(n)) if n > 1 else math.inf
        return float(per_probe.mean()), se


def _points(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64).reshape(-1)


def spectral_density(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    *,
    steps: int = 64,
    probes: int | None = None,
    vectors: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    zero_tol: float = 64 * torch.finfo(torch.float64).eps,
) -> SpectralDensity:
    """Return the SLQ quadrature of a symmetric operator's spectral density.

    A Ritz value within ``zero_tol`` times the largest ``|θ|`` (over all probes) of 0 is set to
    exactly 0: a zero eigenvalue comes out of ``m`` rounded products as ``±`` a few units of
    roundoff times ``‖A‖``, and would otherwise fall on either side of ``t = 0`` in
    :meth:`SpectralDensity.cdf` (the fraction of negative eigenvalues) at random. Pass the
    relative accuracy of ``matvec`` (``64 ε`` of float32, ``7.6e-6``, for a float32 operator).

    Args:
        matvec: ``v ↦ A v`` on float64 ``(dim,)`` vectors on ``device``.
        dim: size ``P`` of ``A``.
        steps: Lanczos steps ``m`` per probe (at most ``dim``).
        probes: number ``n_v`` of Rademacher probes ``z/√P`` (default 8; with ``vectors``, their
            number, and any other is refused).
        vectors: ``(n_v, dim)`` probes to use instead (each normalized to unit length).
        generator: draws the probes (default: seeded with 0).
        device: where the Krylov basis lives.
        zero_tol: relative size below which a Ritz value is an exact zero (0 keeps them all).

    Returns:
        A :class:`SpectralDensity`.

    Raises:
        ValueError: on ``dim``, ``steps`` or ``probes`` below 1, or ``vectors`` of the wrong
            shape, zero or not finite.

    Example:
        >>> a = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> slq = spectral_density(lambda v: a @ v, 100, steps=20, probes=4)
        >>> round(slq.moment(1)[0], 6), round(float(slq.cdf(50.5)), 2)  # exact: 50.5, 0.5
        (50.5, 0.5)

    """
    steps, probes = _check_counts(steps, probes, vectors)
    dim = positive_int("dim", dim)
    starts = _probe_vectors(dim, probes, vectors, generator, device)
    return _gauss_rules(
        matvec, starts, [1.0] * len(starts), min(steps, dim), device, None, zero_tol
    )


def _gauss_rules(
    matvec: Callable[[Tensor], Tensor],
    starts: list[Tensor],
    masses: list[float],
    m: int,
    device: torch.device | str,
    null_masses: list[float] | None,
    zero_tol: float,
) -> SpectralDensity:
    """Each unit start's ``m``-step Gauss rule, its weights times the start's mass.

    With ``null_masses`` a last column holds the node 0 with that mass (:func:`_on_span`).
    Nodes within ``zero_tol · max |θ|`` of 0 are set to 0.
    """
    columns = m if null_masses is None else m + 1
    nodes = torch.zeros(len(starts), columns, dtype=torch.float64)
    weights = torch.zeros_like(nodes)
    for i, (v, mass) in enumerate(zip(starts, masses, strict=True)):
        if mass > 0:
            theta, tau = _quadrature(matvec, v, m, device)
            nodes[i, : len(theta)], weights[i, : len(theta)] = theta, mass * tau
        if null_masses is not None:
            weights[i, m] = null_masses[i]
    nodes[nodes.abs() <= zero_tol * float(nodes.abs().max())] = 0.0
    return SpectralDensity(nodes, weights)


def _check_counts(steps: object, probes: object, vectors: Tensor | None) -> tuple[int, int]:
    given = None if vectors is None or vectors.ndim != 2 else vectors.shape[0]
    if probes is None:
        probes = DEFAULT_PROBES if given is None else given
    probes = positive_int("probes", probes)
    if given is not None and probes != given:
        raise ValueError(
            f"probes={probes} but vectors holds {given} probe vectors; pass one or the other"
        )
    return positive_int("steps", steps), probes


def _quadrature(
    matvec: Callable[[Tensor], Tensor], v: Tensor, m: int, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Return the Gauss nodes ``θ`` and weights ``τ`` of ``μ_v`` from ``m`` Lanczos steps."""
    alphas, betas = _tridiagonal(matvec, v, m, device)
    theta, s = scipy.linalg.eigh_tridiagonal(np.asarray(alphas), np.asarray(betas))
    return torch.from_numpy(theta), torch.from_numpy(s[0] ** 2)


@differentiating
def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    steps: int = 64,
    probes: int | None = None,
    vectors: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    params: Selection = None,
) -> SpectralDensity:
    """Return the SLQ density of ``∇²_θ loss_fn(f(θ, x), y)`` (see :func:`spectral_density`).

    The Hessian is that of :func:`gdscope.probes.hessian.hessian_operator` (trainable parameters
    in ``named_parameters()`` order, the training loss's normalization), one product per step.
    When the inputs span few directions (a plain stack whose first linear layer sees ``n ≤ d/2``
    examples, :mod:`gdscope.probes._data_span`), the steps run on the reduced Hessian ``∇²L̃``,
    exactly: the same probes and, per probe, its Gauss rule on the span plus the node 0 with its
    mass off the span (``μ_v = ‖Jv‖² μ_{Jv/‖Jv‖}(∇²L̃) + (1 − ‖Jv‖²) δ_0``), so ``nodes`` has
    ``m + 1`` columns, each product costs the first layer ``n/d`` of its work, and the null
    space's mass is exact rather than estimated. ``params`` selects a block
    (:func:`~gdscope.probes.hessian.hessian_operator`): the density of ``∂²L/∂θ_S²``. Ritz values
    within ``64 ε`` (of the operator's dtype) of the largest are exact zeros
    (:func:`spectral_density`'s ``zero_tol``).

    Raises:
        ValueError: as :func:`spectral_density`, or on a random loss.

    Example:
        >>> from gdscope.losses import mse
        >>> from gdscope.models import mlp
        >>> net = mlp(d_in=3, width=8, depth=2, seed=0, dtype=torch.float64)
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
        >>> slq = hessian_spectral_density(net, mse, (x, y), steps=16)  # 41 parameters
        >>> slq.nodes.shape, round(float(slq.cdf(float("inf"))), 12)
        (torch.Size([8, 16]), 1.0)

    """
    op, span, selected = span_operator(
        model, loss_fn, batch, chunk_size, params, "hessian_spectral_density"
    )
    zero_tol = 64 * torch.finfo(op.dtype).eps
    if span is None:
        return spectral_density(
            op.matvec,
            op.dim,
            steps=steps,
            probes=probes,
            vectors=vectors,
            generator=generator,
            device=op.device,
            zero_tol=zero_tol,
        )
    steps, probes = _check_counts(steps, probes, vectors)
    dim = sum(p.numel() for p in selected.values())
    starts = _probe_vectors(dim, probes, vectors, generator, op.device)
    return _on_span(op, span, selected, starts, min(steps, op.dim), zero_tol)


def _on_span(
    op: HessianOperator,
    span: DataSpan,
    selected: Params,
    starts: list[Tensor],
    m: int,
    zero_tol: float,
) -> SpectralDensity:
    """Each probe's quadrature from the reduced Hessian, plus a node 0 for its null-space mass.

    With ``∇²L = Jᵀ ∇²L̃ J`` (``J Jᵀ = I``) and ``v = Jᵀu + w`` (``u = J v``, ``J w = 0``),
    ``vᵀ f(∇²L) v = uᵀ f(∇²L̃) u + f(0) ‖w‖²``: ``μ_v = ‖u‖² μ_{u/‖u‖}(∇²L̃) + ‖w‖² δ_0``.
    """
    reduced = [span.reduce(v, selected).to(torch.float64) for v in starts]
    kept = [float(u.square().sum()) for u in reduced]  # ‖u‖² of a unit probe; ‖w‖² = 1 − ‖u‖²
    units = [u / math.sqrt(k) if k > 0 else u for u, k in zip(reduced, kept, strict=True)]
    null = [max(0.0, 1.0 - k) for k in kept]
    return _gauss_rules(op.matvec, units, kept, m, op.device, null, zero_tol)


def _probe_vectors(
    dim: int,
    probes: int,
    vectors: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> list[Tensor]:
    if vectors is not None:
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"vectors must be (n_v, {dim}), got {tuple(vectors.shape)}")
        v = vectors.detach().to(device, torch.float64)
    else:
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        z = torch.randint(0, 2, (probes, dim), generator=gen, device=gen.device)
        v = (2 * z - 1).to(device, torch.float64)
    if not bool(v.isfinite().all()):
        raise ValueError("vectors hold nan or inf; pass finite probe vectors")
    norms = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise ValueError("every probe vector must be nonzero")
    return list(v / norms)


def _tridiagonal(
    matvec: Callable[[Tensor], Tensor], v: Tensor, steps: int, device: torch.device | str
) -> tuple[list[float], list[float]]:
    """Return ``T``'s diagonal and off-diagonal after up to ``steps`` Lanczos steps from unit ``v``.

    Stops early at a breakdown: ``β`` at most ``32 u`` (``u`` the basis's unit roundoff) times
    the largest ``|α|, |β|`` so far, i.e. ``β`` at the rounding of one product, where the Krylov
    space is invariant to working accuracy. (The basis's own ``1e-12`` serves Lanczos
    eigensolvers; here it would end a probe whose bulk lies ``10¹²`` below an outlier, although
    the bulk is resolved to ``u‖A‖``.)
    """
    basis = KrylovBasis(v.numel(), device, capacity=steps)
    basis.append(v)
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    w = basis.work
    breakdown = 32 * basis.unit
    try:
        for _ in range(steps):
            alpha, beta = lanczos_step(matvec, basis, betas[-1] if betas else 0.0)
            alphas.append(alpha)
            scale = max(scale, abs(alpha), *(abs(b) for b in betas[-1:]))
            if len(alphas) == steps or beta <= breakdown * max(scale, 1e-300):
                break
            betas.append(beta)
            basis.append_divided(w, beta)
    finally:
        basis.release()
    return alphas, betas
