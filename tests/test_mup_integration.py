"""μP through microsoft's mup package, and the coordinate check by forward hooks."""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.probes.coord_hooks import coordinate_check

mup = pytest.importorskip("mup")
mup_coord = pytest.importorskip("mup.coord_check")
from gdscope.integrations.mup import mup_model, mup_optimizer, set_mup_shapes  # noqa: E402

D_IN, OUT = 16, 10


pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    """A user's MLP: two hidden ReLU layers and a readout (mup's or PyTorch's)."""

    def __init__(self, width: int, readout: str = "mup") -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.ReLU()
        self.out = (
            mup.MuReadout(width, OUT, readout_zero_init=True)
            if readout == "mup"
            else nn.Linear(width, OUT)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, D_IN, generator=g), torch.randint(0, OUT, (n,), generator=g)


def _mu_net(width: int) -> nn.Module:
    return mup_model(Net, width=width, base_width=32)


MU_SGD = functools.partial(mup_optimizer, "sgd")


def test_hook_coord_check_equals_mups_get_coord_data():
    # mup records at t = 1..nsteps the training forward of update t (parameters θ_{t-1});
    # gdscope's step s is θ_s, so nsteps = steps + 1 covers steps 0..steps. mup's 'l2' is RMS.
    widths, steps, lr, names = [32, 64, 128], 3, 0.5, ["fc1", "fc2", "out"]
    data = _data(32)
    ours = coordinate_check(
        _mu_net, widths, data, steps=steps, lr=lr, optimizer=MU_SGD, seeds=(0, 1)
    )
    assert ours.modules == names
    for seed in (0, 1):

        def lazy(width, seed=seed):
            return lambda: (torch.manual_seed(seed), _mu_net(width))[1]

        frame = mup_coord.get_coord_data(
            {w: lazy(w) for w in widths},
            [data],
            optimizer="sgd",
            lr=lr,
            mup=True,
            nsteps=steps + 1,
            nseeds=1,
            cuda=False,
            show_progress=False,
            lossfn="xent",
            output_fdict={"l2": "l2"},
            filter_module_by_name=lambda name: name in names,
        )
        theirs = {(int(r.width), int(r.t) - 1, r.module): r.l2 for r in frame.itertuples()}
        mine = {(r.width, r.step, r.module): r.rms for r in ours.rows if r.seed == seed}
        assert mine.keys() == theirs.keys() and len(mine) == len(widths) * (steps + 1) * 3
        worst = max(abs(mine[k] - theirs[k]) / abs(theirs[k]) for k in mine if theirs[k] != 0)
        assert worst < 1e-6, worst
        # the readout starts at zero (readout_zero_init) and moves: the runs did train
        assert theirs[(128, 0, "out")] == 0.0 and mine[(128, steps, "out")] > 1e-3


def test_mup_updates_are_width_independent_and_sp_updates_grow():
    widths, data = [64, 128, 256, 512, 1024], _data(32)
    kw = {"steps": 3, "lr": 0.5}  # hidden layers move (Δ ~ 1e-2) and SP stays stable at 1024
    mu = coordinate_check(_mu_net, widths, data, optimizer=MU_SGD, **kw)
    sp = coordinate_check(lambda w: Net(w, readout="torch"), widths, data, optimizer="sgd", **kw)
    mu_slopes, sp_slopes = mu.slopes(), sp.slopes()
    # measured: μP Δ slopes 0.12 / 0.11 / 0.05 (fc1 / fc2 / out; the rise is 64 -> 128 only),
    # SP 0.69 for the readout and 0.32 for fc2
    assert all(abs(s) < 0.2 for s in mu_slopes.values()), mu_slopes
    assert all(abs(s) < 0.2 for s in mu.slopes(value="rms").values())
    assert sp_slopes["out"] > 0.5, sp_slopes
    assert sp_slopes["fc2"] > mu_slopes["fc2"] + 0.15, (sp_slopes, mu_slopes)
    # the slope is the least-squares fit of gdscope.stats in log–log coordinates
    last = [r for r in sp.rows if r.step == 3 and r.module == "out"]
    fit = gs.stats.loglog_fit([r.width for r in last], [r.delta_rms for r in last])
    assert_close(fit.exponent, sp_slopes["out"], rtol=1e-9)


def test_a_model_without_mureadout_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"no mup\.MuReadout") as err:
        mup_model(lambda w: Net(w, readout="torch"), width=64, base_width=32)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no μP base shapes"):
        mup_optimizer("sgd", Net(64), lr=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        mup_optimizer("lion", _mu_net(64), lr=0.1)


def test_set_mup_shapes_gives_mups_width_multipliers():
    model = set_mup_shapes(Net(128), Net(32), Net(64))
    readout = model.out
    assert isinstance(readout, mup.MuReadout) and readout.width_mult() == 4.0
    assert model.fc1.weight.infshape.ninf() == 1 and model.fc2.weight.infshape.ninf() == 2


def test_without_mup_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mup", None)  # `import mup` now raises ImportError
    with pytest.raises(ImportError) as err:
        mup_optimizer("sgd", nn.Linear(2, 2), 0.1)
    assert str(err.value) == "μP needs microsoft's mup package: pip install 'gdscope[mup]'"


def test_hook_route_agrees_with_hidden_activations_route_on_gdscopes_mlp():
    x, y = gs.data.sphere(n=24, d=8, seed=0, out_dim=3)
    lr, steps = 0.05, 3

    def net(width: int) -> nn.Module:
        return gs.models.mlp(d_in=8, width=width, depth=3, out_dim=3, seed=0)

    hooks = coordinate_check(
        net,
        [48],
        (x, y),
        steps=steps,
        lr=lr,
        loss_fn=gs.losses.mse,
        modules=["activation", "layers.2"],
    )
    model = net(48)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    trace = gs.train(model, opt, (x, y), steps, probes={"activation_rms": 1})
    pairs = {
        "activation#0": ("activation_rms/h1", "activation_delta_rms/h1"),
        "activation#1": ("activation_rms/h2", "activation_delta_rms/h2"),
        "layers.2": ("output_rms", "output_delta_rms"),
    }
    assert set(hooks.modules) == set(pairs)
    for row in hooks.rows:
        rms_name, delta_name = pairs[row.module]
        for ours, metric in ((row.rms, rms_name), (row.delta_rms, delta_name)):
            step_of, values = trace.series(metric)
            theirs = float(values[list(step_of).index(row.step)])
            assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what=f"{row}")
    assert max(r.delta_rms for r in hooks.rows if r.step == steps) > 1e-3


def test_unknown_module_and_bad_arguments_are_refused():
    data = _data(8)
    with pytest.raises(ValueError, match=r"modules \['fc9'\] are not in Net"):
        coordinate_check(Net, [16], data, lr=0.1, modules=["fc9"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        coordinate_check(Net, [16], data, lr=0.1, steps=0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        coordinate_check(Net, [16], data, lr=0.1, optimizer="lion")


def test_coordinate_check_leaves_the_global_generator_alone():
    before = torch.random.get_rng_state()
    coordinate_check(lambda w: Net(w, readout="torch"), [16], _data(8), steps=1, lr=0.1)
    assert torch.equal(before, torch.random.get_rng_state())
