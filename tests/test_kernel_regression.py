"""kernel_regression and activation_rms probes against dense float64 oracles."""

from __future__ import annotations

import math

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope import losses
from gdscope.functional import clone_params, params_of
from gdscope.models import mlp
from gdscope.probes._reference import dense_jacobian
from gdscope.probes.coord_check import hidden_activations
from gdscope.probes.kernel_regression import kernel_solution
from gdscope.training import train
from gdscope.training.context import ProbeContext
from gdscope.training.scheduled import PROBES, activation_rms, kernel_regression


def _setup(out_dim=1, parameterization="ntk"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, out_dim, generator=gen, dtype=torch.float64)
    xt = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    yt = torch.randn(4, out_dim, generator=gen, dtype=torch.float64)
    net = mlp(
        3,
        16,
        depth=3,
        out_dim=out_dim,
        parameterization=parameterization,
        seed=1,
        dtype=torch.float64,
    )
    return net, (x, y), (xt, yt)


def _ctx(net, init, data, eval_data, memory=None):
    return ProbeContext(
        net,
        params_of(net),
        init,
        losses.mse,
        data,
        eval_data,
        5,
        memory={} if memory is None else memory,
    )


def _perturb(net, scale=0.05):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("out_dim", [1, 2])
def test_kernel_regression_matches_dense_oracle(out_dim):
    net, (x, y), (xt, yt) = _setup(out_dim)
    init = clone_params(params_of(net))
    j0 = dense_jacobian(net, x)
    jt = dense_jacobian(net, xt)
    with torch.no_grad():
        f0, f0t = net(x).reshape(-1), net(xt).reshape(-1)
    k0 = j0 @ j0.T
    r0 = y.reshape(-1) - f0
    alpha = torch.linalg.solve(k0, r0)
    kernel_pred = f0t + jt @ j0.T @ alpha
    min_norm = torch.linalg.norm(j0.T @ alpha)
    _perturb(net)
    moved = torch.linalg.norm(
        torch.cat([(p - init[n]).reshape(-1) for n, p in params_of(net).items()])
    )
    with torch.no_grad():
        net_t = net(xt).reshape(-1)
    out = kernel_regression(_ctx(net, init, (x, y), (xt, yt)))
    assert_close(out["kernel_min_norm"], float(min_norm), rtol=1e-8)
    assert_close(out["min_norm_ratio"], float(moved / min_norm), rtol=1e-8)
    gap = torch.sqrt(torch.mean((net_t - kernel_pred) ** 2))
    assert_close(out["kernel_regression_gap"], float(gap), rtol=1e-8)
    loss = 0.5 * torch.sum((kernel_pred - yt.reshape(-1)) ** 2) / xt.shape[0]
    assert_close(out["kernel_test_loss"], float(loss), rtol=1e-8)
    rad = math.sqrt(float(r0 @ alpha) * float(torch.trace(k0))) / x.shape[0]
    assert_close(out["kernel_rademacher"], rad, rtol=1e-8)


def test_kernel_prediction_interpolates_training_set():
    # at the training inputs, f0 + K0(X, X) K0^{-1} r0 = y
    net, (x, y), _ = _setup()
    init = clone_params(params_of(net))
    out = kernel_regression(_ctx(net, init, (x, y), (x, y)))
    assert out["kernel_test_loss"] < 1e-20
    assert out["min_norm_ratio"] == 0.0  # θ_t = θ_0


