"""Second review of the infinite-width probes: a repeated training input (bitwise-equal kernel
rows, the least-norm route of the regression), inputs whose norms differ by more than 1e154,
``du_bound`` under another loss, parameter dicts the model does not match, and the inputs
``infinite_width_gd`` must read or refuse."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope import losses
from gdscope.models import mlp
from gdscope.probes import linearization_gap, linearized_prediction, mlp_kernels, ntk_infinite
from gdscope.probes._gaussian_expectations import expectation
from gdscope.probes.infinite_dynamics import InfiniteWidthGD, infinite_width_gd
from gdscope.probes.kernel_regression import _solve, kernel_solution

F64 = torch.float64


@pytest.mark.parametrize(
    ("activation", "method"),
    [("tanh", "hermite"), ("softplus", "hermite"), ("tanh", "polar"), ("softplus", "graded")],
)
def test_swapping_the_two_variances_gives_bitwise_equal_expectations(activation, method):
    """``E`` is symmetric in ``(k11, k22)``; the Hermite rule's rounding was not (2.4e-10)."""
    e = expectation(activation, method, 48)
    a, c, b = np.array([1.3, 0.2, 5.0]), np.array([0.4, -0.1, 1.0]), np.array([0.7, 3.0, 0.5])
    for got, swapped in zip(e(a, c, b), e(b, c, a), strict=True):
        assert np.array_equal(got, swapped)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_a_repeated_input_predicts_as_one_copy_with_the_infinite_width_ntk(activation):
    """Rows 0 and 5 of ``Θ`` were 2e-9 apart (κ ≈ 6e16): Cholesky succeeded and ``f^∞`` was
    off by 0.10 on a scale of 1.03 (tanh) from the same problem with one copy."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=F64)
    y = torch.randn(6, 2, generator=gen, dtype=F64)
    x[5], y[5] = x[0], y[0]
    xt = torch.randn(5, 4, generator=gen, dtype=F64)
    net = mlp(4, 16, depth=3, out_dim=2, activation=activation, parameterization="ntk", seed=0)
    net = net.double()
    p0 = {name: v.detach().clone() for name, v in net.named_parameters()}
    theta = mlp_kernels(net, x).ntk
    assert np.array_equal(theta[0], theta[5]) and np.array_equal(theta[:, 0], theta[:, 5])
    twice = kernel_solution(net, p0, x, y, xt)  # no ill-conditioning warning: it is singular
    once = kernel_solution(net, p0, x[:5], y[:5], xt)
    assert twice.infinite_prediction is not None and once.infinite_prediction is not None
    assert_close(twice.infinite_prediction, once.infinite_prediction, rtol=1e-9, atol=1e-12)


def test_a_gram_singular_to_rounding_takes_the_least_norm_route():
    """Θ of an input given twice is exactly singular, yet Cholesky succeeds on a pivot of
    rounding: its solve put ``1e16``-sized weights of opposite signs on the two copies."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=F64)
    x[5] = x[0]
    gram = torch.from_numpy(ntk_infinite(x, depth=3, activation="tanh").ntk)
    assert int(torch.linalg.cholesky_ex(gram).info) == 0  # the case: Cholesky does not fail
    r0 = torch.randn(6, generator=gen, dtype=F64)
    r0[5] = r0[0]  # equal targets at the equal inputs: consistent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alpha = _solve(gram, r0)
    assert not caught, [str(w.message) for w in caught]
    assert alpha is not None
    assert_close(alpha, torch.linalg.pinv(gram, hermitian=True) @ r0, rtol=1e-8, atol=1e-10)


def test_the_ill_conditioning_warning_names_the_kernel_solved():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=gen, dtype=F64)
    y = torch.randn(5, 1, generator=gen, dtype=F64)
    xt = torch.randn(3, 4, generator=gen, dtype=F64)
    net = mlp(4, 16, depth=3, activation="tanh", parameterization="ntk", seed=0, dtype=F64)
    p0 = {name: v.detach().clone() for name, v in net.named_parameters()}
    near = torch.cat([x, x[:1] + 1e-6])  # κ ≈ 1e13 for both Grams
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel_solution(net, p0, near, torch.cat([y, y[:1]]), xt)
    messages = sorted(str(w.message).split(" is ill-conditioned")[0] for w in caught)
    assert messages == [
        "kernel regression: K_0",
        "kernel regression: the infinite-width NTK Θ",
    ], messages


