"""The μP coordinate check against microsoft mup's ``get_coord_data``, in float64 on the same
weights."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor, nn

from _mup_twins import gdscope_mup_mlp, mup_data, mup_twin
from _peer_nets import F64
from gdscope.probes.coord_hooks import coordinate_check

mup = pytest.importorskip("mup")
mup_coord = pytest.importorskip("mup.coord_check")
from gdscope.integrations.mup import mup_model, mup_optimizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# --- μP coordinates against microsoft mup's get_coord_data --------------------------------

D_IN, OUT = 8, 4


class MuNet(nn.Module):
    """Two hidden ReLU layers (one activation module, called twice) and mup's readout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, width, dtype=F64)
        self.fc2 = nn.Linear(width, width, dtype=F64)
        self.act = nn.ReLU()
        self.out = mup.MuReadout(width, OUT, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


MODULES = ["fc1", "act", "fc2", "out", ""]  # "" is the whole model


def _mup_weights(widths: list[int]) -> dict[int, dict[str, Tensor]]:
    states = {}
    with torch.random.fork_rng(devices=[]):
        for width in widths:
            torch.manual_seed(100 + width)
            states[width] = {
                k: v.clone()
                for k, v in mup_model(MuNet, width=width, base_width=16).state_dict().items()
            }
    return states


def _mup_coords(frame) -> dict[tuple[int, int, str], float]:
    """mup's rows as ``(width, step, name) -> l2``: its ``t`` is step ``t − 1``; ``act#k`` by order."""
    coords: dict[tuple[int, int, str], float] = {}
    for row in frame.itertuples():
        key = (int(row.width), int(row.t) - 1, row.module)
        if row.module == "act":
            calls = sum(1 for w, s, m in coords if (w, s) == key[:2] and m.startswith("act#"))
            key = (*key[:2], f"act#{calls}")
        coords[key] = float(row.l2)
    return coords


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.02)])
def test_coordinate_check_equals_mups_get_coord_data(optimizer, lr):
    widths, steps = [16, 32, 64], 3
    states = _mup_weights(widths)

    def build(width: int) -> nn.Module:
        model = mup_model(MuNet, width=width, base_width=16)
        model.load_state_dict(states[width])  # the same weights for both, whatever the seed
        return model

    g = torch.Generator().manual_seed(40)
    data = (
        torch.randn(20, D_IN, generator=g, dtype=F64),
        torch.randint(0, OUT, (20,), generator=g),
    )
    ours = coordinate_check(
        build, widths, data, steps=steps, lr=lr, modules=MODULES,
        optimizer=functools.partial(mup_optimizer, optimizer),
    )  # fmt: skip
    frame = mup_coord.get_coord_data(
        {w: functools.partial(build, w) for w in widths}, [data], optimizer=optimizer, lr=lr,
        mup=True, nsteps=steps + 1, nseeds=1, cuda=False, show_progress=False, lossfn="xent",
        output_fdict={"l2": "l2"}, filter_module_by_name=lambda name: name in MODULES,
    )  # fmt: skip
    theirs = _mup_coords(frame)
    mine = {(r.width, r.step, r.module): r.rms for r in ours.rows}
    names = ["fc1", "act#0", "fc2", "act#1", "out", ""]
    assert mine.keys() == theirs.keys() and len(mine) == len(widths) * (steps + 1) * len(names)
    worst = max(abs(mine[k] - theirs[k]) / theirs[k] for k in mine)
    assert worst < 1e-10, worst
    # the runs trained: every coordinate moves by far more than the tolerance from step to step,
    # so matching mup's t to the wrong step (or a different lr) would fail
    shifted = min(
        abs(mine[(w, s + 1, m)] - theirs[(w, s, m)]) / theirs[(w, s, m)]
        for w in widths
        for s in range(steps)
        for m in names
    )
    assert shifted > 1e3 * 1e-10, shifted  # measured: 3.5e-6 (sgd), 3.6e-3 (adam)


# --- gdscope's own μP MLP under a named optimizer against mup's -----------------------------


def _worst(ours, theirs: dict[tuple[int, int, str], float]) -> float:
    mine = {(r.width, r.step, r.module): r.rms for r in ours.rows}
    assert mine.keys() == theirs.keys() and len(mine) == 2 * 4 * 3
    return max(abs(mine[key] - theirs[key]) / theirs[key] for key in mine)


LAYERS = ["layers.0", "layers.1", "layers.2"]


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.3), ("adam", 0.01)])
def test_gdscopes_mup_mlp_under_a_named_optimizer_equals_mups_get_coord_data(optimizer, lr):
    # a named optimizer applies gdscope's lr multipliers (those of MuSGD / MuAdam)
    widths, steps, data = [16, 64], 3, mup_data()
    ours = coordinate_check(
        gdscope_mup_mlp, widths, data, steps=steps, lr=lr, modules=LAYERS, optimizer=optimizer
    )
    frame = mup_coord.get_coord_data(
        {w: functools.partial(mup_twin, w) for w in widths}, [data],
        optimizer=optimizer, lr=lr, mup=True, nsteps=steps + 1, nseeds=1, cuda=False,
        show_progress=False, lossfn="xent", output_fdict={"l2": "l2"},
        filter_module_by_name=lambda name: name in ("l0", "l1", "l2"),
    )  # fmt: skip
    theirs = {
        (int(r.width), int(r.t) - 1, f"layers.{r.module[1]}"): r.l2 for r in frame.itertuples()
    }
    worst = _worst(ours, theirs)
    assert worst < 1e-12, worst  # measured ≈ 3e-16; before the fix 0.37 (sgd), 0.45 (adam)


def test_gdscopes_mup_mlp_under_named_adamw_equals_mup_adamw():
    # "adamw" is torch's AdamW with its default weight decay 0.01 (get_coord_data's MuAdamW
    # drops it: mup.optim.process_param_groups defaults weight_decay to 0), so compare with
    # MuAdamW(weight_decay=0.01) through coordinate_check, equal to get_coord_data above
    widths, steps, data, lr = [16, 64], 3, mup_data(), 0.01
    kw: dict = {"steps": steps, "lr": lr}
    ours = coordinate_check(gdscope_mup_mlp, widths, data, modules=LAYERS, optimizer="adamw", **kw)
    mu_adamw = functools.partial(mup_optimizer, "adamw", weight_decay=0.01)
    ref = coordinate_check(
        mup_twin, widths, data, modules=["l0", "l1", "l2"], optimizer=mu_adamw, **kw
    )
    theirs = {(r.width, r.step, f"layers.{r.module[1]}"): r.rms for r in ref.rows}
    worst = _worst(ours, theirs)
    assert worst < 1e-12, worst  # before the fix 0.45 (torch's AdamW without multipliers)