def test_linearized_gd_reaches_the_min_norm_interpolant():
    # a wide NTK net trained by GD to convergence: ratio ≈ 1 and the gap is small
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(5, 3, generator=gen, dtype=torch.float64), dim=1)
    y = torch.randn(5, 1, generator=gen, dtype=torch.float64)
    xt = torch.nn.functional.normalize(torch.randn(7, 3, generator=gen, dtype=torch.float64), dim=1)
    net = mlp(3, 2048, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    trace = train(
        net,
        opt,
        (x, y),
        1500,
        loss_fn=losses.mse,
        probes={"kernel_regression": 1500},
        eval_data=(xt, y[:0].new_zeros(7, 1)),
    )
    ratio = trace.records["min_norm_ratio"][1][-1]
    gap = trace.records["kernel_regression_gap"][1][-1]
    assert 0.95 < ratio < 1.05
    assert gap < 0.05


def test_coord_check_matches_manual_forward():
    net, (x, y), _ = _setup(parameterization="standard")
    init = clone_params(params_of(net))
    hidden, _ = hidden_activations(net, x)
    assert len(hidden) == 2  # depth 3: two hidden layers
    with torch.no_grad():
        h1 = torch.relu(net.layers[0](x))
        h2 = torch.relu(net.layers[1](h1))
    assert_close(hidden[0], h1, rtol=1e-5, atol=1e-8)
    assert_close(hidden[1], h2, rtol=1e-5, atol=1e-8)
    _perturb(net)
    m = activation_rms(_ctx(net, init, (x, y), None))
    with torch.no_grad():
        g1 = torch.relu(net.layers[0](x))
        g2 = torch.relu(net.layers[1](g1))
        f = net.layers[2](g2)
        f0 = torch.func.functional_call(net, init, (x,))
    assert_close(m["activation_rms/h1"], float(torch.sqrt(torch.mean(g1**2))), rtol=1e-12)
    assert_close(
        m["activation_delta_rms/h2"], float(torch.sqrt(torch.mean((g2 - h2) ** 2))), rtol=1e-12
    )
    assert_close(m["output_delta_rms"], float(torch.sqrt(torch.mean((f - f0) ** 2))), rtol=1e-12)
    assert_close(m["output_rms"], float(torch.sqrt(torch.mean(f**2))), rtol=1e-12)


def test_registered_and_rejects_non_mlp():
    assert PROBES["kernel_regression"].fn is kernel_regression
    assert PROBES["activation_rms"].fn is activation_rms
    with pytest.raises(ValueError, match="activation"):
        hidden_activations(torch.nn.Linear(3, 1), torch.zeros(2, 3))


def test_sphere_holdout_fallback_without_test_split():
    from gdscope.probes.kernel_regression import sphere_holdout

    net, (x, y), _ = _setup()
    x = torch.nn.functional.normalize(x, dim=1)
    init = clone_params(params_of(net))
    out = kernel_regression(_ctx(net, init, (x, y), None))
    assert "kernel_regression_gap" in out and "kernel_test_loss" not in out
    held = sphere_holdout(x)
    j0, jt = dense_jacobian(net, x), dense_jacobian(net, held)
    with torch.no_grad():
        r0 = y.reshape(-1) - net(x).reshape(-1)
    # θ_t = θ_0, so the gap is RMS of the kernel correction K_0(x*, X) K_0⁻¹ r0
    corr = jt @ j0.T @ torch.linalg.solve(j0 @ j0.T, r0)
    assert_close(out["kernel_regression_gap"], float(corr.pow(2).mean().sqrt()), rtol=1e-8)
    assert held.shape == (64, 3)
    assert_close(held.norm(dim=1), torch.ones(64, dtype=x.dtype), rtol=1e-5, atol=1e-8)
    assert sphere_holdout(2 * x) is None


def test_singular_gram_gives_nan_not_an_error():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)  # 40 points, 2·3+3+3+1 = 13 params
    y = torch.randn(40, 1, generator=gen, dtype=torch.float64)
    net = mlp(2, 3, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
    out = kernel_regression(_ctx(net, clone_params(params_of(net)), (x, y), (x, y)))
    assert math.isnan(out["min_norm_ratio"]) and "kernel_regression_gap" not in out


def test_a_repeated_input_with_its_target_keeps_the_interpolant_and_a_clash_has_none():
    """K_0 of a set with one input twice is singular; with equal targets the system is
    consistent and its least-norm solution predicts as the set without the copy does."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    x_test = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    net = mlp(3, 32, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
    init = clone_params(params_of(net))
    once = kernel_solution(net, init, x, y, x_test)
    twice = kernel_solution(net, init, torch.cat([x, x[:1]]), torch.cat([y, y[:1]]), x_test)
    assert once.test_prediction is not None and twice.test_prediction is not None
    assert_close(twice.test_prediction, once.test_prediction, rtol=1e-7, atol=1e-10)
    assert_close(twice.min_norm, once.min_norm, rtol=1e-7)
    clash = kernel_solution(net, init, torch.cat([x, x[:1]]), torch.cat([y, y[:1] + 1]), x_test)
    assert clash.test_prediction is None and math.isnan(clash.min_norm)


def test_near_repeated_inputs_warn_that_the_solve_is_ill_conditioned():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    net = mlp(3, 32, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
    init = clone_params(params_of(net))
    kernel_solution(net, init, x, y)  # well conditioned: no warning (warnings are errors here)
    near = torch.cat([x, x[:1] + 1e-7])
    with pytest.warns(RuntimeWarning, match="K_0 is ill-conditioned"):
        kernel_solution(net, init, near, torch.cat([y, y[:1]]))


def test_a_float32_model_is_solved_in_float64():
    """A float32 net's Gram was built in float32: 1.4 % off at κ(K₀) = 4e7 and no interpolant
    at 4e9; the float64 copy's solution is the reference."""
    net = mlp(4, 64, depth=2, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=g)
    x = x / x.norm(dim=1, keepdim=True)
    x[1] = (x[0] + 1e-4 * x[1]) / (x[0] + 1e-4 * x[1]).norm()  # a near-duplicate input
    y = torch.randn(8, 1, generator=g)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    ours = kernel_solution(net, params, x, y)
    wide = net.double()
    reference = kernel_solution(wide, {n: p.double() for n, p in params.items()}, x.double(), y)
    assert math.isfinite(ours.min_norm)
    assert abs(ours.min_norm - reference.min_norm) <= 1e-8 * reference.min_norm


def test_targets_are_read_as_the_square_loss_reads_them():
    net = mlp(4, 16, depth=2, seed=0, dtype=torch.float64)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    labels = torch.tensor([0, 1, 1, 0, 2, 1])
    as_values = kernel_solution(net, params, x, labels)  # one output: the labels' values
    assert as_values.min_norm == kernel_solution(net, params, x, labels.double()).min_norm
    wide = mlp(4, 16, depth=2, out_dim=3, seed=0, dtype=torch.float64)
    wide_params = {n: p.detach().clone() for n, p in wide.named_parameters()}
    one_hot = torch.nn.functional.one_hot(labels, 3).double()
    assert (
        kernel_solution(wide, wide_params, x, labels).min_norm
        == kernel_solution(wide, wide_params, x, one_hot).min_norm
    )
    for bad in (torch.randn(3, 6), torch.randn(18), torch.randn(6, 2)):
        with pytest.raises(ValueError, match=r"targets of shape .* do not match 3 outputs"):
            kernel_solution(wide, wide_params, x, bad.double())
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        kernel_solution(wide, wide_params, x, labels + 1)


def test_the_residual_probe_reads_integer_targets_of_one_output_as_values():
    """mse trains a one-output net on integer labels as values; the probe one-hot them (labels
    {0, 1}: a crash, 'Class values must be smaller than num_classes')."""
    net = mlp(4, 16, depth=2, seed=0, dtype=torch.float64)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=2, probes={"residual": 2})
    with torch.no_grad():
        expected = float(torch.linalg.vector_norm(net(x).reshape(-1) - y.double()))
    assert_close(trace.series("residual")[1][-1], expected, rtol=1e-12)
