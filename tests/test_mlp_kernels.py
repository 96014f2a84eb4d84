"""``mlp_kernels``: the infinite-width kernels of the distribution a given ``mlp`` was drawn from,
and kernel regression with them beside the trained net (B4's infinite-width reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _helpers import assert_close
from gdscope import losses
from gdscope.functional import clone_params, params_of
from gdscope.models import mlp
from gdscope.probes import mlp_kernels, ntk_gram, ntk_infinite
from gdscope.probes.infinite_width import covered_activation
from gdscope.probes.kernel_regression import kernel_solution
from gdscope.training.context import ProbeContext
from gdscope.training.scheduled import kernel_regression

ACTIVATIONS = ["relu", "tanh", "gelu", "softplus", "identity"]


def _inputs(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=1)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("parameterization", ["ntk", "standard", "mup", "meanfield"])
@pytest.mark.parametrize("bias", [True, False])
def test_a_models_kernels_are_ntk_infinite_at_its_width(activation, parameterization, bias):
    """Read off each layer's spec, the constants are the parameterization's at the model's width."""
    options = dict(activation=activation, parameterization=parameterization, bias=bias)
    options.update(init_scale=0.8, base_width=16)
    net = mlp(4, 48, depth=4, out_dim=2, seed=0, **options)
    x1, x2 = _inputs(5, 0), _inputs(3, 1)
    theirs = ntk_infinite(x1, x2, depth=4, width=48, **options)
    ours = mlp_kernels(net, x1, x2)
    assert_close(ours.ntk, theirs.ntk, rtol=1e-12, what="ntk")
    assert_close(ours.nngp, theirs.nngp, rtol=1e-12, what="nngp")
    same = mlp_kernels(net, x1)
    assert_close(same.ntk, ntk_infinite(x1, depth=4, width=48, **options).ntk, rtol=1e-12)


@pytest.mark.parametrize(("trained", "parameterization"), [("all", "ntk"), ("hidden", "standard")])
def test_the_empirical_ntk_of_wide_draws_converges_to_it_at_rate_one_half(
    trained, parameterization
):
    """Frozen input and readout layers add no term: the hidden layer's NTK alone is the limit."""
    x = _inputs(6, 2)
    errors = []
    for width in (64, 4096):
        per_seed = []
        for seed in range(3):
            net = mlp(
                4,
                width,
                depth=3,
                trained=trained,
                parameterization=parameterization,
                seed=seed,
                dtype=torch.float64,
            )
            theta = torch.from_numpy(mlp_kernels(net, x).ntk)
            gap = torch.linalg.matrix_norm(ntk_gram(net, x) - theta) / torch.linalg.matrix_norm(
                theta
            )
            per_seed.append(float(gap))
        errors.append(float(np.mean(per_seed)))
    slope = math.log(errors[1] / errors[0]) / math.log(4096 / 64)
    assert -0.8 < slope < -0.3, (errors, slope)
    assert errors[1] < 0.1


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp(4, 8, depth=4, residual=True),
        lambda: mlp(4, 8, depth=3, init="identical"),
        lambda: mlp(4, 8, depth=3, readout_init="zero"),
        lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)),
    ],
    ids=["residual", "identical", "zero-readout", "sequential"],
)
def test_models_it_does_not_cover_are_refused_by_name(make):
    model = make()
    assert covered_activation(model) is None
    with pytest.raises(ValueError, match="mlp_kernels covers a plain gdscope mlp"):
        mlp_kernels(model, _inputs(3, 0))


def test_a_swapped_activation_is_not_taken_for_the_factorys():
    net = mlp(4, 8, depth=3, activation="gelu")
    assert covered_activation(net) == "gelu"
    net.activation = nn.GELU(approximate="tanh")
    assert covered_activation(net) is None
    assert covered_activation(mlp(4, 8, depth=1, init="identical")) == "relu"  # a no-op there
    in_place = mlp(4, 8, depth=3)
    in_place.activation = nn.ReLU(inplace=True)
    assert covered_activation(in_place) == "relu"
    swapped = mlp(4, 8, depth=3)
    swapped.layers[1] = nn.Linear(8, 8)
    assert covered_activation(swapped) is None


