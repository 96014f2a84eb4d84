r"""Gaussian expectations ``E[f(u) f(v)]`` of an activation and of its derivative.

For ``(u, v)`` centred Gaussian with variances ``k11``, ``k22`` and covariance ``k12``: closed
forms for ReLU and identity (the arc-cosine kernels of Cho & Saul 2009), the tensor Gauss–Hermite
rule and a polar rule otherwise (:mod:`gdscope.probes.infinite_width` states the rules and their
accuracy). A rule's error grows with the variance: the integrand ``f(√k z)`` varies on the scale
``1/√k`` in ``z``, which a fixed set of nodes stops resolving (tanh at ``k = 100``: 96 nodes give
``E[f'(u)²] = 0.0057`` for the true ``0.0531``). :func:`quadrature_error` measures it at a given
variance by the same rule with twice (or half) the nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import expit, ndtr, roots_hermitenorm, roots_laguerre, roots_legendre

__all__ = [
    "ACTIVATION_FNS",
    "CLOSED_FORM",
    "MAX_NODES",
    "METHODS",
    "Expectation",
    "compared_nodes",
    "expectation",
    "quadrature_error",
]

Array = np.ndarray
Fn = Callable[[Array], Array]
METHODS = ("auto", "closed", "polar", "hermite")
CLOSED_FORM = ("relu", "identity")
MAX_NODES = 192  # scipy's Gauss–Laguerre weights overflow beyond about 200 nodes
_CHUNK = 2**21  # quadrature values evaluated at once


def _gelu(z: Array) -> Array:
    return z * ndtr(z)


def _gelu_prime(z: Array) -> Array:
    return ndtr(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


ACTIVATION_FNS: dict[str, tuple[Fn, Fn]] = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "gelu": (_gelu, _gelu_prime),
    "softplus": (lambda z: np.logaddexp(0.0, z), expit),
    "identity": (lambda z: z, np.ones_like),
}


Expectation = Callable[[Array, Array, Array], tuple[Array, Array]]


def expectation(activation: str, method: str, nodes: int) -> Expectation:
    """Return ``(k11, k12, k22) -> (E[σ(u)σ(v)], E[σ'(u)σ'(v)])``, broadcasting its arguments."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if method == "closed" and activation not in CLOSED_FORM:
        raise ValueError(
            f"method='closed' covers {list(CLOSED_FORM)}, not {activation!r}; use 'polar'"
        )
    if method in ("auto", "closed") and activation in CLOSED_FORM:
        return _relu_closed if activation == "relu" else _identity_closed
    if not 2 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes must be in [2, {MAX_NODES}], got {nodes!r}")
    rule = _polar if method == "polar" else _hermite
    fns = ACTIVATION_FNS[activation]

    def expect(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
        k11, k12, k22 = np.broadcast_arrays(k11, k12, k22)
        return rule(fns[0], k11, k12, k22, nodes), rule(fns[1], k11, k12, k22, nodes)

    return expect


def _correlation(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    # √(k11·k22) after an exact power-of-two scaling: the product neither overflows (≈1e154)
    # nor underflows, and on the diagonal (k11 = k22) the norm is k11 itself, so ρ = 1 exactly
    scale = np.ldexp(1.0, np.frexp(np.maximum(k11, k22))[1])
    norm = scale * np.sqrt((k11 / scale) * (k22 / scale))
    rho = np.clip(np.divide(k12, norm, out=np.zeros_like(norm), where=norm > 0), -1.0, 1.0)
    return norm, rho


def _relu_closed(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    norm, rho = _correlation(k11, k12, k22)
    theta = np.arccos(rho)
    e = norm * (np.sin(theta) + (math.pi - theta) * rho) / (2 * math.pi)
    return e, (math.pi - theta) / (2 * math.pi) + 0.0 * norm


def _identity_closed(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    return k12 + 0.0 * (k11 + k22), np.ones(np.broadcast(k11, k12, k22).shape)


def _chunked(rule: Callable[..., Array], values_per_pair: int, *arrays: Array) -> Array:
    """Apply ``rule`` to flattened pairs in chunks of at most ``_CHUNK`` evaluations."""
    flat = [x.ravel() for x in arrays]
    step = max(1, _CHUNK // values_per_pair)
    parts = [rule(*(x[s : s + step] for x in flat)) for s in range(0, flat[0].size, step)]
    return np.concatenate(parts).reshape(arrays[0].shape)


def _polar(fn: Fn, k11: Array, k12: Array, k22: Array, nodes: int) -> Array:
    r"""``E[fn(u) fn(v)]`` by ``r²/2 ~ Exp(1)`` (Gauss–Laguerre) and ``φ`` (Gauss–Legendre per arc)."""
    s, ws = roots_laguerre(nodes)
    r = np.sqrt(2.0 * s)
    t, wt = roots_legendre(nodes)

    def rule(a11: Array, a12: Array, a22: Array) -> Array:
        _, rho = _correlation(a11, a12, a22)
        theta = np.arccos(rho)
        kink_v = theta + math.pi / 2 - math.pi * (theta > math.pi / 2)  # where cos(φ − θ) = 0
        quarter = np.full_like(theta, math.pi / 2)
        ends = np.sort(np.stack([0 * theta, quarter, kink_v, 2 * quarter], -1), -1)  # (pairs, 4)
        lo, half = ends[:, :-1, None], (ends[:, 1:, None] - ends[:, :-1, None]) / 2
        phi = lo + half * (t + 1)  # (pairs, 3 arcs, nodes)
        u = np.sqrt(a11)[:, None, None, None] * np.cos(phi)[..., None] * r
        v = np.sqrt(a22)[:, None, None, None] * np.cos(phi - theta[:, None, None])[..., None] * r
        h = fn(u) * fn(v) + fn(-u) * fn(-v)
        return np.einsum("pank,pan,n,k->p", h, half, wt, ws) / (2 * math.pi)

    return _chunked(rule, 3 * nodes * nodes, k11, k12, k22)


def _hermite(fn: Fn, k11: Array, k12: Array, k22: Array, nodes: int) -> Array:
    """``E[fn(u) fn(v)]`` by the tensor Gauss–Hermite rule (probabilists' weight ``e^{-z²/2}``)."""
    z, w = roots_hermitenorm(nodes)
    w = w / math.sqrt(2 * math.pi)

    def rule(a11: Array, a12: Array, a22: Array) -> Array:
        _, rho = _correlation(a11, a12, a22)
        u = np.sqrt(a11)[:, None, None] * z[:, None]
        v = np.sqrt(a22)[:, None, None] * (
            rho[:, None, None] * z[:, None] + np.sqrt(1 - rho**2)[:, None, None] * z[None, :]
        )
        return np.einsum("pij,i,j->p", fn(u) * fn(v), w, w)

    return _chunked(rule, nodes * nodes, k11, k12, k22)


def compared_nodes(nodes: int) -> int:
    """Return the node count :func:`quadrature_error` compares ``nodes`` with.

    Twice the nodes, at most :data:`MAX_NODES`; half of them at the maximum (which then bounds
    the coarser rule's error).
    """
    return min(2 * nodes, MAX_NODES) if nodes < MAX_NODES else nodes // 2


def quadrature_error(activation: str, method: str, nodes: int, variance: float) -> float:
    """Return how far the rule moves at ``variance`` with :func:`compared_nodes` nodes.

    The largest change of ``E[σ(u)σ(v)]`` and ``E[σ'(u)σ'(v)]`` over ``ρ ∈ {1, ½}``, relative to
    the larger expectation; 0 for a closed form.

    >>> quadrature_error("relu", "auto", 96, 100.0)
    0.0
    >>> quadrature_error("tanh", "auto", 96, 1.0) < 1e-8, quadrature_error("tanh", "auto", 96, 100.0) > 0.1
    (True, True)
    """
    coarse = expectation(activation, method, nodes)
    if method in ("auto", "closed") and activation in CLOSED_FORM:
        return 0.0
    other = expectation(activation, method, compared_nodes(nodes))
    k = np.array([variance, variance])
    pair = (k, np.array([variance, variance / 2]), k)
    worst = 0.0
    for a, b in zip(coarse(*pair), other(*pair), strict=True):
        scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-300)
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst
