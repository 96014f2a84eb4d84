"""μP under adaptive optimizers: gdscope's ``mup`` + ``make_optimizer`` against microsoft mup's
``MuAdam``/``MuAdamW`` on the same weights in float64, and the width-flatness of the updates.

Before the adaptive rule (review 16, c10) ``make_optimizer("adam")`` applied TP-IV's SGD
multipliers to Adam, and the readout's ``delta_rms`` grew like ``width**0.67``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import gdscope as gs
from _mup_twins import gdscope_mup_mlp, mup_data, mup_twin
from gdscope.models.lr_multipliers import LR_RULES, lr_multipliers
from gdscope.optim.groups import rule_groups
from gdscope.optim.registry import OPTIMIZERS, make_optimizer, param_groups

mup = pytest.importorskip("mup")

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _train(net: nn.Module, opt: torch.optim.Optimizer, steps: int = 3) -> list[Tensor]:
    x, y = mup_data()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _gdscope_opt(name: str, net: nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    if name == "adamw":  # not a registry name: torch's AdamW on gdscope's param groups
        groups = param_groups(net, lr, optimizer="adamw", weight_decay=wd)
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    return make_optimizer(name, net, lr, weight_decay=wd)


def _mup_opt(name: str, net: nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return mup.MuAdamW(net.parameters(), lr=lr, weight_decay=wd)
    impl = torch.optim.RMSprop if name == "rmsprop" else torch.optim.Adam  # mup.optim's recipe
    return mup.MuAdam(net.parameters(), impl=impl, lr=lr, weight_decay=wd)


def _worst(a: list[Tensor], b: list[Tensor]) -> float:
    return max(float((p - q).abs().max() / q.abs().max()) for p, q in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "name,wd", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.01), ("rmsprop", 0.0), ("rmsprop", 0.1)]
)
def test_adaptive_update_equals_mups_on_the_same_weights(name, wd):
    width, lr = 64, 0.01  # r = 4
    net = gdscope_mup_mlp(width)
    twin = mup_twin(width, net)
    x, _ = mup_data()
    with torch.no_grad():
        same = _worst([net(x)], [twin(x)])
    assert same < 1e-14, same  # the same function before training
    start = [p.detach().clone() for p in net.parameters()]
    ours = _train(net, _gdscope_opt(name, net, lr, wd))
    theirs = _train(twin, _mup_opt(name, twin, lr, wd))
    assert _worst(ours, theirs) < 1e-12, _worst(ours, theirs)  # measured: 2e-16 … 2e-14
    # the runs moved every parameter far more than the tolerance, and TP-IV's SGD multipliers
    # on the same optimizer (the old behaviour) give another trajectory
    assert min(float((p - q).abs().max()) for p, q in zip(ours, start, strict=True)) > 1e-4
    with torch.no_grad():
        for p, q in zip(net.parameters(), start, strict=True):
            p.copy_(q)
    sgd_groups = rule_groups(net, lr, "sgd", optimizer=name)
    impl = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    old = _train(net, impl[name](sgd_groups, lr=lr, weight_decay=wd))
    assert _worst(old, theirs) > 1e-2, _worst(old, theirs)


def _mup_lrs(model: nn.Module, optimizer: str, width: int, base: nn.Module, delta: nn.Module):
    """``{parameter name: lr / lr₀}`` that mup's μP optimizer gives ``model``'s parameters."""
    mup.set_base_shapes(model, base, delta=delta, rescale_params=False)
    make = mup.MuAdam if optimizer == "adam" else mup.MuSGD
    opt = make(model.parameters(), lr=1.0)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    return {n: lr_of[id(p)] for n, p in model.named_parameters()}


MODELS = {
    "mlp": lambda w: gs.models.mlp(5, w, depth=4, out_dim=3, parameterization="mup",
                                   base_width=8, dtype=F64),
    "cnn": lambda w: gs.models.cnn(2, (6, 6), w, out_dim=3, depth=3, parameterization="mup",
                                   base_width=8, dtype=F64),
    "resnet": lambda w: gs.models.resnet(2, (6, 6), w, out_dim=3, depth=3, batchnorm=True,
                                         parameterization="mup", base_width=8, dtype=F64),
}  # fmt: skip


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("width", [8, 32])
def test_adaptive_multipliers_are_mupadams_for_every_model(model, width):
    make = MODELS[model]
    with torch.random.fork_rng(devices=[]):
        net, base, delta = make(width), make(8), make(16)
    ours = lr_multipliers(net, "adaptive")
    assert ours == pytest.approx(_mup_lrs(net, "adam", width, base, delta), rel=1e-15)
    hidden = [c for n, c in ours.items() if c != 1.0]
    assert (hidden == []) == (width == 8)  # at r = 4 the hidden weights take 1/r = 0.25
    assert set(hidden) <= {0.25}
    sgd = lr_multipliers(net, "sgd")  # BatchNorm's width-sized parameters: r, as MuSGD
    assert sgd == pytest.approx(_mup_lrs(net, "sgd", width, base, delta), rel=1e-15)


def test_every_registry_optimizer_has_a_rule():
    net = gs.models.mlp(5, 64, depth=3, parameterization="mup", base_width=16, dtype=F64)
    adaptive = {"adam", "rmsprop"}
    for name in OPTIMIZERS:
        groups = param_groups(net, 1.0, optimizer=name)
        by_param = {id(p): g["lr_multiplier"] for g in groups for p in g["params"]}
        hidden, readout = by_param[id(net.layers[1].weight)], by_param[id(net.layers[2].weight)]
        assert (hidden, readout) == ((0.25, 1.0) if name in adaptive else (1.0, 4.0)), name


def _delta_rms(name: str, rule: str | None) -> dict[str, float]:
    """Slope in ``log width`` of the RMS change, over 3 Adam steps, of each layer's output."""
    x, _ = mup_data()
    widths, rows = [16, 64, 256, 1024], {"hidden": [], "readout": []}
    for width in widths:
        net = gdscope_mup_mlp(width)
        if rule is None:
            opt = make_optimizer(name, net, 0.01)
        else:
            opt = torch.optim.Adam(rule_groups(net, 0.01, rule, optimizer=name), lr=0.01)
        with torch.no_grad():
            before = (net.layers[1](torch.relu(net.layers[0](x))), net(x))
        _train(net, opt)
        with torch.no_grad():
            after = (net.layers[1](torch.relu(net.layers[0](x))), net(x))
        for key, b, a in zip(rows, before, after, strict=True):
            rows[key].append(float((a - b).pow(2).mean().sqrt()))
    logs = [math.log(w) for w in widths]
    mean = sum(logs) / len(logs)

    def slope(v: list[float]) -> float:
        lv = [math.log(t) for t in v]
        num = sum((a - mean) * (b - sum(lv) / len(lv)) for a, b in zip(logs, lv, strict=True))
        return num / sum((a - mean) ** 2 for a in logs)

    return {key: slope(v) for key, v in rows.items()}


