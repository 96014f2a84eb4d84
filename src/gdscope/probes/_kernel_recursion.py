r"""The layer recursion of the infinite-width NNGP and NTK, given each layer's constants.

:mod:`gdscope.probes.infinite_width` states the recursion and where the constants
``(v_ℓ, w_ℓ, β_ℓ, c_ℓ)`` come from (a parameterization, or a drawn ``mlp``'s layers); this
module runs it on two sets of inputs, with the Gaussian expectations of
:mod:`gdscope.probes._gaussian_expectations`, and says when a quadrature is not resolved.

>>> import numpy as np
>>> unit = [LayerConstants(1.0, 1.0, 0.0, 0.0), LayerConstants(2.0, 2.0, 0.0, 0.0)]
>>> x = np.eye(2)
>>> k = layer_kernels(x, x, True, unit, "relu", "auto", 96)
>>> bool(np.allclose(np.diag(k.nngp), 0.5)), bool(np.allclose(np.diag(k.ntk), 1.0))
(True, True)
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ._gaussian_expectations import (
    CLOSED_FORM,
    Expectation,
    checked_nodes,
    expectation,
    quadrature_error,
    reference,
)

__all__ = ["QUADRATURE_TOL", "InfiniteWidthKernels", "LayerConstants", "layer_kernels"]

Array = np.ndarray
QUADRATURE_TOL = 1e-4
"""Warn when a quadrature's kernels are off by more than this (relative to the largest entry).

