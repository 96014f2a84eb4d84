"""Optimizers: first steps against hand-written recurrences and torch.optim, ISTA/FISTA against
scikit-learn's lasso, subgradient floors and schedules, param groups, argument validation."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from _helpers import assert_close
from gdscope import losses
from gdscope.optim import (
    FISTA,
    OPTIMIZERS,
    ProximalGD,
    Subgradient,
    make_optimizer,
    param_groups,
    soft_threshold,
)

DT = torch.float64
ETA = 0.07
L1 = 0.05


# ---------------------------------------------------------------------------------------------
# problems: a fixed quadratic and a small random linear least squares (float64)


@dataclass(frozen=True)
class Problem:
    w0: torch.Tensor
    loss: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]  # hand-written gradient of ``loss``


def _quadratic() -> Problem:
    A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]], dtype=DT)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    return Problem(
        w0=torch.tensor([0.8, -0.02, 1.5], dtype=DT),
        loss=lambda w: 0.5 * w @ A @ w - b @ w,
        grad=lambda w: A @ w - b,
    )


def _least_squares() -> Problem:
    g = torch.Generator().manual_seed(7)
    n, d = 20, 5
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randn(n, generator=g, dtype=DT)
    return Problem(
        w0=torch.randn(d, generator=g, dtype=DT) * 0.1,
        loss=lambda w: losses.lasso_smooth(w, X, y),
        grad=lambda w: X.T @ (X @ w - y) / n,
    )


PROBLEMS = {"quadratic": _quadratic, "least_squares": _least_squares}


# ---------------------------------------------------------------------------------------------
# hand-written recurrences: (problem, hyper-parameters) -> first three iterates


def _gd(pb: Problem, wd: float = 0.0) -> list[torch.Tensor]:
    w, out = pb.w0.clone(), []
    for _ in range(3):
        w = w - ETA * (pb.grad(w) + wd * w)
        out.append(w)
    return out


def _momentum(pb: Problem, beta: float, nesterov: bool) -> list[torch.Tensor]:
    w, buf, out = pb.w0.clone(), None, []
    for _ in range(3):
        g = pb.grad(w)
        buf = g if buf is None else beta * buf + g
        w = w - ETA * ((g + beta * buf) if nesterov else buf)
        out.append(w)
    return out


def _rmsprop(pb: Problem, alpha: float, eps: float) -> list[torch.Tensor]:
    w, v, out = pb.w0.clone(), torch.zeros_like(pb.w0), []
    for _ in range(3):
        g = pb.grad(w)
        v = alpha * v + (1 - alpha) * g**2
        w = w - ETA * g / (v.sqrt() + eps)
        out.append(w)
    return out


def _adam(pb: Problem, b1: float, b2: float, eps: float) -> list[torch.Tensor]:
    w, m, v, out = pb.w0.clone(), torch.zeros_like(pb.w0), torch.zeros_like(pb.w0), []
    for t in range(1, 4):
        g = pb.grad(w)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        w = w - ETA * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        out.append(w)
    return out


def _soft(z: torch.Tensor, t: float) -> torch.Tensor:
    return torch.where(z > t, z - t, torch.where(z < -t, z + t, torch.zeros_like(z)))


def _ista(pb: Problem) -> list[torch.Tensor]:
    w, out = pb.w0.clone(), []
    for _ in range(3):
        w = _soft(w - ETA * pb.grad(w), ETA * L1)
        out.append(w)
    return out


def _fista(pb: Problem) -> list[torch.Tensor]:
    y, x_prev, t, out = pb.w0.clone(), pb.w0.clone(), 1.0, []
    for _ in range(3):
        x = _soft(y - ETA * pb.grad(y), ETA * L1)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = x + (t - 1) / t_next * (x - x_prev)
        x_prev, t = x, t_next
        out.append(y)
    return out


def _subgradient(pb: Problem, schedule: str, f_star: float = 0.0) -> list[torch.Tensor]:
    w, out = pb.w0.clone(), []
    for t in range(3):
        g = pb.grad(w) + L1 * torch.sign(w)
        if schedule == "constant":
            eta = ETA
        elif schedule == "sqrt":
            eta = ETA / math.sqrt(t + 1)
        else:
            objective = pb.loss(w) + L1 * w.abs().sum()
            eta = ETA * float(objective - f_star) / float(g @ g)
        w = w - eta * g
        out.append(w)
    return out


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: dict[str, Any]
    hand: Callable[[Problem], list[torch.Tensor]]
    torch_ref: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None
    closure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("gd", {}, _gd, lambda p: torch.optim.SGD(p, lr=ETA)),
    Case("sgd", {}, _gd, lambda p: torch.optim.SGD(p, lr=ETA)),
    Case(
        "gd",
        {"weight_decay": 0.3},
        lambda pb: _gd(pb, wd=0.3),
        lambda p: torch.optim.SGD(p, lr=ETA, weight_decay=0.3),
    ),
    Case(
        "heavy_ball",
        {"momentum": 0.7},
        lambda pb: _momentum(pb, 0.7, nesterov=False),
        lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.7),
    ),
    Case(
        "heavy_ball",
        {},  # default β = 0.9
        lambda pb: _momentum(pb, 0.9, nesterov=False),
        lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.9),
    ),
    Case(
        "nesterov",
        {"momentum": 0.6},
        lambda pb: _momentum(pb, 0.6, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.6, nesterov=True),
    ),
    Case(
        "rmsprop",
        {"alpha": 0.9, "eps": 1e-3},
        lambda pb: _rmsprop(pb, 0.9, 1e-3),
        lambda p: torch.optim.RMSprop(p, lr=ETA, alpha=0.9, eps=1e-3),
    ),
    Case(
        "rmsprop",
        {},
        lambda pb: _rmsprop(pb, 0.99, 1e-8),
        lambda p: torch.optim.RMSprop(p, lr=ETA),
    ),
    Case(
        "adam",
        {"betas": (0.8, 0.95), "eps": 1e-4},
        lambda pb: _adam(pb, 0.8, 0.95, 1e-4),
        lambda p: torch.optim.Adam(p, lr=ETA, betas=(0.8, 0.95), eps=1e-4),
    ),
    Case("adam", {}, lambda pb: _adam(pb, 0.9, 0.999, 1e-8), lambda p: torch.optim.Adam(p, lr=ETA)),
    Case("prox_gd", {"l1": L1}, _ista),
    Case("ista", {"l1": L1}, _ista),
    Case("fista", {"l1": L1}, _fista),
    Case("subgradient", {"l1": L1}, lambda pb: _subgradient(pb, "constant")),
    Case("subgradient", {"l1": L1, "schedule": "sqrt"}, lambda pb: _subgradient(pb, "sqrt")),
    Case(
        "subgradient",
        {"l1": L1, "schedule": "polyak", "f_star": -3.0},
        lambda pb: _subgradient(pb, "polyak", f_star=-3.0),
        closure=True,
    ),
]


def _run(opt_of: Callable[[list[torch.Tensor]], torch.optim.Optimizer], pb: Problem, closure: bool):
    w = pb.w0.clone().requires_grad_()
    opt = opt_of([w])
    iterates = []

    def evaluate() -> torch.Tensor:
        opt.zero_grad()
        loss = pb.loss(w)
        loss.backward()
        return loss

    for _ in range(3):
        if closure:
            opt.step(evaluate)
        else:
            evaluate()
            opt.step()
        iterates.append(w.detach().clone())
    return iterates


def _case_id(case: Case) -> str:
    return case.name + "".join(f"-{k}={v}" for k, v in case.kwargs.items())


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_first_three_steps_follow_the_recurrence(case: Case, problem: str):
    pb = PROBLEMS[problem]()
    got = _run(lambda p: make_optimizer(case.name, p, ETA, **case.kwargs), pb, case.closure)
    for t, (a, e) in enumerate(zip(got, case.hand(pb), strict=True), start=1):
        assert_close(a, e, rtol=1e-12, atol=1e-15, what=f"{case.name} step {t} vs recurrence")
    if case.torch_ref is not None:
        ref = _run(case.torch_ref, pb, closure=False)
        for t, (a, e) in enumerate(zip(got, ref, strict=True), start=1):
            assert_close(a, e, rtol=0.0, atol=0.0, what=f"{case.name} step {t} vs torch.optim")


def test_every_registered_name_has_a_recurrence_case():
    assert {c.name for c in CASES} == set(OPTIMIZERS)


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


# ---------------------------------------------------------------------------------------------
# param groups from learning-rate multipliers


class _Scaled(nn.Module):
    lr_multipliers = {"weight": 4.0}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3, dtype=DT))
        self.bias = nn.Parameter(torch.zeros(1, dtype=DT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@pytest.mark.parametrize("name", ["gd", "nesterov", "adam", "prox_gd", "fista", "subgradient"])
def test_lr_multipliers_become_param_groups(name):
    model = nn.Sequential(_Scaled(), nn.Identity())
    opt = make_optimizer(name, model, lr=0.1)
    groups = [
        (g["lr"], g["lr_multiplier"], [p.shape for p in g["params"]]) for g in opt.param_groups
    ]
    assert [g[1:] for g in groups] == [(4.0, [torch.Size([3])]), (1.0, [torch.Size([1])])]
    assert_close([g[0] for g in groups], [0.4, 0.1], rtol=1e-6, atol=1e-12)


def test_multiplied_group_takes_a_multiplied_step():
    model = _Scaled()
    opt = make_optimizer("gd", model, lr=0.1)
    model(torch.ones(1, 3, dtype=DT)).sum().backward()
    opt.step()
    assert_close(model.weight.detach(), torch.full((3,), 1 - 0.4, dtype=DT), rtol=1e-15)
    assert_close(model.bias.detach(), torch.full((1,), -0.1, dtype=DT), rtol=1e-15)


def test_param_groups_skips_frozen_parameters():
    model = _Scaled()
    model.bias.requires_grad_(False)
    assert [g["lr_multiplier"] for g in param_groups(model, 1.0)] == [4.0]


# ---------------------------------------------------------------------------------------------
# validation


def _w() -> list[torch.Tensor]:
    return [torch.zeros(2, requires_grad=True)]


BAD_ARGUMENTS = [
    ("adamm", {"lr": 0.1}, r"unknown optimizer 'adamm'; accepted: .*did you mean 'adam'"),
    ("gd", {"lr": 0.0}, r"lr must be a finite number > 0, got 0.0"),
    ("gd", {"lr": -1.0}, r"lr must be .* got -1.0"),
    ("gd", {"lr": float("nan")}, r"lr must be .* got nan"),
    ("gd", {"lr": float("inf")}, r"lr must be .* got inf"),
    ("heavy_ball", {"lr": 0.1, "momentum": 1.0}, r"momentum must be .*\[0, 1\), got 1.0"),
    ("heavy_ball", {"lr": 0.1, "momentum": -0.1}, r"momentum must be .* got -0.1"),
    ("nesterov", {"lr": 0.1, "momentum": 0.0}, r"momentum=0.0"),
    ("gd", {"lr": 0.1, "momentum": 0.9}, r"'gd' takes no momentum.*momentum=0.9.*heavy_ball"),
    ("adam", {"lr": 0.1, "momentum": 0.9}, r"momentum=0.9.*betas"),
    ("adam", {"lr": 0.1, "l1": 0.1}, r"l1=0.1"),
    ("prox_gd", {"lr": 0.1, "l1": -1.0}, r"l1 must be .* got -1.0"),
    ("gd", {"lr": 0.1, "weight_decay": -0.5}, r"weight_decay must be .* got -0.5"),
    ("subgradient", {"lr": 0.1, "schedule": "cosine"}, r"'cosine'.*constant, sqrt, polyak"),
    ("gd", {"lr": 0.1, "schedule": "sqrt"}, r"schedule='sqrt'"),
    ("adam", {"lr": 0.1, "beta": (0.9, 0.99)}, r"'beta'.*did you mean 'betas'"),
    ("subgradient", {"lr": 0.1, "f_star": float("nan")}, r"f_star=nan"),
]


@pytest.mark.parametrize("name,kwargs,match", BAD_ARGUMENTS, ids=[m for _, _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_the_value(name, kwargs, match):
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr")
    with pytest.raises(ValueError, match=match):
        make_optimizer(name, _w(), lr, **kwargs)


@pytest.mark.parametrize("cls", [ProximalGD, FISTA, Subgradient])
def test_own_optimizers_validate_directly(cls):
    with pytest.raises(ValueError, match=re.escape("lr must be a finite number > 0, got -0.1")):
        cls(_w(), lr=-0.1)
    with pytest.raises(ValueError, match=re.escape("l1 must be a finite number ≥ 0, got -2")):
        cls(_w(), lr=0.1, l1=-2)
