"""The infinite-width NNGP/NTK: closed forms against quadrature, and finite-width NTKs of gdscope's
own MLP against the limit (the error must fall like width^(-1/2), as in neural-tangents'
Monte-Carlo tests)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope.models import mlp
from gdscope.probes.infinite_width import layer_constants, ntk_infinite
from gdscope.probes.ntk import ntk_gram

D_IN, N = 6, 8
WIDTHS = {2: (128, 256, 512, 1024, 2048, 4096), 3: (128, 256, 512, 1024)}
SEEDS = 16


def _x(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 5))


def _rel_max(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


CONFIGS = [
    {"parameterization": "ntk"},
    {"parameterization": "ntk", "bias": False, "init_scale": 1.5},
    {"parameterization": "standard", "width": 512},
    {"parameterization": "mup", "width": 256},
    {"parameterization": "ntk", "wrt": "unit"},
]


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_closed_forms_equal_the_kink_aware_quadrature(config, depth, activation):
    x1, x2 = _x(7, 0), _x(4, 1)
    for x_b in (None, x2):
        closed = ntk_infinite(x1, x_b, depth=depth, activation=activation, **config)
        quad = ntk_infinite(
            x1, x_b, depth=depth, activation=activation, method="polar", nodes=24, **config
        )
        assert _rel_max(quad.nngp, closed.nngp) <= 1e-10
        assert _rel_max(quad.ntk, closed.ntk) <= 1e-10


@pytest.mark.parametrize(
    ("activation", "polar_nodes", "tol"),
    [("tanh", 96, 1e-7), ("gelu", 40, 1e-10), ("softplus", 40, 1e-10)],  # tanh: poles at ±iπ/2
)
def test_gauss_hermite_and_polar_quadratures_agree_on_smooth_activations(
    activation, polar_nodes, tol
):
    x1, x2 = _x(5, 2), _x(3, 3)
    herm = ntk_infinite(x1, x2, depth=3, activation=activation, nodes=128)
    polar = ntk_infinite(x1, x2, depth=3, activation=activation, method="polar", nodes=polar_nodes)
    assert _rel_max(herm.nngp, polar.nngp) <= tol
    assert _rel_max(herm.ntk, polar.ntk) <= tol


def test_symmetric_call_equals_the_cross_call_and_is_symmetric():
    x = _x(6, 4)
    same = ntk_infinite(x, depth=3, activation="gelu")
    cross = ntk_infinite(x, x, depth=3, activation="gelu")
    assert _rel_max(same.ntk, cross.ntk) <= 1e-12
    assert np.array_equal(same.ntk, same.ntk.T) and np.array_equal(same.nngp, same.nngp.T)
    assert np.linalg.eigvalsh(same.ntk).min() > 0


def test_two_layer_relu_without_bias_is_the_arc_cosine_kernel():
    """Depth 2, ReLU, no bias, ``v_1 = w_1 = 2, v_2 = w_2 = 1``, written out (Cho & Saul 2009)."""
    x = _x(5, 5)
    dots = x @ x.T / x.shape[1]
    norms = np.sqrt(np.diag(dots))
    rho = np.clip(dots / np.outer(norms, norms), -1, 1)
    np.fill_diagonal(rho, 1.0)  # arccos would turn a rounding error of 1e-16 into θ ≈ 1e-8
    theta = np.arccos(rho)
    e = 2 * np.outer(norms, norms) * (np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi)
    expected_ntk = e + (np.pi - theta) / (2 * np.pi) * 2 * dots  # v_2 = w_2 = 1, v_1 = w_1 = 2
    got = ntk_infinite(x, depth=2, activation="relu", bias=False)
    assert _rel_max(got.nngp, e) <= 1e-13
    assert _rel_max(got.ntk, expected_ntk) <= 1e-13


def test_width_dependent_parameterizations_need_a_width_and_inputs_are_checked():
    x = _x(3, 6)
    with pytest.raises(ValueError, match="depend on the width"):
        ntk_infinite(x, depth=3, parameterization="standard")
    with pytest.raises(ValueError, match="method='closed' covers"):
        ntk_infinite(x, depth=2, activation="tanh", method="closed")
    with pytest.raises(ValueError, match="activation must be one of"):
        ntk_infinite(x, depth=2, activation="swish")
    with pytest.raises(ValueError, match="same d"):
        ntk_infinite(x, _x(2, 7)[:, :3], depth=2)
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        ntk_infinite(x, depth=0)
    with pytest.raises(ValueError, match="wrt must be one of"):
        ntk_infinite(x, depth=2, wrt="normalized")
    with pytest.raises(ValueError, match="nodes must be an int in"):
        ntk_infinite(x, depth=2, activation="tanh", nodes=500)
    hidden = layer_constants(3, 6, activation="relu")[1]
    assert_close(hidden, (2.0, 2.0, 0.01, 0.01), rtol=1e-14)  # v = w = 2
    hidden = layer_constants(3, 6, activation="relu", wrt="unit")[1]
    assert_close(hidden, (2.0, 2.0, 0.01, 0.01), rtol=1e-14)


@functools.cache
def _inputs() -> torch.Tensor:
    return torch.randn(N, D_IN, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@functools.cache
def _empirical(activation: str, depth: int) -> tuple[np.ndarray, ...]:
    """``(widths, seeds, N, N)`` empirical NTKs of the NTK-parameterized MLP at initialization."""
    x = _inputs()
    grams = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small products: threads cost more than they give
    try:
        for m in WIDTHS[depth]:
            nets = (
                mlp(D_IN, m, depth=depth, activation=activation, parameterization="ntk", seed=s,
                    dtype=torch.float64)
                for s in range(SEEDS)
            )  # fmt: skip
            grams.append([ntk_gram(net, x).numpy() for net in nets])
    finally:
        torch.set_num_threads(threads)
    return tuple(np.array(g) for g in grams)


def _errors_and_slope(activation: str, depth: int, **convention) -> tuple[np.ndarray, float]:
    """RMS over seeds of ``‖K_m − Θ‖_F/‖Θ‖_F`` per width, and its log-log slope in the width."""
    theta = ntk_infinite(_inputs(), depth=depth, activation=activation, **convention).ntk
    errors = np.array(
        [
            np.sqrt(np.mean([(np.linalg.norm(k - theta) / np.linalg.norm(theta)) ** 2 for k in g]))
            for g in _empirical(activation, depth)
        ]
    )
    slope = float(np.polyfit(np.log(WIDTHS[depth]), np.log(errors), 1)[0])
    return errors, slope


@pytest.mark.parametrize(
    ("activation", "depth"), [("tanh", 2), ("gelu", 2), ("relu", 2), ("tanh", 3)]
)
def test_finite_width_ntk_converges_to_the_limit_like_one_over_root_width(activation, depth):
    errors, slope = _errors_and_slope(activation, depth)
    assert abs(slope + 0.5) <= 0.12, (errors, slope)
    assert errors[-1] <= 0.08, errors


def test_relu_model_matches_arora_and_stax_not_jacot():
    """gdscope's NTK-parameterized ReLU MLP stores W ~ N(0, 1) and multiplies by √2/√n (the ntk
    convention, gdscope.models.parameterization): v = w = 2, so its stored-weight kernel is the
    unit-weight one, Arora et al.'s (neural-tangents' W_std = √2), and the empirical NTK converges
    to it. Jacot et al.'s kernel without the gain (v = w = 1) stays a fixed distance away."""
    for convention in ({}, {"wrt": "unit"}):
        errors, slope = _errors_and_slope("relu", 2, **convention)
        assert abs(slope + 0.5) <= 0.12 and errors[-1] <= 0.08, (convention, errors, slope)
    wrong, wrong_slope = _errors_and_slope("relu", 2, gain=1.0)
    assert wrong_slope >= -0.15 and wrong[-1] >= 0.15, (wrong, wrong_slope)