Measured at variance 3.2 against adaptive ``scipy.integrate.quad``: Gauss–Hermite's
``E[tanh'(u)²]`` is off by 9e-5 at 96 nodes, 1e-5 at 128, 2e-7 at 192; the polar rule by 4e-8 at
96 (tanh's poles at ``±iπ/(2√k)`` slow the Hermite rule as the variance grows); the graded rule
by about 1e-9 at any variance."""
_MARGIN = 1e-2
"""``"auto"`` keeps Gauss–Hermite where its probed error is below ``_MARGIN · QUADRATURE_TOL``:
the error compounds over the layers (about twice per layer for the NTK) and rises by ten for
each factor 1.6 in the variance, so the margin costs little."""


class InfiniteWidthKernels(NamedTuple):
    """The limiting kernels, float64 ``(n1, n2)`` arrays.

    Attributes:
        nngp: ``Σ_D(x1, x2)``, the covariance of the output at initialization.
        ntk: ``Θ_D(x1, x2)``, the neural tangent kernel.

    """

    nngp: Array
    ntk: Array


class LayerConstants(NamedTuple):
    """One layer's ``v`` (forward variance), ``w`` (weight-gradient scale), ``β`` and ``c``."""

    v: float
    w: float
    beta: float
    c: float


def layer_kernels(
    a: Array,
    b: Array,
    symmetric: bool,
    consts: list[LayerConstants],
    activation: str,
    method: str,
    nodes: int,
) -> InfiniteWidthKernels:
    """Run :func:`_recursion`; ``"auto"`` goes graded where Gauss–Hermite is unresolved.

    Where :func:`quadrature_error` finds the rule used off by more than
    ``_MARGIN · QUADRATURE_TOL`` at the largest variance met, the kernels are recomputed by
    :func:`reference`'s rule and a ``RuntimeWarning`` gives their actual difference if it
    exceeds :data:`QUADRATURE_TOL`.
    """
    nodes = checked_nodes(nodes)
    kernels, peak = _recursion(a, b, symmetric, consts, expectation(activation, method, nodes))
    if peak == 0 or (method in ("auto", "closed") and activation in CLOSED_FORM):
        return kernels
    if method == "auto":
        if quadrature_error(activation, method, nodes, peak) <= _MARGIN * QUADRATURE_TOL:
            return kernels
        method = "graded"
        kernels, peak = _recursion(a, b, symmetric, consts, expectation(activation, method, nodes))
    if quadrature_error(activation, method, nodes, peak) > _MARGIN * QUADRATURE_TOL:
        name, rule = reference(activation)
        exact, _ = _recursion(a, b, symmetric, consts, rule)
        error = max(_relative(got, want) for got, want in zip(kernels, exact, strict=True))
        if error > QUADRATURE_TOL:
            warnings.warn(
                f"ntk_infinite: the {method} rule's kernels are off by {error:.1e} (relative to "
                f"the largest entry) from those of the {name} at pre-activation variances up "
                f"to {peak:.3g}: use method='auto' or 'graded'",
                RuntimeWarning,
                stacklevel=4,
            )
    return kernels


def _relative(got: Array, want: Array) -> float:
    return float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-300)


def _first_layer(a: Array, b: Array) -> tuple[Array, Array, Array]:
    r"""Return ``a bᵀ/d`` and the rows' ``‖a_i‖²/d``, ``‖b_j‖²/d``, exact for parallel rows.

    The arc-cosine kernel ``(π − θ)/2π`` has an infinite slope in ``ρ`` at ``ρ = ±1``
    (``θ ≈ \sqrt{2(1 − ρ)}``): a rounding of one ulp between BLAS's ``a bᵀ`` and the squared
    norms turns an input paired with its own copy into ``θ ≈ 1.5e-8``, ``2e-9`` per layer. Where
    ``|cos|`` is within the products' rounding bound (``d`` ulps) of 1, the product is taken
    from the exact squared distance instead, ``a·b = (‖a‖² + ‖b‖² − ‖a − b‖²)/2`` (``+``
    for ``cos ≈ −1``): for identical (or opposite) rows it equals the squared norm exactly, so
    ``ρ = ±1`` exactly there and at every deeper layer (their kernel entries are then the same
    operations on the same numbers), and near them it keeps ``1 − |ρ|`` to relative rounding.
    """
    d = a.shape[1]
    qa, qb = np.einsum("id,id->i", a, a), np.einsum("id,id->i", b, b)
    dots = a @ b.T
    norm = np.sqrt(qa)[:, None] * np.sqrt(qb)[None, :]
    i, j = np.nonzero(np.abs(dots) >= (1 - 4 * (d + 2) * np.finfo(float).eps) * norm)
    sign = np.sign(dots[i, j])[:, None]
    diff = a[i] - sign * b[j]
    gap = np.einsum("pd,pd->p", diff, diff)
    dots[i, j] = sign[:, 0] * ((qa[i] + qb[j]) - gap) / 2
    return dots / d, qa / d, qb / d


def _recursion(
    a: Array, b: Array, symmetric: bool, consts: list[LayerConstants], expect: Expectation
) -> tuple[InfiniteWidthKernels, float]:
    """Run the layer recursion on ``(n1, d)`` and ``(n2, d)`` inputs with the rule ``expect``.

    Returns the kernels and the largest pre-activation variance a quadrature met.
    """
    first = consts[0]
    dots, qa, qb = _first_layer(a, b)
    nngp, ntk = first.v * dots + first.beta, first.w * dots + first.c
    var1, var2 = (first.v * q + first.beta for q in (qa, qb))
    peak = 0.0  # the largest variance a quadrature met
    for layer in consts[1:]:
        if symmetric:  # the Gram's own diagonal, so that ρ = 1 exactly there
            var1 = var2 = np.diag(nngp).copy()
        peak = max(peak, float(var1.max()), float(var2.max()))
        e, e_dot = _pairwise(expect, var1, nngp, var2, symmetric=symmetric)
        ntk = layer.w * e + layer.c + layer.v * e_dot * ntk
        nngp = layer.v * e + layer.beta
        if not symmetric:
            var1, var2 = (layer.v * expect(k, k, k)[0] + layer.beta for k in (var1, var2))
    return InfiniteWidthKernels(nngp, ntk), peak


def _pairwise(
    expect: Expectation, k11: Array, k12: Array, k22: Array, *, symmetric: bool
) -> tuple[Array, Array]:
    """Both expectations for every pair ``(i, j)``; only ``i ≤ j`` when the kernel is symmetric.

    ``(j, i)`` is then the mirror of ``(i, j)``, evaluated as ``expect(k11[i], k12, k11[j])``:
    an input given twice, at ``i < i'``, meets ``j`` once as ``(i, j)`` and once as ``(j, i')``
    (variances swapped), and its rows are bitwise equal only because :func:`expectation` runs
    its rules on the variances in a canonical order (``Θ`` then exactly singular, as the
    regression's least-norm route needs; before, ``2e-9`` apart with ``κ ≈ 6e16``).
    """
    if not symmetric:
        return expect(k11[:, None], k12, k22[None, :])
    i, j = np.triu_indices(k11.size)
    out = []
    for upper in expect(k11[i], k12[i, j], k11[j]):
        full = np.zeros_like(k12)
        full[i, j] = full[j, i] = upper
        out.append(full)
    return out[0], out[1]
