"""Helpers of tests/test_peers.py: neural-tangents 0.6.5 on current JAX, and torch layers in stax.

neural-tangents 0.6.5 (the last release, 2023-12) imports names that JAX has since moved or
removed. :func:`neural_tangents` patches exactly those, and only where they are missing, before
it imports the package:

* ``jax.core.Jaxpr``, ``JaxprEqn``, ``Literal``, ``Primitive``, ``Var``: moved to
  ``jax.extend.core``; set back on ``jax.core`` from there.
* ``jax.util`` (``safe_map``, ``safe_zip``): the module is gone; a stand-in with the two
  length-checked helpers NT imports.
* ``jax.interpreters.ad.zeros_like_p``: the primitive is gone; NT's structured-derivatives rule
  table keys a rule on it at import time. A fresh placeholder primitive takes its place; no
  traced program contains it, so its rule never fires.
* ``neural_tangents.experimental``: holds only NT's TensorFlow route (``empirical_ntk_fn_tf``),
  which imports ``tensorflow`` and ``tf2jax``. scripts/bootstrap.sh installs neural-tangents
  without those declared dependencies, so, when they are absent, an empty module stands in.

Of NT's empirical NTK implementations, ``JACOBIAN_CONTRACTION`` (1) and ``NTK_VECTOR_PRODUCTS``
(2) run on current JAX with these patches; ``STRUCTURED_DERIVATIVES`` (3), and so ``AUTO`` (0),
which tries all three, call JAX internals whose signatures have changed
(``jax.interpreters.ad.linearize``) and are not used.

The rest translates gdscope's and PyTorch's layers into stax layers with the same function:
``ScaledLinear`` ``y = α x Wᵀ + α_b b`` is NT's ``Dense(parameterization="ntk")``
``y = (W_std/√fan_in) x W + b_std b`` with ``W_std = α √fan_in`` and ``b_std = α_b``, and the
parameters are copied (``W`` transposed). Everything runs in float64 (``jax_enable_x64``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

Layer = tuple[Any, Callable[..., Any], Any]  # stax's (init_fn, apply_fn, kernel_fn)
Stax = tuple[Layer, Any]  # a stax layer and its parameters

_MOVED_TO_EXTEND_CORE = ("Jaxpr", "JaxprEqn", "Literal", "Primitive", "Var")


def neural_tangents() -> types.ModuleType:
    """Return the ``neural_tangents`` module, importing it on current JAX (see the module doc)."""
    if "neural_tangents" in sys.modules:
        return sys.modules["neural_tangents"]
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_enable_x64", True)
    _patch_jax_core(jax)
    _patch_jax_util()
    _patch_ad_zeros_like_p(jax)
    _stub_tensorflow_route()
    return importlib.import_module("neural_tangents")


def _patch_jax_core(jax: Any) -> None:
    import jax.core

    missing = [name for name in _MOVED_TO_EXTEND_CORE if not hasattr(jax.core, name)]
    if missing:
        import jax.extend.core

        for name in missing:
            setattr(jax.core, name, getattr(jax.extend.core, name))


def _patch_jax_util() -> None:
    if importlib.util.find_spec("jax.util") is not None:
        return

    def safe_map(f: Callable[..., Any], *args: Sequence[Any]) -> list[Any]:
        return [f(*xs) for xs in safe_zip(*args)]

    def safe_zip(*args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(zip(*args, strict=True))

    util = types.ModuleType("jax.util", "Stand-in for jax.util (removed from JAX): tests/_peers.py")
    util.safe_map = safe_map  # type: ignore[attr-defined]
    util.safe_zip = safe_zip  # type: ignore[attr-defined]
    sys.modules["jax.util"] = util


def _patch_ad_zeros_like_p(jax: Any) -> None:
    import jax.interpreters.ad as ad

    if not hasattr(ad, "zeros_like_p"):
        import jax.extend.core

        placeholder = jax.extend.core.Primitive("zeros_like_placeholder")
        ad.zeros_like_p = placeholder  # pyright: ignore[reportAttributeAccessIssue]


def _stub_tensorflow_route() -> None:
    if all(importlib.util.find_spec(name) for name in ("tensorflow", "tf2jax")):
        return
    sys.modules["neural_tangents.experimental"] = types.ModuleType(
        "neural_tangents.experimental", "NT's TensorFlow route, not installed: tests/_peers.py"
    )


# --- torch -> JAX -------------------------------------------------------------------------


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
