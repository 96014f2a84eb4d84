"""Helpers of tests/test_peers.py: neural-tangents 0.6.5 on current JAX, and torch layers in stax.

neural-tangents 0.6.5 (the last release, 2023-12) imports names that JAX has since moved or
removed; :func:`neural_tangents` imports it through the patches of ``benchmarks/_peers_compat.py``
(which also make its ``STRUCTURED_DERIVATIVES`` implementation run), in float64 on the CPU.

The rest translates gdscope's and PyTorch's layers into stax layers with the same function:
``ScaledLinear`` ``y = α x Wᵀ + α_b b`` is NT's ``Dense(parameterization="ntk")``
``y = (W_std/√fan_in) x W + b_std b`` with ``W_std = α √fan_in`` and ``b_std = α_b``, and the
parameters are copied (``W`` transposed). Everything runs in float64 (``jax_enable_x64``).
"""

from __future__ import annotations

import math
import sys
import types
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from _helpers import load_benchmark_module

Layer = tuple[Any, Callable[..., Any], Any]  # stax's (init_fn, apply_fn, kernel_fn)
Stax = tuple[Layer, Any]  # a stax layer and its parameters


def neural_tangents() -> types.ModuleType:
    """Return the ``neural_tangents`` module on current JAX, in float64 on the CPU.

    The patches it needs are those of ``benchmarks/_peers_compat.py`` (one copy for the tests
    and the peers benchmark).
    """
    if "neural_tangents" in sys.modules:
        return sys.modules["neural_tangents"]
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_enable_x64", True)
    return load_benchmark_module("_peers_compat").neural_tangents()


def to_jax(t: Tensor) -> Any:
    """Return a float64 JAX array with the values of ``t``."""
    import jax.numpy as jnp

    return jnp.asarray(t.detach().to("cpu", torch.float64).numpy())


def to_torch(a: Any) -> Tensor:
    """Return a float64 torch tensor with the values of the JAX array ``a``."""
    return torch.from_numpy(np.array(a, dtype=np.float64))


def _weight_and_bias(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    weight, bias = layer.weight, getattr(layer, "bias", None)
    assert isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor))
    return weight, bias


def _multipliers(layer: nn.Module) -> tuple[float, float]:
    """``(α, α_b)`` of a gdscope ScaledLinear/ScaledConv2d (1, 1 for torch's layers)."""
    return float(getattr(layer, "multiplier", 1.0)), float(getattr(layer, "bias_multiplier", 1.0))


def dense(layer: nn.Module, scale: float = 1.0) -> Stax:
    """Return ``scale · layer`` (an ``nn.Linear`` or ``ScaledLinear``) as a stax ``Dense``."""
    stax = neural_tangents().stax
    alpha, alpha_b = _multipliers(layer)
    weight, bias = _weight_and_bias(layer)
    out_dim, fan_in = weight.shape
    stax_layer = stax.Dense(
        out_dim,
        W_std=scale * alpha * math.sqrt(fan_in),
        b_std=None if bias is None else scale * alpha_b,
        parameterization="ntk",
    )
    params = (to_jax(weight.T), None if bias is None else to_jax(bias)[None, :])
    return stax_layer, params


def conv(layer: nn.Module) -> Stax:
    """Return a stride-1 same-padded ``nn.Conv2d`` or ``ScaledConv2d`` as a stax ``Conv`` (NCHW)."""
    stax = neural_tangents().stax
    alpha, alpha_b = _multipliers(layer)
    weight, bias = _weight_and_bias(layer)
    out_ch, in_ch, kh, kw = weight.shape
    stax_layer = stax.Conv(
        out_ch,
        (kh, kw),
        padding="SAME",
        W_std=alpha * math.sqrt(in_ch * kh * kw),
        b_std=None if bias is None else alpha_b,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        parameterization="ntk",
    )
    params = (to_jax(weight), None if bias is None else to_jax(bias).reshape(1, -1, 1, 1))
    return stax_layer, params


