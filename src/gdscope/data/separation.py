"""Separation-controlled data: the closest opposite-label pair on the sphere is exactly δ apart.

The convergence and generalization bounds for over-parameterized networks (Du et al. 2019,
Allen-Zhu et al. 2019) depend on the data through the separation
``δ = min_{y_i ≠ y_j} ‖x_i − x_j‖``; ``separated`` lets a study sweep ``δ`` while holding every
other pair fixed, and ``min_opposite_distance`` measures it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.distance import cdist

from gdscope import _checks as check

from . import _common as c

_POOL_FACTOR = 4  # candidates per kept point in the farthest-point selection


def min_opposite_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Compute the smallest Euclidean distance between two points with different labels.

    .. math:: \delta(x, y) = \min_{i, j:\ y_i \neq y_j} \lVert x_i - x_j \rVert_2

    Distances are computed from differences (not from Gram matrices), so a duplicated input
    gives exactly 0. Works for ±1 targets of shape ``(n, 1)`` or ``(n,)`` and for class labels;
    inputs of any shape ``(n, ...)`` are compared flattened.

    Args:
        x: inputs of shape ``(n, ...)``.
        y: labels of shape ``(n,)`` or ``(n, 1)``.

    Returns:
        ``δ`` as a Python float; ``inf`` when all labels are equal.

    Raises:
        ValueError: if ``x`` and ``y`` disagree on ``n`` or ``y`` has more than one column.

    """
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1) or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape (n,) or (n, 1) with n = x.shape[0] = {x.shape[0]}, "
            f"got {tuple(y.shape)}"
        )
    points = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    labels = y.detach().reshape(-1)
    best = math.inf
    for label in torch.unique(labels)[:-1]:
        mine, others = labels == label, labels > label
        if others.any():
            dist = torch.cdist(
                points[mine], points[others], compute_mode="donot_use_mm_for_euclid_dist"
            )
            best = min(best, dist.min().item())
    return best


def _farthest_points(gen: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` well-spread points of ``S^{d-1}``: greedy farthest-point picks from a uniform pool."""
    pool = gen.standard_normal((_POOL_FACTOR * n, d))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    picked = [0]
    closest = pool @ pool[0]  # on the sphere ‖p − q‖² = 2 − 2 pᵀq: farthest = least aligned
    for _ in range(n - 1):
        i = int(np.argmin(closest))
        picked.append(i)
        closest = np.maximum(closest, pool @ pool[i])
    return pool[picked]


def _pairwise(x: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows, computed from differences; ``inf`` on the diagonal."""
    dist = cdist(x, x)
    np.fill_diagonal(dist, np.inf)
    return dist


def _anchor_and_limit(x: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """Choose the anchor point and the largest δ for which the construction is guaranteed.

    With ``q`` at distance δ from the anchor ``p``, any other point ``z`` of ``p``'s label has
    ``‖q − z‖ ≥ ‖p − z‖ − δ`` (triangle inequality), which exceeds δ when ``δ < ‖p − z‖ / 2``;
    base pairs of opposite labels must stay farther than δ too. The anchor maximizes the bound.
    """
    dist = _pairwise(x)
    opposite = labels[:, None] != labels[None, :]
    base_opposite = dist[opposite].min() if opposite.any() else np.inf
    same_nearest = np.where(opposite, np.inf, dist).min(axis=1)
    anchor = int(np.argmax(same_nearest))
    return anchor, float(min(base_opposite, same_nearest[anchor] / 2.0, 2.0))


def _tangent_point(gen: np.random.Generator, p: np.ndarray, delta: float) -> np.ndarray:
    """Place a point of the unit sphere at chord distance ``delta`` from the unit vector ``p``."""
    v = gen.standard_normal(p.shape)
    v -= (v @ p) * p
    v /= np.linalg.norm(v)
    theta = 2.0 * math.asin(delta / 2.0)  # chord 2 sin(θ/2) = δ
    return math.cos(theta) * p + math.sin(theta) * v


def separated(
    n: int,
    d: int,
    delta: float,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unit-sphere inputs with random ±1 labels whose closest opposite-label pair is δ apart.

    Construction: ``n − 1`` well-spread points of ``S^{d-1}`` (greedy farthest-point selection
    from ``4(n − 1)`` uniform draws) get random labels ``±1``; an anchor ``p`` among them receives
    a partner

    .. math:: q = \cos\theta\, p + \sin\theta\, v,\quad 2\sin(\theta/2) = \delta,\quad
              v \perp p,\ \lVert v \rVert = 1,

    with the opposite label, so ``‖q‖ = 1`` and ``‖q − p‖ = δ``; rows are then shuffled. ``δ = 0``
    duplicates ``p`` with the opposite label (a dataset no model can fit). Every other
    opposite-label pair is farther than δ provided ``δ < δ_max``, where ``δ_max`` is the smaller
    of the base set's closest opposite-label distance and half the distance from ``p`` to its
    nearest same-label neighbour (anchor chosen to maximize it). ``δ_max`` depends on
    ``(n, d, seed)`` only; it is about 0.4 for ``n = 64, d = 4`` and near ``√2 / 2`` in high
    dimension. The base set and partner direction do not depend on δ, so a sweep over δ with a
    fixed seed moves only the one point.

    Args:
        n: number of points, ≥ 2.
        d: input dimension, ≥ 2.
        delta: distance δ ≥ 0 of the closest opposite-label pair; must be below ``δ_max``.
        seed: seed of the generator.
        dtype: floating-point dtype of ``x`` and ``y``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``: ``x`` of shape ``(n, d)`` with unit rows, ``y`` float ±1 of shape ``(n, 1)``.
        ``min_opposite_distance(x, y) == δ`` up to rounding.

    Raises:
        ValueError: on ``n < 2``, ``d < 2``, negative δ, or ``δ ≥ δ_max`` (the message names
            ``δ_max``).

    References:
        S. S. Du, X. Zhai, B. Póczos, A. Singh, "Gradient Descent Provably Optimizes
        Over-parameterized Neural Networks", ICLR 2019 (λ_min(H∞) > 0 needs no parallel inputs);
        Z. Allen-Zhu, Y. Li, Z. Song, "A Convergence Theory for Deep Learning via
        Over-Parameterization", ICML 2019 (iterations polynomial in 1/δ).

    """
    n, d = check.positive_int("n", n), check.positive_int("d", d)
    if n < 2:
        raise ValueError(f"n must be an integer ≥ 2 (one opposite-label pair), got {n}")
    if d < 2:
        raise ValueError(f"d must be an integer ≥ 2 (S^0 has no room to place δ), got {d}")
    delta = check.real("delta", delta, low=0.0, high=2.0)
    seed, dtype, device = c.common(seed, dtype, device)
    gen = c.rng(seed)
    base = _farthest_points(gen, n - 1, d)
    labels = gen.choice(np.array([-1.0, 1.0]), size=n - 1)
    anchor, limit = _anchor_and_limit(base, labels)
    if delta >= limit:
        raise ValueError(
            f"delta must be < {limit:.6g} for n={n}, d={d}, seed={seed} (larger values cannot "
            f"guarantee that every other opposite-label pair is farther), got {delta}"
        )
    partner = _tangent_point(gen, base[anchor], delta)
    x = np.vstack([base, partner])
    y = np.append(labels, -labels[anchor])
    order = gen.permutation(n)
    return c.to_float(x[order], dtype, device), c.to_float(y[order, None], dtype, device)