def _oracle(net: nn.Module, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    """``f_0(X_*) + (Θ_* ⊗ I)(Θ ⊗ I)⁻¹ r_0`` by a dense numpy solve, output by output."""
    depth = len(net.layers)  # pyright: ignore[reportArgumentType]
    theta = ntk_infinite(x, depth=depth).ntk
    cross = ntk_infinite(xt, x, depth=depth).ntk
    with torch.no_grad():
        r0 = (y - net(x)).numpy()
        f0t = net(xt).numpy()
    return torch.from_numpy(f0t + cross @ np.linalg.solve(theta, r0)).reshape(-1)


def test_kernel_regression_with_the_infinite_width_ntk_matches_a_dense_solve():
    gen = torch.Generator().manual_seed(0)
    x, xt = _inputs(7, 3), _inputs(5, 4)
    y = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    net = mlp(4, 32, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=torch.float64)
    init = clone_params(params_of(net))
    solution = kernel_solution(net, init, x, y, xt)
    assert solution.infinite_prediction is not None and solution.test_prediction is not None
    expected = _oracle(net, x, y, xt)
    assert_close(solution.infinite_prediction, expected, rtol=1e-10, what="f^∞")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        moved = net(xt).reshape(-1)
    ctx = ProbeContext(net, params_of(net), init, losses.mse, (x, y), (xt, y[:5]), 3, memory={})
    out = kernel_regression(ctx)
    rms = lambda a: float(a.pow(2).mean().sqrt())  # noqa: E731
    assert_close(out["kernel_infinite_gap"], rms(moved - expected), rtol=1e-9)
    assert_close(out["kernel_to_infinite_gap"], rms(solution.test_prediction - expected), rtol=1e-9)


def test_the_finite_width_regression_approaches_the_infinite_one_and_others_get_none():
    gen = torch.Generator().manual_seed(1)
    x, xt = _inputs(8, 5), _inputs(6, 6)
    y = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    gaps = []
    for width in (32, 2048):
        net = mlp(4, width, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
        sol = kernel_solution(net, clone_params(params_of(net)), x, y, xt)
        assert sol.test_prediction is not None and sol.infinite_prediction is not None
        gaps.append(float((sol.test_prediction - sol.infinite_prediction).pow(2).mean().sqrt()))
    assert gaps[1] < 0.35 * gaps[0]  # ~ width^(-1/2): 8× at 64× the width
    stack = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    sol = kernel_solution(stack, clone_params(params_of(stack)), x, y, xt)
    assert sol.test_prediction is not None and sol.infinite_prediction is None
    ctx = ProbeContext(
        stack, params_of(stack), clone_params(params_of(stack)), losses.mse, (x, y), None, 0
    )
    assert "kernel_infinite_gap" not in kernel_regression(ctx)


def test_the_relu_diagonal_is_the_exact_recursion():
    """At ρ = 1 the arc-cosine kernel's diagonal is ``E[relu(u)²] = K/2`` and ``E[relu'(u)²] = 1/2``
    exactly; neural-tangents' stax rounds there (2e-8 off on this net, its off-diagonals equal
    gdscope's to 9e-16), gdscope's must not."""
    d = 5
    x = torch.randn(8, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.nn.functional.normalize(x, dim=1) * math.sqrt(d)  # ‖x‖²/d = 1
    net = mlp(d, 64, depth=3, parameterization="ntk", seed=1, dtype=torch.float64)
    b2 = (net.layers[0].spec.bias_multiplier * net.layers[0].spec.bias_std) ** 2
    k1 = 2.0 + b2  # W_std² = 2 (ReLU's gain) in the hidden layers, 1 at the readout
    k2 = k1 + b2
    theta = k2 / 2 + b2 + (k2 + k1) / 2  # readout: K/2 + b², plus Θ₂·1·½ with Θ₂ = K₂ + Θ₁
    assert np.allclose(np.diag(mlp_kernels(net, x).ntk), theta, rtol=1e-14, atol=0)