def test_adam_updates_are_width_flat():
    # measured slopes: hidden 0.013, readout 0.016 (the old SGD multipliers: 0.81 and 0.53)
    flat = _delta_rms("adam", None)
    assert max(abs(s) for s in flat.values()) < 0.1, flat
    old = _delta_rms("adam", "sgd")
    assert min(old.values()) > 0.3, old


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adamw"])
def test_meanfield_refuses_adaptive_optimizers(name):
    net = gs.models.mlp(5, 32, depth=3, parameterization="meanfield", dtype=F64)
    with pytest.raises(
        ValueError, match=rf"optimizer '{name}'.*parameterization 'meanfield'.*'mup'"
    ):
        if name == "adamw":
            param_groups(net, 0.1, optimizer=name)
        else:
            make_optimizer(name, net, 0.1)
    make_optimizer("gd", net, 0.1)  # its SGD rule stands


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd_with_weight_decay_equals_musgd_on_the_same_weights(wd):
    """The SGD rule's groups keep TP-IV's multipliers and take λ/c, as MuSGD does (each group's
    decay per step ηλ is the base width's); keeping λ, the old groups, decays r times faster."""
    net = gdscope_mup_mlp(64)
    groups = make_optimizer("sgd", net, 0.1, weight_decay=wd).param_groups
    assert [(g["lr_multiplier"], g["weight_decay"]) for g in groups] == [(4.0, wd / 4), (1.0, wd)]
    assert [len(g["params"]) for g in groups] == [4, 2]  # input w,b, hidden b, readout w | rest
    twin = mup_twin(64, net)
    ours = _train(net, make_optimizer("sgd", net, 0.1, weight_decay=wd))
    theirs = _train(twin, mup.MuSGD(twin.parameters(), lr=0.1, weight_decay=wd))
    assert _worst(ours, theirs) < 1e-12, _worst(ours, theirs)


def test_modules_declare_an_adaptive_rule():
    class Own(nn.Module):
        lr_multipliers = {"weight": 4.0}  # noqa: RUF012
        adaptive_lr_multipliers = {"weight": 0.5}  # noqa: RUF012

        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, dtype=F64))
            self.bias = nn.Parameter(torch.zeros(1, dtype=F64))

    model = nn.Sequential(Own())
    assert [lr_multipliers(model, r) for r in LR_RULES] == [
        {"0.weight": 4.0, "0.bias": 1.0},
        {"0.weight": 0.5, "0.bias": 1.0},
    ]
    with pytest.raises(ValueError, match="rule must be one of"):
        lr_multipliers(model, "adagrad")
