"""Optimizers: first steps against recurrences and torch.optim, param groups, validation."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    (
        "subgradient",
        {"lr": 0.1, "f_star": float("nan")},
        r"f_star must be a finite number, got nan",
    ),
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