@pytest.mark.parametrize("scale", [1e80, 1e-80, 1e-150])
def test_the_relu_kernels_scale_without_overflow_or_underflow(scale):
    """Bias-free ReLU kernels are 2-homogeneous: ``K(c x) = c² K(x)`` at any representable ``c``
    (``√(k11·k22)`` taken plainly overflows at 1e80 and underflows at 1e-150)."""
    x = np.random.default_rng(0).normal(size=(6, 5))
    plain = ntk_infinite(x, depth=3, bias=False)
    scaled = ntk_infinite(scale * x, depth=3, bias=False)
    for got, want in zip(scaled, plain, strict=True):
        assert np.allclose(got / scale**2, want, rtol=1e-12, atol=0), (got / scale**2, want)


def test_an_unresolved_quadrature_warns_and_a_resolved_one_does_not():
    """tanh at pre-activation variance ≈ 17: 96 Gauss–Hermite nodes are off by percents; auto
    goes graded and does not warn."""
    x = np.random.default_rng(1).normal(size=(4, 6)) * 4.0  # ‖x‖²/d ≈ 16
    with pytest.warns(RuntimeWarning, match="hermite rule's kernels are off by"):
        ntk_infinite(x, depth=3, activation="tanh", method="hermite")
    ntk_infinite(x, depth=3, activation="tanh")  # graded: no warning (warnings are errors here)
    ntk_infinite(x, depth=3, activation="relu")  # closed form: never
    ntk_infinite(x / 4.0, depth=3, activation="tanh", method="polar")
    ntk_infinite(x / 4.0, depth=3, activation="gelu")


def test_auto_takes_the_graded_rule_where_hermite_is_unresolved():
    """tanh at pre-activation variances up to 6.8: Hermite is off by 6e-3 at 96 nodes."""
    x = np.random.default_rng(2).normal(size=(5, 6))
    x *= np.sqrt(3.0 / (x**2).mean())
    auto = ntk_infinite(x, depth=3, activation="tanh")  # no warning (warnings are errors here)
    graded = ntk_infinite(x, depth=3, activation="tanh", method="graded")
    assert np.array_equal(auto.ntk, graded.ntk) and np.array_equal(auto.nngp, graded.nngp)
    with pytest.warns(RuntimeWarning, match="hermite rule's kernels are off by"):
        ntk_infinite(x, depth=3, activation="tanh", method="hermite")
    small = ntk_infinite(x / 3.0, depth=3, activation="tanh")  # resolved: Hermite is kept
    hermite = ntk_infinite(x / 3.0, depth=3, activation="tanh", method="hermite")
    assert np.array_equal(small.ntk, hermite.ntk)
