"""Nonsmooth optimizers: ISTA/FISTA against scikit-learn's lasso, subgradient floors, schedules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope import losses
from gdscope.optim import (
    FISTA,
    ProximalGD,
    Subgradient,
    make_optimizer,
    soft_threshold,
)

DT = torch.float64


# ---------------------------------------------------------------------------------------------
# proximal methods against scikit-learn's lasso


def _lasso_problem(seed: int = 0, n: int = 200, d: int = 50, k: int = 5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w_true = np.zeros(d)
    w_true[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(1, 2, k)
    y = X @ w_true + 0.5 * rng.standard_normal(n)
    return torch.from_numpy(X), torch.from_numpy(y)


def _solve(cls, X: torch.Tensor, y: torch.Tensor, lam: float, steps: int, w0=None):
    n = X.shape[0]
    L = float(torch.linalg.eigvalsh(X.T @ X / n).max())
    w = (torch.zeros(X.shape[1], dtype=DT) if w0 is None else w0.clone()).requires_grad_()
    opt = cls([w], lr=1.0 / L, l1=lam)
    for _ in range(steps):
        opt.zero_grad()
        losses.lasso_smooth(w, X, y).backward()
        opt.step()
    return w.detach(), opt


@pytest.fixture(scope="module", params=[0.05, 0.01], ids=lambda f: f"lam={f}*lam_max")
def lasso(request):
    from sklearn.linear_model import Lasso

    X, y = _lasso_problem()
    lam_max = float((X.T @ y / X.shape[0]).abs().max())
    lam = request.param * lam_max
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would make the reference suspect
        ref = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=10**6)
        ref.fit(X.numpy(), y.numpy())
    w_ref = torch.from_numpy(ref.coef_.copy())
    assert 5 <= int((w_ref != 0).sum()) < X.shape[1], "the test problem should be sparse"
    return X, y, lam, lam_max, w_ref


@pytest.mark.parametrize("cls,steps", [(ProximalGD, 1500), (FISTA, 800)])
def test_proximal_methods_reach_sklearn_lasso_with_exact_zeros(lasso, cls, steps):
    X, y, lam, _, w_ref = lasso
    w, opt = _solve(cls, X, y, lam, steps)
    candidates = {"parameters": w}
    if isinstance(opt, FISTA):
        candidates["prox iterates"] = opt.iterates()[0]
    for what, sol in candidates.items():
        assert_close(sol, w_ref, rtol=0.0, atol=1e-6, what=f"{cls.__name__} {what}")
        assert torch.equal(sol == 0, w_ref == 0), f"{cls.__name__} {what}: zero pattern differs"


@pytest.mark.parametrize("cls", [ProximalGD, FISTA])
@pytest.mark.parametrize("factor", [1.0001, 1.5])
def test_lambda_above_max_gives_exactly_zero(cls, factor):
    X, y = _lasso_problem()
    lam_max = float((X.T @ y / X.shape[0]).abs().max())
    w0 = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(1), dtype=DT)
    w, opt = _solve(cls, X, y, factor * lam_max, 600, w0=w0)
    assert bool((w == 0).all()), f"{int((w != 0).sum())} nonzero entries, max {w.abs().max():.2e}"
    if isinstance(opt, FISTA):
        assert bool((opt.iterates()[0] == 0).all())


def test_soft_threshold_exact_zeros():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 0.49, 3.0], dtype=DT)
    out = soft_threshold(z, 0.5)
    assert_close(out, torch.tensor([-1.5, 0.0, 0.0, 0.0, 0.0, 2.5], dtype=DT), rtol=0.0)
    assert int((out == 0).sum()) == 4


# ---------------------------------------------------------------------------------------------
# subgradient method on |x|


def _subgradient_on_abs(lr: float, schedule: str, steps: int, x0: float = 1.0):
    x = torch.tensor([x0], dtype=DT, requires_grad=True)
    opt = Subgradient([x], lr=lr, schedule=schedule)
    values, best = [], []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = losses.abs_power(x, 1.0)
        loss.backward()
        return loss

    for _ in range(steps):
        values.append(float(opt.step(closure).detach()))
        best.append(opt.best_loss)
    return np.array(values), np.array(best), opt, x


@pytest.mark.parametrize("lr", [0.1, 0.03, 0.01])
def test_constant_step_stalls_at_order_eta_floor(lr):
    values, _, _, _ = _subgradient_on_abs(lr, "constant", steps=400)
    floor = values[-100:].mean()
    assert 0.25 * lr <= floor <= lr, f"floor {floor:.3e} for η={lr}"
    assert abs(floor / lr - 0.5) < 0.02  # the 2-cycle a, a − η averages η/2


def test_constant_step_floor_is_linear_in_eta():
    etas = np.array([0.1, 0.03, 0.01, 0.003])
    floors = [_subgradient_on_abs(e, "constant", steps=1000)[0][-100:].mean() for e in etas]
    slope = np.polyfit(np.log(etas), np.log(floors), 1)[0]
    assert 0.9 <= slope <= 1.1, slope


def test_constant_step_on_quadratic_converges():
    x = torch.tensor([1.0, -2.0], dtype=DT, requires_grad=True)
    opt = Subgradient([x], lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        losses.quadratic(x).backward()
        opt.step()
    assert float(losses.quadratic(x.detach())) < 1e-12


def test_sqrt_schedule_best_iterate_improves_below_constant_floor():
    lr = 0.1
    values, best, opt, x = _subgradient_on_abs(lr, "sqrt", steps=3000)
    assert np.all(np.diff(best) <= 0), "best loss must be non-increasing"
    assert best[-1] < 0.05 * lr < 0.5 * lr  # far below the constant-step floor η/2
    assert_close(best[-1], values.min(), rtol=1e-6, atol=1e-12)
    (w_best,) = opt.best_params()
    assert float(w_best.abs().sum()) == opt.best_loss
    opt.load_best()
    assert torch.equal(x.detach(), w_best)


def test_best_iterate_via_loss_keyword_and_l1_objective():
    x = torch.tensor([0.7, -0.2], dtype=DT, requires_grad=True)
    opt = Subgradient([x], lr=0.1, l1=0.5)
    assert opt.best_loss == math.inf
    smooth = losses.quadratic(x)
    smooth.backward()
    opt.step(loss=smooth)
    assert_close(opt.best_loss, 0.5 * (0.49 + 0.04) + 0.5 * 0.9, rtol=1e-14, atol=1e-12)


def test_polyak_needs_a_closure_and_solves_abs_in_one_step():
    x = torch.tensor([0.8], dtype=DT, requires_grad=True)
    opt = make_optimizer("subgradient", [x], lr=1.0, schedule="polyak")
    assert opt.requires_closure
    losses.abs_power(x, 1.0).backward()
    with pytest.raises(ValueError, match=r"polyak.*closure"):
        opt.step()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = losses.abs_power(x, 1.0)
        loss.backward()
        return loss

    opt.step(closure)  # f* = 0: η = |x| / 1, lands on 0
    assert float(x.detach()) == 0.0