def layer_norm(norm: nn.LayerNorm) -> Stax:
    """Return ``nn.LayerNorm(d)`` over the last axis: stax's ``LayerNorm`` and an affine map.

    stax's ``LayerNorm`` has no parameters; the elementwise affine ``γ ⊙ h + β`` that torch's
    carries is a layer of its own here (no kernel_fn: only the finite-width function is used).
    """
    stax = neural_tangents().stax
    if len(norm.normalized_shape) != 1:
        raise ValueError(f"only a LayerNorm over the last axis, got {norm.normalized_shape}")
    layers: list[Layer] = [stax.LayerNorm(axis=-1, eps=norm.eps)]
    params: list[Any] = [()]
    if norm.elementwise_affine:

        def apply_fn(p: Any, x: Any, **_kwargs: Any) -> Any:
            gamma, beta = p
            return x * gamma + (0.0 if beta is None else beta)

        def init_fn(_rng: Any, shape: Any) -> Any:
            raise NotImplementedError("parameters are copied from torch, not drawn")

        layers.append((init_fn, apply_fn, None))
        bias = None if norm.bias is None else to_jax(norm.bias)
        params.append((to_jax(norm.weight), bias))
    return serial(*zip(layers, params, strict=True))


def serial(*layers: Stax) -> Stax:
    """Compose stax layers with their parameters, as ``stax.serial``."""
    stax = neural_tangents().stax
    return stax.serial(*(layer for layer, _ in layers)), tuple(p for _, p in layers)


def elementwise(name: str) -> Stax:
    """Return a parameter-free stax activation: ``relu``, ``tanh`` or ``identity``."""
    stax = neural_tangents().stax
    import jax.numpy as jnp

    layer = {
        "relu": stax.Relu,
        "tanh": lambda: stax.Elementwise(jnp.tanh),
        "identity": stax.Identity,
    }[name]()
    return layer, ()


def residual(branch: Stax) -> Stax:
    """Return ``h ↦ h + branch(h)`` (stax's ``FanOut``, ``parallel`` and ``FanInSum``)."""
    stax = neural_tangents().stax
    layer = stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), branch[0]), stax.FanInSum())
    return layer, ((), ((), branch[1]), ())


# --- kernels ------------------------------------------------------------------------------


def nt_ntk(
    apply_fn: Callable[..., Any],
    params: Any,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    trace: bool = False,
    implementation: int = 1,
) -> Tensor:
    """Return neural-tangents' empirical NTK in gdscope's layout, as float64 torch.

    Full: ``(n1·k, n2·k)`` with row ``i·k + a`` (NT's ``(n1, n2, k, k)`` with ``trace_axes=()``,
    reordered). ``trace=True``: gdscope's class trace ``Σ_a K[(i, a), (j, a)]``, ``(n1, n2)``;
    NT's ``trace_axes=(-1,)`` is the mean over the ``k`` outputs, so it is multiplied by ``k``.

    ``implementation=2`` (NTK-vector products): NT's ``_std_basis`` asks ``jnp.size`` of a
    ``jax.ShapeDtypeStruct``, which JAX deprecates with a warning (an error in some future
    release); that one warning is ignored here.
    """
    import jax

    nt = neural_tangents()
    kernel_fn = nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,) if trace else (),
        vmap_axes=0,
        implementation=implementation,
    )
    kernel_fn = jax.jit(kernel_fn)  # one compilation instead of one per primitive: 2-4x faster
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "size requires ndarray or scalar arguments", DeprecationWarning
        )
        gram = kernel_fn(to_jax(x1), None if x2 is None else to_jax(x2), params)
    gram = to_torch(gram)
    if trace:
        k = apply_fn(params, to_jax(x1[:1])).shape[-1]
        return k * gram
    n1, n2, k, _ = gram.shape
    return gram.permute(0, 2, 1, 3).reshape(n1 * k, n2 * k)


def rel_fro(a: Tensor, b: Tensor) -> float:
    """``‖a − b‖_F / ‖b‖_F`` in float64."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))


def rel_max(a: Iterable[float], b: Iterable[float]) -> float:
    """Largest ``|a_i − b_i| / |b_i|``."""
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))
