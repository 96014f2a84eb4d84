"""Losses: normalizations and autograd gradients against hand-written formulas."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from _helpers import assert_close
from gdscope import losses

DT = torch.float64


def _t(value) -> torch.Tensor:
    """A float64 tensor (assert_close would read a Python float as float32)."""
    return torch.as_tensor(value, dtype=DT)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# training losses


@pytest.mark.parametrize("n,k", [(7, 3), (5, 1), (1, 4)])
def test_mse_equals_half_mean_over_examples_of_summed_squares(n, k):
    g = _gen(n * 10 + k)
    out, y = torch.randn(n, k, generator=g, dtype=DT), torch.randn(n, k, generator=g, dtype=DT)
    by_hand = sum((out[i, j] - y[i, j]) ** 2 for i in range(n) for j in range(k)) / (2 * n)
    assert_close(losses.mse(out, y), by_hand, rtol=1e-14, what="mse")


def test_mse_accepts_flat_target_when_single_output():
    g = _gen(1)
    out, y = torch.randn(6, 1, generator=g, dtype=DT), torch.randn(6, generator=g, dtype=DT)
    assert_close(losses.mse(out, y), 0.5 * ((out[:, 0] - y) ** 2).mean(), rtol=1e-14)
    assert_close(losses.mse(out[:, 0], y), losses.mse(out, y), rtol=0.0)


@pytest.mark.parametrize("out_shape,y_shape", [((6, 2), (6,)), ((6, 1), (5,)), ((6, 3), (6, 2))])
def test_mse_shape_mismatch_names_both_shapes(out_shape, y_shape):
    with pytest.raises(ValueError, match=re.escape(str(y_shape))) as err:
        losses.mse(torch.zeros(out_shape), torch.zeros(y_shape))
    assert str(out_shape) in str(err.value)


def test_cross_entropy_long_labels_is_mean_negative_log_softmax():
    g = _gen(2)
    out = torch.randn(9, 4, generator=g, dtype=DT)
    y = torch.randint(0, 4, (9,), generator=g)
    by_hand = sum(torch.logsumexp(out[i], 0) - out[i, y[i]] for i in range(9)) / 9
    assert_close(losses.cross_entropy(out, y), by_hand, rtol=1e-13)


def test_cross_entropy_single_logit_is_logistic_loss_for_pm1_and_01_targets():
    g = _gen(3)
    f = torch.randn(8, 1, generator=g, dtype=DT)
    y_pm = torch.tensor([1, -1, 1, 1, -1, -1, 1, -1], dtype=DT)
    by_hand = torch.log1p(torch.exp(-y_pm * f[:, 0])).mean()
    assert_close(losses.cross_entropy(f, y_pm), by_hand, rtol=1e-14)
    assert_close(losses.cross_entropy(f, (y_pm + 1) / 2), by_hand, rtol=1e-14, what="{0,1}")
    two_class = torch.cat([torch.zeros_like(f), f], dim=1)
    as_ce = F.cross_entropy(two_class, ((y_pm + 1) / 2).long())
    assert_close(losses.cross_entropy(f, y_pm), as_ce, rtol=1e-13, what="two-class CE")


@pytest.mark.parametrize("loss", [losses.cross_entropy, losses.hinge])
def test_binary_losses_reject_non_binary_targets_and_long_labels_with_one_output(loss):
    with pytest.raises(ValueError, match=r"0\.5"):
        loss(torch.zeros(3, 1), torch.tensor([1.0, 0.5, -1.0]))
    with pytest.raises(ValueError, match=r"k >= 2"):
        loss(torch.zeros(3, 1), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        loss(torch.zeros(3, 2), torch.tensor([1.0, -1.0, 1.0]))


def test_hinge_binary():
    f = torch.tensor([[2.0], [0.3], [-0.5], [0.0]], dtype=DT)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=DT)
    assert_close(losses.hinge(f, y), _t((0.0 + 0.7 + 1.5 + 1.0) / 4), rtol=1e-15)


def test_hinge_multiclass_is_crammer_singer():
    g = _gen(4)
    out = torch.randn(10, 5, generator=g, dtype=DT)
    y = torch.randint(0, 5, (10,), generator=g)
    terms = []
    for i in range(10):
        rival = max(out[i, j] for j in range(5) if j != y[i])
        terms.append(max(0.0, float(1 + rival - out[i, y[i]])))
    assert_close(losses.hinge(out, y), _t(sum(terms) / 10), rtol=1e-14)


ACCURACY_CASES = {
    "labels": ([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], [0, 0, 1], 1 / 3),
    "signs": ([[0.5], [-0.2], [0.1], [0.0]], [1.0, -1.0, -1.0, 1.0], 2 / 4),
    "zero_one": ([[0.5], [-0.2], [0.1]], [1.0, 0.0, 0.0], 2 / 3),
    "one_hot": ([[0.2, 0.9], [0.8, 0.1]], [[0.0, 1.0], [0.0, 1.0]], 1 / 2),
}


@pytest.mark.parametrize("case", ACCURACY_CASES)
def test_accuracy(case):
    out, y, expected = ACCURACY_CASES[case]
    y = torch.tensor(y)
    assert_close(losses.accuracy(torch.tensor(out), y), expected, rtol=1e-6, what=case)


def test_registry_and_did_you_mean():
    assert set(losses.LOSSES) == {"mse", "cross_entropy", "hinge", "mae", "pseudo_huber"}
    assert losses.get_loss("hinge") is losses.hinge
    with pytest.raises(ValueError, match=r"'cross_entropi'.*mse.*did you mean 'cross_entropy'"):
        losses.get_loss("cross_entropi")


# ---------------------------------------------------------------------------------------------
# seed-002 objectives: autograd gradient == hand formula


def _sign(x):
    return torch.sign(x)


X_TEST = torch.tensor([-1.7, -0.3, 0.0, 0.2, 2.5], dtype=DT)
B_TEST = torch.tensor([0.5, -0.1, 1.0, 0.3, -2.0], dtype=DT)
LAM = 0.4

OBJECTIVES = {
    "abs_power_p1": (lambda x: losses.abs_power(x, 1.0), lambda x: _sign(x)),
    "abs_power_p1.5": (
        lambda x: losses.abs_power(x, 1.5),
        lambda x: 1.5 * x.abs().pow(0.5) * _sign(x),
    ),
    "abs_power_p2": (lambda x: losses.abs_power(x, 2.0), lambda x: 2 * x),
    "pseudo_huber": (losses.pseudo_huber, lambda x: x / torch.sqrt(1 + x**2)),
    "pseudo_huber_delta2": (
        lambda x: losses.pseudo_huber(x, delta=2.0),
        lambda x: x / torch.sqrt(1 + (x / 2) ** 2),
    ),
    "quadratic": (losses.quadratic, lambda x: x),
    "l1_scalar": (
        lambda x: losses.l1_scalar(x, B_TEST, LAM),
        lambda x: (x - B_TEST) + LAM * _sign(x),
    ),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_gradient_matches_hand_formula(name):
    f, grad = OBJECTIVES[name]
    x = X_TEST.clone().requires_grad_()
    (auto,) = torch.autograd.grad(f(x), x)
    assert_close(auto, grad(X_TEST), rtol=1e-14, atol=1e-15, what=name)


def test_objective_values():
    x = X_TEST
    assert_close(losses.abs_power(x, 1.5), (x.abs() ** 1.5).sum(), rtol=1e-15)
    assert_close(losses.pseudo_huber(x), (torch.sqrt(1 + x**2) - 1).sum(), rtol=1e-15)
    assert_close(losses.quadratic(x), 0.5 * (x**2).sum(), rtol=1e-15)
    expected = (0.5 * (x - B_TEST) ** 2).sum() + LAM * x.abs().sum()
    assert_close(losses.l1_scalar(x, B_TEST, LAM), expected, rtol=1e-15)


def test_lasso_objective_and_gradient():
    g = _gen(5)
    n, d = 30, 6
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randn(n, generator=g, dtype=DT)
    w = torch.randn(d, generator=g, dtype=DT)
    w[2] = 0.0
    r = X @ w - y
    assert_close(losses.lasso_smooth(w, X, y), (r @ r) / (2 * n), rtol=1e-14)
    expected = (r @ r) / (2 * n) + LAM * w.abs().sum()
    assert_close(losses.lasso_objective(w, X, y, LAM), expected, rtol=1e-14)
    wg = w.clone().requires_grad_()
    (auto,) = torch.autograd.grad(losses.lasso_objective(wg, X, y, LAM), wg)
    assert_close(auto, X.T @ r / n + LAM * torch.sign(w), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("p", [1.2, 1.5, 1.8, 2.0])
def test_abs_power_curvature_matches_autograd_and_eos_cycle(p):
    x = torch.tensor([-1.3, 0.4, 2.0], dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(losses.abs_power(x, p), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)  # separable: Hessian diagonal
    assert_close(h, losses.abs_power_curvature(x.detach(), p), rtol=1e-13, what=f"p={p}")
    if p < 2:
        eta = 0.3
        x_cycle = torch.tensor((2 / (eta * p)) ** (1 / (p - 2)), dtype=DT)
        step = x_cycle - eta * p * x_cycle ** (p - 1)  # one GD step on |x|^p from x_cycle > 0
        assert_close(step, -x_cycle, rtol=1e-12, what="2-cycle")
        assert_close(eta * losses.abs_power_curvature(x_cycle, p), _t(2 * (p - 1)), rtol=1e-12)


@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_pseudo_huber_curvature_matches_autograd(delta):
    x = torch.tensor([-2.0, 0.0, 0.7], dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(losses.pseudo_huber(x, delta), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert_close(h, losses.pseudo_huber_curvature(x.detach(), delta), rtol=1e-13)


def test_pseudo_huber_gd_two_cycle():
    eta = 3.0
    x = torch.tensor(math.sqrt(eta**2 / 4 - 1), dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(losses.pseudo_huber(x), x)
    assert_close(x.detach() - eta * g, -x.detach(), rtol=1e-13)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: losses.abs_power(torch.ones(2), 0.5), "p=0.5"),
        (lambda: losses.abs_power(torch.ones(2), 3), "p=3"),
        (lambda: losses.abs_power_curvature(torch.ones(2), 2.5), "p=2.5"),
        (lambda: losses.pseudo_huber(torch.ones(2), delta=0.0), "delta=0.0"),
    ],
)
def test_objective_bad_arguments(call, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        call()
