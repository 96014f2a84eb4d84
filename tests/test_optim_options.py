"""Optimizer options checked by value, configs refused where make_optimizer would refuse them,
and the subgradient method resumed from its state dict as if never interrupted."""

from __future__ import annotations

import math

import pytest
import torch

from gdscope.optim import make_optimizer
from gdscope.optim.registry import check_optimizer
from gdscope.optim.subgradient import Subgradient


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("heavy_ball", {"dampening": math.nan}, "dampening must be a finite number in"),
        ("heavy_ball", {"dampening": 1.5}, r"dampening must be a finite number in \[0, 1\]"),
        ("rmsprop", {"alpha": 1.5}, r"alpha must be a finite number in \[0, 1\)"),
        ("rmsprop", {"centered": "no"}, "centered must be True or False, got 'no'"),
        ("adam", {"amsgrad": "no"}, "amsgrad must be True or False"),
        ("adam", {"betas": (1.5, 0.9)}, r"betas\[0\] must be a finite number in \[0, 1\)"),
        ("adam", {"eps": -1.0}, "eps must be a finite number ≥ 0"),
        ("subgradient", {"f_star": "0"}, "f_star must be a finite number"),
        ("subgradient", {"f_star": True}, "f_star must be a finite number"),
    ],
)
def test_extra_options_are_checked_by_value(name, options, match):
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=match):
        make_optimizer(name, [w], 0.1, **options)
    with pytest.raises(ValueError, match=match):
        check_optimizer(name, **options)


def test_check_optimizer_refuses_what_make_optimizer_refuses_and_takes_what_it_takes():
    with pytest.raises(ValueError, match="nesterov needs momentum in"):
        check_optimizer("nesterov", momentum=0.0)
    with pytest.raises(ValueError, match="nesterov needs momentum in"):
        make_optimizer("nesterov", [torch.nn.Parameter(torch.ones(2))], 0.1, momentum=0.0)
    check_optimizer("gd", lr=0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        check_optimizer("gd", lr=-1.0)


@pytest.mark.parametrize("schedule", ["sqrt", "constant"])
def test_a_subgradient_run_resumes_as_if_never_interrupted(schedule):
    """|w| from 10 with the 'sqrt' schedule: resumed at step 4 it restarted η/√(t+1) at t = 0
    (w₈ = 4.431 instead of 5.629); w² at lr 1.5 (iterates grow): the best iterate was lost."""

    def run(loss_fn, lr, start, steps, cut=None):
        w = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))
        opt = Subgradient([w], lr=lr, schedule=schedule)
        for t in range(steps):
            if t == cut:
                saved, value = opt.state_dict(), w.detach().clone()
                w = torch.nn.Parameter(value)
                opt = Subgradient([w], lr=lr, schedule=schedule)
                opt.load_state_dict(saved)
            opt.zero_grad()
            loss = loss_fn(w).sum()
            loss.backward()
            opt.step(loss=loss)
        return float(w.detach()), opt.best_loss, [float(b) for b in opt.best_params()]

    for loss_fn, lr, start in ((torch.abs, 1.0, 10.0), (lambda w: w**2, 1.5, 1.0)):
        assert run(loss_fn, lr, start, 8, cut=4) == run(loss_fn, lr, start, 8)
    assert run(torch.abs, 1.0, 10.0, 8)[0] == pytest.approx(
        10 - sum(1 / math.sqrt(t + 1) for t in range(8)) if schedule == "sqrt" else 2.0
    )
