r"""Gaussian expectations ``E[f(u) f(v)]`` of an activation and of its derivative.

For ``(u, v)`` centred Gaussian with variances ``k11``, ``k22`` and covariance ``k12``: closed
forms for ReLU and identity (the arc-cosine kernels of Cho & Saul 2009) and GELU (Tsuchida et
al. 2021), the tensor Gauss–Hermite rule, a polar rule and a graded composite rule otherwise (:mod:`gdscope.probes.infinite_width`
states the rules and their accuracy). The Hermite and polar rules' error grows with the variance:
the integrand ``f(√k z)`` varies on the scale ``1/√k`` in ``z``, which a fixed set of nodes stops
resolving (tanh at ``k = 100``: 96 nodes give ``E[f'(u)²] = 0.0057`` for the true ``0.0531``);
comparing a rule with itself at twice the nodes then understates its error (both miss the same
narrow features: tanh at ``k = 1000``, ``ρ = 0.95``, 96 against 192 nodes moved by ``1.6e-2``
where the error of ``E[tanh'(u) tanh'(v)]`` was ``4.7e-1``). The graded rule puts its panels on
those features, so its error does not grow with the variance, and :func:`quadrature_error`
measures any rule against it (with more nodes per panel), a closed form where there is one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from scipy.special import expit, ndtr, roots_hermitenorm, roots_laguerre, roots_legendre

from gdscope import _checks as check

__all__ = [
    "ACTIVATION_FNS",
    "CHECK_NODES",
    "CLOSED_FORM",
    "GRADED_NODES",
    "GRADED_RATIO",
    "MAX_NODES",
    "METHODS",
    "Expectation",
    "checked_nodes",
    "expectation",
    "quadrature_error",
    "reference",
]

Array = np.ndarray
Fn = Callable[[Array], Array]
METHODS = ("auto", "closed", "graded", "polar", "hermite")
CLOSED_FORM = ("relu", "identity", "gelu")
MAX_NODES = 192  # scipy's Gauss–Laguerre weights overflow beyond about 200 nodes
GRADED_NODES = 10  # Gauss–Legendre nodes per panel of the graded rule
CHECK_NODES = 16  # the same panels, more nodes: the reference of quadrature_error
GRADED_RATIO = 4.0  # successive panels about a feature grow by this factor
_SPAN = 9.0  # the graded rule integrates the standard Gaussian over [−9, 9]
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


def expectation(
    activation: str, method: str, nodes: int, *, panel_nodes: int = GRADED_NODES
) -> Expectation:
    """Return ``(k11, k12, k22) -> (E[σ(u)σ(v)], E[σ'(u)σ'(v)])``, broadcasting its arguments.

    ``nodes`` per dimension for ``"hermite"`` and ``"polar"``, ``panel_nodes`` per panel for
    ``"graded"``. Both expectations are symmetric under ``u ↔ v``, i.e. under swapping ``k11``
    and ``k22``, but a rule's rounding is not (the Hermite rule: ``2.4e-10`` apart for tanh at
    ``(1.3, 0.4, 0.7)``), so the rules run on ``(min(k11, k22), k12, max(k11, k22))``:
    ``E(a, c, b)`` and ``E(b, c, a)`` are then the same operations on the same numbers, and an
    input given twice gives bitwise-equal rows of the kernels (an exactly singular Gram, whose
    regression takes the least-norm route). The closed forms are symmetric as written.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if method == "closed" and activation not in CLOSED_FORM:
        raise ValueError(
            f"method='closed' covers {list(CLOSED_FORM)}, not {activation!r}; use 'auto'"
        )
    if method in ("auto", "closed") and activation in CLOSED_FORM:
        return {"relu": _relu_closed, "gelu": _gelu_closed}.get(activation, _identity_closed)
    if method == "graded":
        nodes = panel_nodes
    rule = {"graded": _graded, "polar": _polar}.get(method, _hermite)
    fns = ACTIVATION_FNS[activation]

    def expect(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
        k11, k12, k22 = np.broadcast_arrays(k11, k12, k22)
        k11, k22 = np.minimum(k11, k22), np.maximum(k11, k22)  # canonical: see the docstring
        return rule(fns[0], k11, k12, k22, nodes), rule(fns[1], k11, k12, k22, nodes)

    return expect


def checked_nodes(nodes: int) -> int:
    """Return ``nodes`` as an int in ``[2, MAX_NODES]``; a one-line ``ValueError`` otherwise."""
    try:
        n = check.positive_int("nodes", nodes)
    except ValueError:
        n = None
    if n is None or not 2 <= n <= MAX_NODES:
        raise ValueError(
            f"nodes must be an int in [2, {MAX_NODES}], got {nodes!r}; pass e.g. nodes=96"
        )
    return n


def _correlation(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    r"""Return ``√(k11·k22)`` and ``ρ = k12/√(k11·k22)`` (clipped to ``[−1, 1]``; 0 where the norm is).

    Each variance is split exactly as ``k = m·4^e`` with ``m ∈ [½, 2)`` (an even power of two),
    so ``√(k11·k22) = √(m_1 m_2)·2^{e_1+e_2}``: the product ``m_1 m_2 ∈ [¼, 4)`` neither
    overflows nor underflows whatever the two scales (one common scale lost ``k22`` below
    ``1e-308·k11``: inputs whose norms differ by ``1e154``), the power of two is exact, and on
    the diagonal (``k11 = k22``) the norm is ``k11`` itself (``√(m²) = m`` in binary floating
    point), so ``ρ = 1`` exactly there.
    """
    f1, e1 = np.frexp(k11)
    f2, e2 = np.frexp(k22)
    odd1, odd2 = e1 & 1, e2 & 1  # 2^e1 = 2^odd1 · 4^((e1 − odd1)/2)
    root = np.sqrt(np.ldexp(f1, odd1) * np.ldexp(f2, odd2))
    norm = np.ldexp(root, (e1 - odd1 + e2 - odd2) // 2)
    rho = np.clip(np.divide(k12, norm, out=np.zeros_like(norm), where=norm > 0), -1.0, 1.0)
    return norm, rho


def _relu_closed(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    norm, rho = _correlation(k11, k12, k22)
    theta = np.arccos(rho)
    e = norm * (np.sin(theta) + (math.pi - theta) * rho) / (2 * math.pi)
    return e, (math.pi - theta) / (2 * math.pi) + 0.0 * norm


def _gelu_closed(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array]:
    r"""Return GELU's two expectations in closed form.

    Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2021, "Avoiding kernel fixed points",
    AAAI (the form neural-tangents' ``stax.Gelu`` uses). With ``a = 1 + k11``, ``b = 1 + k22``, ``δ = √(ab − k12²)`` (``δ² ≥ 1 + k11 + k22 > 0``) and
    ``θ = atan2(k12, δ)``: ``E[σ(u)σ(v)] = k12/4 + (k12 θ + (k12² + k11 k22 δ²)/(ab δ))/(2π)``
    and ``E[σ'(u)σ'(v)] = 1/4 + θ/(2π) + k12 (1/δ² + (1 − k11 k22)/(ab) + 1)/(2π δ)``; both equal
    the graded rule with 16 nodes per panel to ``1e-13`` from variance ``1e-3`` to ``1e6``.
    """
    a, b = 1.0 + k11, 1.0 + k22
    delta_sq = a * b - k12 * k12
    delta = np.sqrt(delta_sq)
    theta = np.arctan2(k12, delta)
    value = k12 / 4 + (k12 * theta + (k12 * k12 + k11 * k22 * delta_sq) / (a * b * delta)) / (
        2 * math.pi
    )
    slope = 1 / delta_sq + (1 - k11 * k22) / (a * b) + 1
    return value, 0.25 + theta / (2 * math.pi) + k12 * slope / (2 * math.pi * delta)


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


def _graded(fn: Fn, k11: Array, k12: Array, k22: Array, nodes: int) -> Array:
    r"""``E[fn(u) fn(v)]`` by composite Gauss–Legendre rules graded towards the features.

    ``E = ∫ φ(z_1) fn(\sqrt{k_{11}} z_1) G(z_1) dz_1`` with
    ``G(z_1) = ∫ φ(z_2) fn(\sqrt{k_{22}}(ρ z_1 + c z_2)) dz_2``, ``c = \sqrt{1-ρ^2}``, both
    on ``[−9, 9]`` (the Gaussian mass outside is ``2e-19``), ``nodes`` Gauss–Legendre nodes per
    panel. ``fn`` varies on the scale 1 of its argument near 0, so the outer integrand on the
    scales ``1/\sqrt{k}`` about ``z_1 = 0`` and the inner one on ``1/(\sqrt{k_{22}} c)`` about
    ``z_2^* = −ρ z_1/c`` (the kink ``v = 0``): panels of unit length for the Gaussian, and
    about each feature panels that grow by :data:`GRADED_RATIO` from its width (a geometric mesh
    resolves every scale between, as hp finite elements resolve a corner singularity). On each
    panel the integrand is analytic or polynomial, so the error falls geometrically in
    ``nodes`` at every variance: about ``5e-9`` of the largest expectation at 10 nodes and
    ``1e-12`` at 16, from variance ``1e-2`` to ``1e8`` (tanh, GELU, softplus; kinks exact).
    """
    t, wt = roots_legendre(nodes)
    grid = np.arange(-_SPAN, _SPAN + 0.5)  # the Gaussian's unit panels
    smax = max(1.0, math.sqrt(float(max(k11.max(), k22.max()))))
    levels = math.ceil(math.log(smax) / math.log(GRADED_RATIO)) + 1
    fine = GRADED_RATIO ** -np.arange(1.0, levels + 1) * 2.0  # down to below 1/√k about 0
    outer = np.unique(np.concatenate([grid, fine, -fine]))
    z1, w1 = _panels(outer[:-1], outer[1:], t, wt)
    grow = GRADED_RATIO ** np.arange(levels + 1)

    def rule(a11: Array, a12: Array, a22: Array) -> Array:
        _, rho = _correlation(a11, a12, a22)
        s1, s2, c = np.sqrt(a11), np.sqrt(a22), np.sqrt(1 - rho**2)
        centre = np.divide(
            -rho[:, None] * z1, c[:, None], out=np.zeros((rho.size, z1.size)), where=c[:, None] > 0
        )
        centre = np.clip(centre, -_SPAN, _SPAN)[..., None]
        width = 1 / np.maximum(s2 * c, 1.0)  # the feature's width in z_2, at most the Gaussian's
        offsets = (width[:, None] * grow)[:, None, :]
        feature = np.clip(
            np.concatenate([centre - offsets, centre, centre + offsets], -1), -_SPAN, _SPAN
        )
        ends = np.sort(
            np.concatenate([np.broadcast_to(grid, centre.shape[:2] + grid.shape), feature], -1), -1
        )
        z2, w2 = _panels(ends[..., :-1], ends[..., 1:], t, wt)  # (pairs, outer, inner)
        v = s2[:, None, None] * (rho[:, None, None] * z1[:, None] + c[:, None, None] * z2)
        inner = np.einsum("pnk,pnk->pn", fn(v), w2)
        return np.einsum("pn,pn,n->p", fn(s1[:, None] * z1), inner, w1)

    per_pair = z1.size * (grid.size + 2 * levels + 2) * nodes
    return _chunked(rule, per_pair, k11, k12, k22)


def _panels(lo: Array, hi: Array, t: Array, wt: Array) -> tuple[Array, Array]:
    """Gauss–Legendre nodes and Gaussian-weighted weights on panels ``[lo, hi]``, flattened last."""
    half = (hi - lo)[..., None] / 2
    z = (lo[..., None] + half) + half * t
    w = half * wt * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z.reshape(*z.shape[:-2], -1), w.reshape(*w.shape[:-2], -1)


def _probes(variance: float) -> tuple[Array, Array, Array]:
    """``(k11, k12, k22)`` at ``k11 = variance``, ``k22 ∈ {variance, variance/10}`` and ``ρ`` from 1 to −1."""
    rho = np.array([1.0, 0.9, 0.0, -0.9, -1.0])
    k11 = np.full(2 * rho.size, variance)
    k22 = np.repeat([variance, variance / 10], rho.size)
    return k11, np.tile(rho, 2) * np.sqrt(k11 * k22), k22


def reference(activation: str) -> tuple[str, Expectation]:
    """Return the name and rule :func:`quadrature_error` measures against.

    A closed form, else ``"graded"`` with :data:`CHECK_NODES` nodes per panel.
    """
    if activation in CLOSED_FORM:
        return "closed form", expectation(activation, "closed", CHECK_NODES)
    fine = expectation(activation, "graded", 0, panel_nodes=CHECK_NODES)
    return f"graded rule with {CHECK_NODES} nodes per panel", fine


@functools.lru_cache(maxsize=512)
def quadrature_error(activation: str, method: str, nodes: int, variance: float) -> float:
    """Return the rule's largest error at ``variance`` against :func:`reference`'s rule.

    The largest ``|E_rule − E_ref|`` of ``E[σ(u)σ(v)]`` and ``E[σ'(u)σ'(v)]`` at ``k11 = variance``,
    ``k22 ∈ {variance, variance/10}``, ``ρ ∈ {1, 0.9, 0, −0.9, −1}``, relative to the largest
    ``|E_ref|`` there (where Gauss–Hermite's error peaks, to within a factor 1.3 over a finer
    grid of ``ρ`` and ``k22``); ``"auto"`` is measured as ``"hermite"``; 0 for a closed form.

    >>> quadrature_error("relu", "auto", 96, 100.0)
    0.0
    >>> quadrature_error("tanh", "auto", 96, 1.0) < 1e-8, quadrature_error("tanh", "auto", 96, 100.0) > 0.1
    (True, True)
    >>> quadrature_error("tanh", "graded", 96, 1e6) < 1e-7
    True
    """
    if method in ("auto", "closed") and activation in CLOSED_FORM:
        return 0.0
    rule = expectation(activation, "hermite" if method == "auto" else method, nodes)
    probes = _probes(variance)
    worst = 0.0
    for a, b in zip(rule(*probes), reference(activation)[1](*probes), strict=True):
        worst = max(worst, float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-300))
    return worst