@pytest.mark.parametrize("scale", [1e80, 1e100, 1e150])
def test_inputs_whose_norms_differ_by_more_than_1e154_keep_their_cross_kernel(scale):
    """A bias-free ReLU net's kernels are homogeneous: ``K(sa, b/s) = K(a, b)``. At ``s = 1e100``
    the common power-of-two scale underflowed ``k22`` and ``Θ(a, b)`` read 0.088 for 0.893."""
    u = np.array([[1.0, 0.0], [1.0, 1.0]]) / np.array([[1.0], [2**0.5]])
    base = ntk_infinite(u, depth=3, bias=False)
    got = ntk_infinite(u * np.array([[scale], [1 / scale]]), depth=3, bias=False)
    for name in ("nngp", "ntk"):
        assert_close(getattr(got, name)[0, 1], getattr(base, name)[0, 1], rtol=1e-12, what=name)


def test_du_bound_is_nan_under_another_loss_than_mse():
    """The rate is derived for GD on mse: under mae the loss sat at 0.034 above a bound of 8e-5."""
    x, y = gs.data.sphere(n=6, d=3, seed=0, dtype=F64)
    net = gs.models.two_layer(3, 64, seed=1, dtype=F64)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    trace = gs.train(net, opt, (x, y), 3, loss_fn=losses.mae, probes={"du_bound": 1})
    for metric in ("du_bound", "du_step", "du_rate"):
        assert np.isnan(trace.series(metric)[1]).all(), metric


def _moved_net():
    net = mlp(3, 16, depth=3, parameterization="ntk", seed=0, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    pt = {k: v + 0.3 * torch.randn(v.shape, generator=gen, dtype=F64) for k, v in p0.items()}
    return net, p0, pt, torch.randn(8, 3, generator=gen, dtype=F64)


@pytest.mark.parametrize("rename", ["all", "weights"])
def test_linearization_refuses_names_the_model_lacks(rename):
    """A name the model lacks was set as a stray attribute: the gap read 0.0 (for 0.08)."""
    net, p0, pt, x = _moved_net()
    old = "layers.0.weight"
    bad = {"all": lambda k: k + "_", "weights": lambda k: k.replace("weight", "W")}[rename]
    key = bad(old)
    rekey = lambda d: {bad(k): v for k, v in d.items()}  # noqa: E731
    for fn in (linearization_gap, linearized_prediction):
        with pytest.raises(ValueError, match=f"params0 has '{key}', which is not") as err:
            fn(net, rekey(p0), rekey(pt), x)
        assert "\n" not in str(err.value) and f"'{old}'" in str(err.value)
    with pytest.raises(ValueError, match=f"params_t has '{key}'"):
        linearization_gap(net, p0, {**pt, key: pt[old]}, x)


def test_linearization_refuses_a_tensor_of_another_shape():
    """Was a raw RuntimeError from inside the layer."""
    net, p0, pt, x = _moved_net()
    wrong = {**pt, "layers.1.weight": torch.zeros(2, dtype=F64)}
    for fn in (linearization_gap, linearized_prediction):
        with pytest.raises(ValueError, match=r"params_t\['layers.1.weight'\] has shape \(2,\)"):
            fn(net, p0, wrong, x)
    assert linearization_gap(net, p0, pt, x) > 0.01  # the right dicts still pass


def test_infinite_width_gd_reads_numpy_and_refuses_non_finite_targets():
    net = mlp(3, 8, depth=2, parameterization="ntk", seed=0, dtype=F64)
    x = torch.eye(3, dtype=F64)
    y = torch.tensor([[0.5], [-1.0], [2.0]], dtype=F64)
    f0 = net(x).detach()
    expected = infinite_width_gd(net, x, y, f0, lr=0.5, steps=3)
    got = infinite_width_gd(net, x.numpy(), y.numpy(), f0.numpy(), lr=0.5, steps=3)
    assert torch.equal(got, expected)
    model = InfiniteWidthGD(net, x, y, f0)
    at_x = model.predict(x, f0, lr=0.5, steps=3)
    assert torch.equal(model.predict(x.numpy(), f0.numpy(), lr=0.5, steps=3), at_x)
    nan = y.clone()
    nan[1] = float("nan")
    for args, field in (((x, nan, f0), "y"), ((x, y, f0 * float("inf")), "f0")):
        with pytest.raises(ValueError, match=f"^{field} must be finite, got an entry"):
            infinite_width_gd(net, *args, lr=0.5, steps=3)
    with pytest.raises(ValueError, match=r"^f0_test must be finite"):
        model.predict(x, f0 * float("nan"), lr=0.5, steps=3)
    with pytest.raises(ValueError, match=r"^y must be a torch\.Tensor or a NumPy array, got list"):
        infinite_width_gd(net, x, y.tolist(), f0, lr=0.5, steps=3)  # pyright: ignore[reportArgumentType]


def test_inputs_of_another_width_are_refused_with_the_fix():
    net = mlp(3, 8, depth=2, parameterization="ntk", seed=0)
    with pytest.raises(ValueError, match=r"^x1 has 5 features, the model takes 3; pass inputs"):
        mlp_kernels(net, torch.zeros(4, 5))
