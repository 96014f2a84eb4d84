r"""Infinite-width NNGP and NTK of gdscope's fully connected networks.

A plain :func:`~gdscope.models.mlp.mlp` computes ``z_ℓ = α_ℓ W_ℓ h_{ℓ-1} + α_{b,ℓ} b_ℓ``,
``h_ℓ = σ(z_ℓ)``, ``h_0 = x``, ``f = z_D``, with ``W_ℓ ~ N(0, σ_ℓ²)`` and ``b_ℓ ~ N(0, σ_{b,ℓ}²)``
as its parameterization says (:mod:`gdscope.models.parameterization`). With ``n`` the fan-in,
let ``v_ℓ = α_ℓ² σ_ℓ² n`` (forward variance), ``w_ℓ = α_ℓ² n`` (weight-gradient scale),
``β_ℓ = α_{b,ℓ}² σ_{b,ℓ}²`` and ``c_ℓ = α_{b,ℓ}²`` (0 without biases). As the width grows the
pre-activations become a Gaussian process and the empirical NTK at initialization concentrates
(Neal 1996; Lee et al. 2018; Jacot, Gabriel & Hongler 2018, Theorem 1; Arora et al. 2019, "On
exact computation with an infinitely wide neural net", eq. (8)–(10)):

.. math::

    Σ_1 = \frac{v_1}{d} x^\top x' + β_1, \qquad Θ_1 = \frac{w_1}{d} x^\top x' + c_1,

    Σ_ℓ = v_ℓ\, E[σ(u)σ(v)] + β_ℓ, \qquad
    Θ_ℓ = w_ℓ\, E[σ(u)σ(v)] + c_ℓ + v_ℓ\, E[σ'(u)σ'(v)]\, Θ_{ℓ-1},

with ``(u, v) ~ N(0, [[Σ_{ℓ-1}(x,x), Σ_{ℓ-1}(x,x')], [·, Σ_{ℓ-1}(x',x')]])``; the kernels are
``(Σ_D, Θ_D)``, the same for each of ``k`` outputs (the full Gram is ``Θ_D ⊗ I_k``).

Conventions. ``wrt="stored"`` differentiates the weights as gdscope stores them, which is what
:func:`~gdscope.probes.ntk.ntk_gram` measures on the model. ``wrt="unit"`` differentiates the
unit-variance weights ``W/σ``, ``b/σ_b`` (``w_ℓ = v_ℓ``, ``c_ℓ = β_ℓ``). Under
``parameterization="ntk"`` the two agree at ``init_scale = 1``, where the stored weights have
unit variance and the activation gain is in the forward multiplier (the convention, stated in
:mod:`gdscope.models.parameterization`): ``v_ℓ = w_ℓ = gain²``, and the kernel is
neural-tangents' ``stax`` kernel of that convention (Jacot et al.'s where ``gain = 1``; for ReLU
Arora et al.'s ``c_σ = 2``). Under ``standard``, ``mup`` and ``meanfield`` some ``v_ℓ``
or ``w_ℓ`` depends on the width: pass ``width`` for the Gaussian-limit kernel at that width
(e.g. the NTK of SP grows like the width).

Expectations. ReLU and identity are closed form (the arc-cosine kernels of Cho & Saul 2009, with
``ρ = cos θ``): ``E[σ(u)σ(v)] = \sqrt{k_{11}k_{22}}\,(\sin θ + (π − θ)\cos θ)/(2π)``,
``E[σ'(u)σ'(v)] = (π − θ)/(2π)``; so is GELU (Tsuchida et al. 2021, the form of
neural-tangents' ``stax.Gelu``: :func:`~gdscope.probes._gaussian_expectations._gelu_closed`).
Otherwise (``"auto"``, where it is resolved) the tensor
Gauss–Hermite rule (probabilists' nodes, ``scipy.special.roots_hermitenorm``) on ``u = \sqrt{k_{11}} z_1``,
``v = \sqrt{k_{22}}(ρ z_1 + \sqrt{1-ρ^2} z_2)``: spectral for smooth ``σ`` (tanh, GELU,
softplus) while the nodes resolve ``σ``'s scale 1 in ``u``, i.e. ``1/\sqrt{k}`` in ``z``, so
its error grows quickly with the variance (tanh, ``E[tanh'(u)tanh'(v)]`` at ``k = 1000``,
``ρ = 0.95``: 47% at 96 nodes); only algebraic at a kink (ReLU: about ``2e-3`` at 192 nodes).
``"graded"`` writes ``E = ∫φ(z_1)σ(u)\,E[σ(v) | z_1]\,dz_1`` and integrates both levels by
composite Gauss–Legendre rules (10 nodes per panel) on unit panels for the Gaussian plus panels
growing geometrically (ratio 4) away from ``σ``'s features, ``z_1 = 0`` and
``z_2 = −ρ z_1/\sqrt{1-ρ^2}`` (the kinks ``u = 0``, ``v = 0``), down to their widths
``1/\sqrt{k}``: the geometric mesh resolves every scale (as hp finite elements a corner
singularity), so its error, about ``1e-9`` of the largest expectation, does not grow with the
variance (checked from ``1e-2`` to ``1e8`` against nested adaptive ``scipy.integrate.quad``);
it costs about the polar rule's. ``"polar"`` writes
``(u, v) = r(\sqrt{k_{11}}\cos φ, \sqrt{k_{22}}\cos(φ − θ))`` with ``r²/2 ~ Exp(1)``
(Gauss–Laguerre in ``r²/2`` on the integrand symmetrized over ``±r``) and ``φ`` uniform on
``[0, π)`` (Gauss–Legendre on each arc between the kinks ``u = 0`` and ``v = 0``): exact in
``r`` for ReLU, spectral in ``φ``, so it checks the closed form to rounding, but like Hermite it
stops resolving smooth activations as the variance grows. ``"auto"`` takes Gauss–Hermite where
its error, measured against the graded rule with 16 nodes per panel at the largest variance met
(:func:`~gdscope.probes._gaussian_expectations.quadrature_error`), is below
``QUADRATURE_TOL/100``, and the graded rule otherwise. An explicit rule whose error is not that
small is recomputed by the reference (the closed form for ReLU, identity and GELU), and a
``RuntimeWarning`` gives the kernels' actual difference where it exceeds
:data:`QUADRATURE_TOL`. The expectations themselves are in
:mod:`gdscope.probes._gaussian_expectations`, the recursion in
:mod:`gdscope.probes._kernel_recursion`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gdscope import _checks as check
from gdscope.models.activations import ACTIVATIONS, activation_gain, get_activation
from gdscope.models.layers import ScaledLinear
from gdscope.models.mlp import MLP
from gdscope.models.parameterization import LayerSpec, Parameterization, get_parameterization

from ._kernel_recursion import QUADRATURE_TOL, InfiniteWidthKernels, LayerConstants, layer_kernels

__all__ = [
    "QUADRATURE_TOL",
    "InfiniteWidthKernels",
    "LayerConstants",
    "layer_constants",
    "mlp_kernels",
    "ntk_infinite",
]

Array = np.ndarray
WRT = ("stored", "unit")


def layer_constants(
    depth: int,
    d_in: int,
    *,
    activation: str = "relu",
    parameterization: str | Parameterization = "ntk",
    bias: bool = True,
    init_scale: float = 1.0,
    gain: float | None = None,
    wrt: str = "stored",
    width: int | None = None,
    base_width: int = 64,
) -> list[LayerConstants]:
    """Return ``(v_ℓ, w_ℓ, β_ℓ, c_ℓ)`` of each layer, input first (see the module docstring).

    ``gain`` (default: the model's, ``√2`` for ReLU) is the activation gain of the input and
    hidden layers, which goes into their init std or forward multiplier as
    :meth:`~gdscope.models.parameterization.Parameterization.layer` says.

    Raises:
        ValueError: on a ``depth``, ``d_in``, ``width`` or ``base_width`` that is not a positive
            int, an ``init_scale`` or ``gain`` not finite and positive, an unknown activation
            or ``wrt``, or when ``width`` is ``None`` and a constant depends on the width under
            ``parameterization``.

    """
    depth = _positive_int("depth", depth, "the number of weight layers, e.g. depth=3")
    d_in = _positive_int("d_in", d_in, "the number of input features")
    base_width = _positive_int("base_width", base_width, "muP's base width, e.g. 64 (the default)")
    if width is not None:
        width = _positive_int("width", width, "the hidden width m, or None under 'ntk'")
    _positive_float("init_scale", init_scale, "the factor on every weight std, e.g. 1.0")
    if gain is not None:
        _positive_float("gain", gain, "e.g. gain=2 ** 0.5, or None for the model's")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if wrt not in WRT:
        raise ValueError(f"wrt must be one of {list(WRT)}, got {wrt!r}")

    def at(m: int) -> list[LayerConstants]:
        return _constants(
            depth, d_in, m, activation, parameterization, bias, init_scale, gain, wrt, base_width
        )

    if width is not None:
        return at(width)
    narrow, wide = at(base_width), at(1024 * base_width)
    if not np.allclose(np.array(narrow), np.array(wide), rtol=1e-12, atol=0.0):
        name = get_parameterization(parameterization).name
        shown = [tuple(round(c, 4) for c in layer) for layer in narrow]
        raise ValueError(
            f"under parameterization {name!r} the layer constants (v, w, β, c) depend on the "
            f"width ({shown} at width {base_width}); pass width=m for the kernel at width m"
        )
    return narrow


def _positive_int(field: str, value: object, fix: str) -> int:
    """``value`` as an int ``>= 1`` (numpy integers too, not bools); a one-line ValueError else."""
    try:
        return check.positive_int(field, value)
    except ValueError:
        raise ValueError(f"{field} must be an int >= 1, got {value!r}; pass {fix}") from None


def _positive_float(field: str, value: object, fix: str) -> float:
    """``value`` as a finite float ``> 0``; a one-line ValueError else."""
    try:
        number = None if isinstance(value, bool) else float(value)  # pyright: ignore[reportArgumentType]
    except (TypeError, ValueError):
        number = None
    if number is None or not (math.isfinite(number) and number > 0):
        raise ValueError(f"{field} must be a finite number > 0, got {value!r}; pass {fix}")
    return number


def _constants(
    depth: int,
    d_in: int,
    width: int,
    activation: str,
    parameterization: str | Parameterization,
    bias: bool,
    init_scale: float,
    gain: float | None,
    wrt: str,
    base_width: int,
) -> list[LayerConstants]:
    param = get_parameterization(parameterization)
    g = activation_gain(activation) if gain is None else float(gain)
    ratio = width / base_width if depth > 1 else 1.0
    fan_ins = [d_in] + [width] * (depth - 1)
    roles = ["input"] + ["hidden"] * (depth - 2) + ["output"] if depth > 1 else ["output"]
    out = []
    for n, role in zip(fan_ins, roles, strict=True):
        s = param.layer(
            role, n, ratio, activation_gain=g, init_scale=init_scale, base_width=base_width
        )
        stored = _spec_constants(s, n, bias=bias, trains_weight=True, trains_bias=bias)
        unit = LayerConstants(stored.v, stored.v, stored.beta, stored.beta)
        out.append(unit if wrt == "unit" else stored)
    return out


def _spec_constants(
    spec: LayerSpec, n: int, *, bias: bool, trains_weight: bool, trains_bias: bool
) -> LayerConstants:
    """One layer's ``wrt="stored"`` constants from its spec and fan-in ``n`` (module docstring).

    A frozen weight (bias) adds no ``w`` (``c``) term.
    """
    v = spec.multiplier**2 * spec.init_std**2 * n
    beta = spec.bias_multiplier**2 * spec.bias_std**2 if bias else 0.0
    w = spec.multiplier**2 * n if trains_weight else 0.0
    c = spec.bias_multiplier**2 if trains_bias else 0.0
    return LayerConstants(v, w, beta, c)


def ntk_infinite(
    x1: Array | torch.Tensor,
    x2: Array | torch.Tensor | None = None,
    *,
    depth: int,
    activation: str = "relu",
    parameterization: str | Parameterization = "ntk",
    bias: bool = True,
    init_scale: float = 1.0,
    gain: float | None = None,
    wrt: str = "stored",
    width: int | None = None,
    base_width: int = 64,
    method: str = "auto",
    nodes: int = 96,
) -> InfiniteWidthKernels:
    r"""Return the infinite-width NNGP and NTK of a plain gdscope MLP, in float64.

    The recursion, the conventions (``wrt``, ``gain``) and the quadratures are in the module
    docstring. The arguments after ``activation`` mean what they mean for
    :func:`gdscope.models.mlp` (residual MLPs and ``trained="hidden"`` are not covered).

    Args:
        x1: ``(n1, d)`` inputs (numpy or torch).
        x2: ``(n2, d)`` inputs for cross-kernels; ``None`` for ``x1`` against itself.
        depth: number of weight layers (``1`` is the linear model).
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        parameterization: ``ntk``, ``standard``, ``mup``, ``meanfield`` or a ``Parameterization``.
        bias: whether the layers have (trained) biases.
        init_scale: extra factor on every weight std, as in ``mlp``.
        gain: activation gain of the input and hidden layers (default: the model's, ``√2`` for
            ReLU, 1 otherwise; under ``ntk`` it is stax's ``W_std``).
        wrt: ``"stored"`` (the weights as the model stores them) or ``"unit"`` (unit-variance
            weights: Jacot et al. 2018, Arora et al. 2019, neural-tangents).
        width: the width at which to evaluate width-dependent layer constants (needed for all
            but ``ntk``).
        base_width: μP's and mean-field's base width, as in ``mlp``.
        method: ``"auto"`` (closed form for ReLU, identity and GELU, else ``"hermite"`` where it is
            resolved to ``QUADRATURE_TOL/100`` at the largest variance met, else
            ``"graded"``), ``"closed"``, ``"graded"``, ``"polar"`` or ``"hermite"``.
        nodes: quadrature nodes per dimension of ``"hermite"`` (per arc for ``"polar"``'s
            angle), an int in ``[2, 192]``; the graded rule's panels are fixed. 96 Gauss–Hermite
            nodes put tanh's expectations within about ``1e-8`` at pre-activation variances
            near 1; the error grows with the variance (at 3.2, ``E[tanh'(u)²]``: ``9e-5`` at
            96 nodes, ``2e-7`` at 192), where ``"auto"`` goes graded; an explicit rule off by
            more than :data:`QUADRATURE_TOL` gets a ``RuntimeWarning`` with the kernels' error.

    Returns:
        :class:`InfiniteWidthKernels` ``(nngp, ntk)``, each ``(n1, n2)``.

    Raises:
        ValueError: on bad shapes or non-finite inputs, an unknown activation, method or
            ``wrt``, ``"closed"`` for an activation without a closed form, a width-dependent
            kernel without ``width``, or a ``depth``, ``width``, ``base_width``, ``nodes``
            that is not a positive int or an ``init_scale``, ``gain`` not finite and positive.

    Example:
        >>> x = np.eye(3)
        >>> nngp, ntk = ntk_infinite(x, depth=2, activation="relu", bias=False)
        >>> bool(np.allclose(np.diag(nngp), 1 / 3)), bool(np.allclose(np.diag(ntk), 2 / 3))
        (True, True)

    """
    a, b = _as_inputs(x1, x2)
    consts = layer_constants(
        depth,
        a.shape[1],
        activation=activation,
        parameterization=parameterization,
        bias=bias,
        init_scale=init_scale,
        gain=gain,
        wrt=wrt,
        width=width,
        base_width=base_width,
    )
    return layer_kernels(a, b, x2 is None, consts, activation, method, nodes)


def mlp_kernels(
    model: nn.Module,
    x1: Array | torch.Tensor,
    x2: Array | torch.Tensor | None = None,
    *,
    method: str = "auto",
    nodes: int = 96,
) -> InfiniteWidthKernels:
    r"""Return the infinite-width NNGP and NTK of the distribution ``model`` was drawn from.

    ``model`` is a plain :func:`~gdscope.models.mlp` (not residual, ``random_init``): each
    layer's constants come from its own ``spec`` (init std, multipliers) and its fan-in, as
    the module docstring defines them for ``wrt="stored"``, what
    :func:`~gdscope.probes.ntk.ntk_gram` measures on ``model``. A frozen weight (bias) adds no
    ``w`` (``c``) term: with ``trained="hidden"`` the NTK is the hidden layers' alone. The
    hidden widths enter only as fan-ins: the kernels are those of the widths going to infinity
    with every layer's ``spec`` as drawn (under ``ntk`` width-free; under ``standard``, ``mup``
    and ``meanfield``, as :func:`ntk_infinite` with ``width`` at the model's width).

    Raises:
        ValueError: for any other model, naming what is not covered.

    Example:
        >>> from gdscope.models import mlp
        >>> net = mlp(3, 64, depth=3, parameterization="ntk", activation="tanh", seed=0)
        >>> x = np.eye(3)
        >>> same = ntk_infinite(x, depth=3, activation="tanh").ntk
        >>> bool(np.allclose(mlp_kernels(net, x).ntk, same, rtol=1e-12))
        True

    """
    activation = covered_activation(model)
    if activation is None:
        raise ValueError(
            "mlp_kernels covers a plain gdscope mlp drawn at random (residual=False, "
            "init='random', readout_init='default', an activation of "
            f"{sorted(ACTIVATIONS)}); got {type(model).__name__}: ntk_gram measures the "
            "empirical NTK of any model"
        )
    layers = list(model.layers)  # pyright: ignore[reportArgumentType]
    consts = [
        _spec_constants(
            layer.spec,
            layer.in_features,
            bias=layer.bias is not None,
            trains_weight=layer.weight.requires_grad,
            trains_bias=layer.bias is not None and layer.bias.requires_grad,
        )
        for layer in layers
    ]
    a, b = _as_inputs(x1, x2)
    if a.shape[1] != layers[0].in_features:
        raise ValueError(
            f"x1 has {a.shape[1]} features, the model takes {layers[0].in_features}; pass "
            "inputs of the model's width, one row each"
        )
    return layer_kernels(a, b, x2 is None, consts, activation, method, nodes)


def covered_activation(model: nn.Module) -> str | None:
    """Return the activation's name if :func:`mlp_kernels` covers ``model``, else ``None``."""
    if not isinstance(model, MLP) or model.residual or not model.random_init:
        return None
    if any(type(layer) is not ScaledLinear for layer in model.layers):
        return None  # a layer swapped in: no spec to read
    shown = repr(model.activation).replace("inplace=True", "")  # the same function
    return next((name for name in ACTIVATIONS if repr(get_activation(name)) == shown), None)


def _as_inputs(x1: Array | torch.Tensor, x2: Array | torch.Tensor | None) -> tuple[Array, Array]:
    a = _as_array("x1", x1)
    b = a if x2 is None else _as_array("x2", x2)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or 0 in a.shape + b.shape:
        raise ValueError(
            f"x1 and x2 must be non-empty (n, d) arrays with the same d, got shapes "
            f"{a.shape} and {b.shape}"
        )
    return a, b


def _as_array(name: str, x: Array | torch.Tensor) -> Array:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x if x.is_complex() else x.to(torch.float64)).numpy()
    raw = np.asarray(x)
    if raw.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must hold real numbers, got dtype {raw.dtype}; pass a float array"
        )
    out = raw.astype(np.float64)
    if out.size and not np.isfinite(out).all():
        bad = out[~np.isfinite(out)][0]
        raise ValueError(
            f"{name} must be finite, got an entry {bad!r}; drop or impute the non-finite inputs"
        )
    largest = float(np.abs(out).max()) if out.size else 0.0
    if out.ndim and largest > math.sqrt(np.finfo(np.float64).max / max(out.shape[-1], 1)):
        raise ValueError(
            f"{name} has an entry of magnitude {largest:.3g}: its squared norm overflows float64; "
            "scale the inputs down (bias-free ReLU kernels scale as the square)"
        )
    return out
