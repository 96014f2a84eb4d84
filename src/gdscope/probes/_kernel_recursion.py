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

from ._gaussian_expectations import Expectation, compared_nodes, expectation, quadrature_error

__all__ = ["QUADRATURE_TOL", "InfiniteWidthKernels", "LayerConstants", "layer_kernels"]

Array = np.ndarray
QUADRATURE_TOL = 1e-4
"""Warn when a quadrature's expectations move by more than this with more nodes (relative).

Measured at variance 3.2 against adaptive ``scipy.integrate.quad``: Gauss–Hermite's
``E[tanh'(u)²]`` is off by 9e-5 at 96 nodes, 1e-5 at 128, 2e-7 at 192; the polar rule by 4e-8 at
96 (tanh's poles at ``±iπ/(2√k)`` slow the Hermite rule as the variance grows)."""


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
    """Run :func:`_recursion`; ``"auto"`` goes polar where Gauss–Hermite is unresolved."""
    kernels, peak = _recursion(a, b, symmetric, consts, expectation(activation, method, nodes))
    if method == "auto" and quadrature_error(activation, method, nodes, peak) > QUADRATURE_TOL:
        method = "polar"
        polar = expectation(activation, method, nodes)
        kernels, peak = _recursion(a, b, symmetric, consts, polar)
    _check_quadrature(activation, method, nodes, peak)
    return kernels


def _recursion(
    a: Array, b: Array, symmetric: bool, consts: list[LayerConstants], expect: Expectation
) -> tuple[InfiniteWidthKernels, float]:
    """Run the layer recursion on ``(n1, d)`` and ``(n2, d)`` inputs with the rule ``expect``.

    Returns the kernels and the largest pre-activation variance a quadrature met.
    """
    first, d = consts[0], a.shape[1]
    dots = a @ b.T / d
    nngp, ntk = first.v * dots + first.beta, first.w * dots + first.c
    var1, var2 = (first.v * np.einsum("id,id->i", z, z) / d + first.beta for z in (a, b))
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


def _check_quadrature(activation: str, method: str, nodes: int, peak: float) -> None:
    """Warn when the rule is unresolved at the largest pre-activation variance it met."""
    error = quadrature_error(activation, method, nodes, peak) if peak > 0 else 0.0
    if error > QUADRATURE_TOL:
        warnings.warn(
            f"ntk_infinite: the {activation} quadrature's expectations move by {error:.1e} "
            f"(relative) from {nodes} to {compared_nodes(nodes)} nodes at pre-activation "
            f"variance {peak:.3g}, so the kernels may be off by up to about that: raise nodes "
            "(at most 192), use method='polar', or scale the inputs down",
            RuntimeWarning,
            stacklevel=4,
        )


def _pairwise(
    expect: Expectation, k11: Array, k12: Array, k22: Array, *, symmetric: bool
) -> tuple[Array, Array]:
    """Both expectations for every pair ``(i, j)``; only ``i ≤ j`` when the kernel is symmetric."""
    if not symmetric:
        return expect(k11[:, None], k12, k22[None, :])
    i, j = np.triu_indices(k11.size)
    out = []
    for upper in expect(k11[i], k12[i, j], k11[j]):
        full = np.zeros_like(k12)
        full[i, j] = full[j, i] = upper
        out.append(full)
    return out[0], out[1]
