"""coordinate_check and hidden_activations on the cases an adversarial review broke.

In-place operations after a recorded module and outputs that view a parameter (statistics are
taken in the hook), gdscope's lr multipliers under a named optimizer, width multipliers, models
with nothing to record, unrecorded steps, and the residual stream of a residual MLP. The oracle
is a direct computation (the model trained by hand, the module's output recomputed at every
``θ_s``) or microsoft mup's ``get_coord_data``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gdscope as gs
from _helpers import assert_close
from gdscope.optim.registry import make_optimizer, param_groups
from gdscope.probes.coord_check import hidden_activations, rms
from gdscope.probes.coord_hooks import CoordCheck, coordinate_check

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _data(d: int = 8, classes: int = 4, n: int = 20) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, classes, (n,), generator=g)


def _by_hand(
    build: Callable[[int], nn.Module],
    width: int,
    data: tuple[Tensor, Tensor],
    steps: int,
    lr: float,
    read: Callable[[nn.Module, Tensor], Tensor],
) -> list[tuple[float, float]]:
    """``(rms, delta_rms)`` of ``read(model, x)`` at ``θ_0 … θ_steps`` of plain SGD on cross-entropy."""
    x, y = data
    with torch.random.fork_rng(devices=[]):
        model = build(width)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    seen = []
    for step in range(steps + 1):
        with torch.no_grad():
            seen.append(read(model, x).clone())
        if step < steps:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return [(rms(h), rms(h - seen[0])) for h in seen]


def _table(res: CoordCheck) -> dict[tuple[float, int, str], tuple[float, float]]:
    return {(r.width, r.step, r.module): (r.rms, r.delta_rms) for r in res.rows}


# --- 1. an in-place operation after a recorded module --------------------------------------


def _inplace_net(width: int) -> nn.Module:
    torch.manual_seed(1000 + width)
    return nn.Sequential(
        nn.Linear(8, width, dtype=F64), nn.ReLU(inplace=True), nn.Linear(width, 4, dtype=F64)
    )


def test_an_inplace_relu_after_the_module_does_not_change_its_statistics():
    # before the fix module '0' reported the post-ReLU output: rms 0.396 against 0.540 at width 16
    widths, steps, lr, data = [16, 64], 2, 0.5, _data()
    ours = _table(coordinate_check(_inplace_net, widths, data, steps=steps, lr=lr, modules=["0"]))
    moved = 0.0
    for w in widths:
        truth = _by_hand(_inplace_net, w, data, steps, lr, lambda m, x: m[0](x))
        for step, (h_rms, delta) in enumerate(truth):
            assert_close(ours[(w, step, "0")][0], h_rms, rtol=1e-12, what=f"rms {w} {step}")
            assert_close(ours[(w, step, "0")][1], delta, rtol=1e-10, atol=1e-15)
            moved = max(moved, delta)
    assert moved > 1e-3  # the runs trained


class _BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: ``out += identity`` and ``ReLU(inplace=True)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, dtype=F64)
        self.bn1 = nn.BatchNorm2d(c, dtype=F64)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, dtype=F64)
        self.bn2 = nn.BatchNorm2d(c, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class _ResNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        torch.manual_seed(width)
        self.stem = nn.Conv2d(3, width, 3, padding=1, dtype=F64)
        self.block = _BasicBlock(width)
        self.head = nn.Linear(width, 4, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def test_a_resnet_block_with_inplace_ops_matches_mups_get_coord_data():
    mup_coord = pytest.importorskip("mup.coord_check")
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(6, 3, 6, 6, generator=g, dtype=F64), torch.randint(0, 4, (6,), generator=g))
    widths, steps, lr, names = [8, 16], 2, 0.1, ["block.bn1", "block.bn2", "block.conv2"]
    ours = _table(coordinate_check(_ResNet, widths, data, steps=steps, lr=lr, modules=names))
    frame = mup_coord.get_coord_data(
        {w: functools.partial(_ResNet, w) for w in widths}, [data], optimizer="sgd", lr=lr,
        mup=False, nsteps=steps + 1, nseeds=1, cuda=False, show_progress=False, lossfn="xent",
        output_fdict={"l2": "l2"}, filter_module_by_name=lambda name: name in names,
    )  # fmt: skip
    theirs = {(int(r.width), int(r.t) - 1, r.module): float(r.l2) for r in frame.itertuples()}
    assert theirs.keys() == ours.keys() and len(ours) == len(widths) * (steps + 1) * len(names)
    worst = max(abs(ours[k][0] - theirs[k]) / theirs[k] for k in ours)
    assert worst < 1e-10, worst  # before the fix bn1 read ≈ 0.58 (post-ReLU) against ≈ 1.0


# --- 2. an output that is a view of the module's own parameter -----------------------------


class _Pos(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, width, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return self.pos.expand(x.shape[0], -1)


class _PosNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        torch.manual_seed(7 + width)
        self.fc = nn.Linear(8, width, dtype=F64)
        self.pe = _Pos(width)
        self.out = nn.Linear(width, 4, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.fc(x) + self.pe(x)))


def test_an_output_viewing_a_parameter_keeps_its_step_zero_value():
    # before the fix every stored output aliased the parameter: delta_rms 0 at every step
    widths, steps, lr, data = [16, 64], 3, 1.0, _data()
    res = coordinate_check(_PosNet, widths, data, steps=steps, lr=lr, modules=["pe"])
    ours = _table(res)
    for w in widths:
        truth = _by_hand(_PosNet, w, data, steps, lr, lambda m, x: m.pe(x))
        for step, (h_rms, delta) in enumerate(truth):
            assert_close(ours[(w, step, "pe")][0], h_rms, rtol=1e-12)
            assert_close(ours[(w, step, "pe")][1], delta, rtol=1e-10, atol=1e-15)
        assert truth[steps][1] > 1e-2  # measured 0.099 (16), 0.25 (64)
    assert math.isfinite(res.slopes()["pe"])


# --- 3. a named optimizer applies gdscope's lr multipliers ----------------------------------


def _mup_mlp(width: int) -> nn.Module:
    return gs.models.mlp(
        8, width, depth=3, out_dim=3, parameterization="mup", base_width=32, seed=0, dtype=F64
    )


@pytest.mark.parametrize(
    "name,build",
    [
        ("sgd", lambda m, lr: make_optimizer("sgd", m, lr)),
        ("adam", lambda m, lr: make_optimizer("adam", m, lr)),
        (  # torch's default weight decay 0.01, divided by c as mup.MuAdamW does
            "adamw",
            lambda m, lr: torch.optim.AdamW(
                param_groups(m, lr, optimizer="adamw", weight_decay=0.01), lr
            ),
        ),
    ],
)
def test_a_named_optimizer_applies_gdscopes_lr_multipliers(name, build):
    assert set(gs.models.lr_multipliers(_mup_mlp(128)).values()) == {1.0, 4.0}
    x, y = gs.data.sphere(n=16, d=8, seed=0, out_dim=3)
    data = (x.double(), y.double())
    kw: dict[str, Any] = {"steps": 2, "lr": 0.05, "loss_fn": gs.losses.mse}
    named = coordinate_check(_mup_mlp, [32, 128], data, optimizer=name, **kw)
    grouped = coordinate_check(_mup_mlp, [32, 128], data, optimizer=build, **kw)
    assert named.rows == grouped.rows
    torch_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    plain = coordinate_check(
        _mup_mlp, [32, 128], data, optimizer=lambda m, lr: torch_cls[name](m.parameters(), lr), **kw
    )
    # the multipliers are 1 at the base width and 4 at width 128, where they change the updates
    # (before the fix a name gave `plain`: layers.2 delta_rms at width 128 measured 0.060 against
    # 0.102 with the multipliers for sgd, 0.62 against 0.84 for adam)
    at = {(r.width, r.module): r.delta_rms for r in named.rows if r.step == 2}
    off = {(r.width, r.module): r.delta_rms for r in plain.rows if r.step == 2}
    assert_close(at[(32, "layers.2")], off[(32, "layers.2")], rtol=1e-12)
    assert abs(at[(128, "layers.2")] / off[(128, "layers.2")] - 1) > 0.05


def test_a_named_optimizer_on_a_mup_package_model_is_torchs():
    mup = pytest.importorskip("mup")
    from gdscope.integrations.mup import mup_model

    class Net(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.fc = nn.Linear(8, width, dtype=F64)
            self.out = mup.MuReadout(width, 4, dtype=F64)

        def forward(self, x: Tensor) -> Tensor:
            return self.out(torch.relu(self.fc(x)))

    def build(width: int) -> nn.Module:
        return mup_model(Net, width=width, base_width=16)

    kw: dict[str, Any] = {"steps": 2, "lr": 0.5}
    named = coordinate_check(build, [16, 64], _data(), optimizer="sgd", **kw)
    torch_sgd = coordinate_check(
        build, [16, 64], _data(), optimizer=lambda m, lr: torch.optim.SGD(m.parameters(), lr), **kw
    )
    assert named.rows == torch_sgd.rows


def test_an_unknown_optimizer_name_lists_the_names():
    with pytest.raises(ValueError, match=r"optimizer must be one of \[.*'adamw'.*'heavy_ball'"):
        coordinate_check(_inplace_net, [8], _data(), lr=0.1, optimizer="lion")


# --- 4. width multipliers --------------------------------------------------------------------


def test_fractional_widths_are_recorded_and_fitted_as_given():
    built: list[float] = []

    def net(mult: float) -> nn.Module:
        built.append(mult)
        w = int(16 * mult)
        return nn.Sequential(nn.Linear(8, w, dtype=F64), nn.ReLU(), nn.Linear(w, 4, dtype=F64))

    widths = [0.5, 1, 1.75, 3.5]
    res = coordinate_check(net, widths, _data(), steps=1, lr=0.1)
    assert built == widths  # before the fix: recorded as 0, 1, 1, 3 and slopes() crashed
    assert [r.width for r in res.rows if r.step == 0 and r.module == "2"] == widths
    last = [r for r in res.rows if r.step == 1 and r.module == "2"]
    fit = gs.stats.loglog_fit([r.width for r in last], [r.delta_rms for r in last])
    assert_close(res.slopes()["2"], fit.exponent, rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -2.0, math.nan, math.inf, True, "16"])
def test_a_width_that_is_not_a_positive_number_is_refused(bad):
    with pytest.raises(ValueError, match=r"widths\[1\] must be a finite number > 0") as err:
        coordinate_check(_inplace_net, [8, bad], _data(), lr=0.1)
    assert "\n" not in str(err.value)


# --- 5. nothing to record -------------------------------------------------------------------


class _RawNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(width, 8, dtype=F64) / 8**0.5)
        self.W2 = nn.Parameter(torch.randn(4, width, dtype=F64) / width**0.5)
        self.act = nn.ReLU()
        self.unused = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x @ self.W1.T) @ self.W2.T


def test_a_model_with_nothing_to_record_is_refused_with_the_fix():
    # before the fix: zero rows, then slopes() / last_step raised "max() arg is an empty sequence"
    with pytest.raises(ValueError, match=r"no module to record in _RawNet.*modules=") as err:
        coordinate_check(_RawNet, [8, 32], _data(), steps=2, lr=0.1)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"modules \['unused'\] of _RawNet are not called"):
        coordinate_check(_RawNet, [8], _data(), lr=0.1, modules=["act", "unused"])
    res = coordinate_check(_RawNet, [8, 32], _data(), steps=2, lr=0.1, modules=["", "act"])
    assert res.modules == ["", "act"] and res.last_step == 2
    assert all(math.isfinite(s) for s in res.slopes().values())


def test_an_empty_table_says_so():
    empty = CoordCheck(())
    assert empty.modules == []
    for read in (lambda: empty.last_step, empty.slopes):
        with pytest.raises(ValueError, match=r"CoordCheck\.rows is empty: nothing was recorded"):
            read()


# --- 6. an unrecorded step ------------------------------------------------------------------


def test_slopes_of_an_unrecorded_step_is_refused():
    res = coordinate_check(_inplace_net, [8, 32], _data(), steps=3, lr=0.1)
    assert res.slopes(step=3) == res.slopes()
    for bad in (7, -1):  # before the fix: {'0': nan, '2': nan}
        with pytest.raises(ValueError, match=rf"got {bad}; recorded steps: 0 … 3") as err:
            res.slopes(step=bad)
        assert "\n" not in str(err.value)


# --- 7. hidden_activations of a residual MLP -------------------------------------------------


def _stream(net: nn.Module, x: Tensor) -> list[Tensor]:
    """``h_1 = σ(L_1 x)``, ``h_{l+1} = h_l + β L_{l+1} σ(h_l)``, by hand."""
    layers, act, beta = net.layers, net.activation, net.branch_scale
    with torch.no_grad():
        hs = [act(layers[0](x))]
        for layer in list(layers)[1:-1]:
            hs.append(hs[-1] + beta * layer(act(hs[-1])))
    return hs


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_hidden_activations_of_a_residual_mlp_is_the_stream(depth):
    net = gs.models.mlp(5, 64, depth=depth, residual=True, seed=0, dtype=F64)
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    hs, out = hidden_activations(net, x)
    truth = _stream(net, x)
    assert len(hs) == depth - 1 == len(truth)
    for got, want in zip(hs, truth, strict=True):
        assert torch.equal(got, want)  # before the fix "h2" was relu(h1) == h1 bitwise
    assert torch.equal(out, net.layers[-1](truth[-1]).detach())
    assert depth < 3 or not torch.equal(hs[1], hs[0])


def test_activation_rms_probe_reads_the_residual_stream_during_training():
    x, y = gs.data.sphere(n=12, d=5, seed=0, out_dim=2)
    x, y = x.double(), y.double()
    net = gs.models.mlp(5, 32, depth=4, out_dim=2, residual=True, seed=0, dtype=F64)
    init = [h.clone() for h in _stream(net, x)]
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    steps = 3
    trace = gs.train(net, opt, (x, y), steps, probes={"activation_rms": steps})
    final = _stream(net, x)
    for index, (h, h0) in enumerate(zip(final, init, strict=True), start=1):
        for metric, want in ((f"activation_rms/h{index}", rms(h)),
                             (f"activation_delta_rms/h{index}", rms(h - h0))):  # fmt: skip
            step_of, values = trace.series(metric)
            assert_close(float(values[list(step_of).index(steps)]), want, rtol=1e-10)
    assert rms(final[-1] - init[-1]) > 1e-3  # the stream moved
