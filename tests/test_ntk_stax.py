"""gdscope's analytic NNGP/NTK against neural-tangents' ``stax`` kernels, in float64.

The ``ntk`` convention (stated in gdscope.models.parameterization) is stax's
``Dense(W_std=a, b_std=β, parameterization="ntk")`` layer by layer, with ``a = √2`` for ReLU on
the input and hidden layers, ``a = 1`` on the readout and ``β = 0.1``. Under it

* :func:`gdscope.probes.ntk_infinite` equals stax's ``kernel_fn`` to 1e-10 (ReLU, identity and
  GELU in closed form on both sides, at every input scale to 1e-12; tanh two 192-node
  quadratures);
* the finite-width empirical NTK of gdscope's ``ntk`` MLP converges to stax's kernel like
  ``width^(-1/2)`` (for ReLU, before the convention's revision 2, the error stayed at 0.29–0.33).

neural-tangents 0.6.5 on current JAX goes through tests/_peers.py, as in tests/test_peers.py.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import _ntk_limits as limits
import _peers as peers
import gdscope as gs

pytest.importorskip("jax")
if importlib.util.find_spec("neural_tangents") is None:  # imported patched, in _peers
    pytest.skip("neural-tangents is not installed (gdscope[peers])", allow_module_level=True)

NTK_RTOL = 1e-10


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


STAX_ACTIVATIONS = ("relu", "gelu", "tanh", "identity")
QUADRATURE_NODES = 192  # tanh: gdscope's Gauss–Hermite and stax's ElementwiseNumerical


def _sphere(n: int, seed: int) -> Tensor:
    """``n`` points with ``‖x‖² = d`` (pre-activation variance 1 + β², as in NTK experiments).

    Quadratures of tanh's kernels lose accuracy as the variance grows (a 1e-4 gap in the NTK at
    96 nodes, 2e-9 at 192, for Gaussian inputs with ‖x‖²/d up to 3.7; 1e-14 here).
    """
    x = _randn(n, 5, seed=seed)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(5)


def _stax_kernel_fn(depth: int, activation: str, bias: bool) -> Any:
    stax = peers.neural_tangents().stax
    import jax.numpy as jnp

    gain = math.sqrt(2.0) if activation == "relu" else 1.0
    b_std = 0.1 if bias else None
    layers = []
    for _ in range(depth - 1):
        if activation == "tanh":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its notice that `deg` sets the error
                act = stax.ElementwiseNumerical(
                    jnp.tanh, QUADRATURE_NODES, df=lambda z: 1 - jnp.tanh(z) ** 2
                )
        else:
            act = {"relu": stax.Relu, "gelu": stax.Gelu, "identity": stax.Identity}[activation]()
        layers += [stax.Dense(1, W_std=gain, b_std=b_std, parameterization="ntk"), act]
    layers.append(stax.Dense(1, W_std=1.0, b_std=b_std, parameterization="ntk"))
    return stax.serial(*layers)[2]


def _stax_kernels(kernel_fn: Any, x1: Tensor, x2: Tensor | None) -> tuple[np.ndarray, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX's notices on NT's internals (deprecations)
        out = kernel_fn(peers.to_jax(x1), None if x2 is None else peers.to_jax(x2), ("nngp", "ntk"))
    return tuple(np.array(k, dtype=np.float64) for k in out)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", STAX_ACTIVATIONS)
def test_analytic_kernels_equal_neural_tangents_stax(activation, bias):
    x1, x2 = _sphere(6, seed=50), _sphere(3, seed=51)
    depths = (1, 3) if activation == "identity" else (3,)  # depth 1: the readout alone
    for depth in depths:  # depth 3: input, hidden and readout layers
        kernel_fn = _stax_kernel_fn(depth, activation, bias)
        for x_b in (None, x2):
            ours = gs.probes.ntk_infinite(
                x1, x_b, depth=depth, activation=activation, bias=bias, nodes=QUADRATURE_NODES
            )
            theirs = _stax_kernels(kernel_fn, x1, x_b)
            for name, a, b in zip(("nngp", "ntk"), ours, theirs, strict=True):
                err = float(np.abs(a - b).max() / np.abs(b).max())
                assert err < NTK_RTOL, (depth, name, x_b is None, err)
    # and it can fail: the kernel of revision 1 (the ReLU gain in the init std) is 0.3 away
    if activation == "relu":
        kernel_fn = _stax_kernel_fn(3, "relu", bias)
        theirs = _stax_kernels(kernel_fn, x1, None)[1]
        rev1 = gs.probes.ntk_infinite(x1, depth=3, bias=bias, parameterization=limits.REV1).ntk
        assert float(np.abs(rev1 - theirs).max() / np.abs(theirs).max()) > 0.1


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_closed_form_kernels_equal_stax_at_every_input_scale_and_depth(activation):
    """GELU went through Gauss–Hermite at the default 96 nodes: 1.0e-9 off stax at ‖x‖²/d = 4
    (192 nodes: 2.4e-9 at 9); now Tsuchida et al.'s closed form, as stax's."""
    x1, x2 = _sphere(5, seed=52), _sphere(3, seed=53)
    for scale in (0.5, 2.0, 3.0, 10.0):
        for depth in (2, 4):
            theirs = _stax_kernels(_stax_kernel_fn(depth, activation, True), scale * x1, scale * x2)
            ours = gs.probes.ntk_infinite(
                scale * x1, scale * x2, depth=depth, activation=activation
            )
            for name, a, b in zip(("nngp", "ntk"), ours, theirs, strict=True):
                err = float(np.abs(a - b).max() / np.abs(b).max())
                assert err < 1e-12, (scale, depth, name, err)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_finite_width_ntk_converges_to_the_neural_tangents_kernel(activation):
    # the same draws as tests/test_ntk_convention.py's comparison with gdscope's own kernel;
    # before the ntk convention's revision 2, ReLU's error stayed at 0.29–0.33 (slope −0.05)
    theta = _stax_kernels(_stax_kernel_fn(limits.DEPTH, activation, True), limits.inputs(), None)
    errors = limits.empirical_errors(activation, theta[1])
    slope = limits.slope(errors)
    assert limits.SLOPE_BAND[0] <= slope <= limits.SLOPE_BAND[1], (errors, slope)
    assert errors[-1] < 0.15, errors
