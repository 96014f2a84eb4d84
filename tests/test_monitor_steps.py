"""gs.monitor in a loop of one's own: what step t means, and what measuring must leave alone.

Step t is the weights after t updates (step 0 before any), as gdscope.train counts its
checkpoints; the baselines of the "from init" probes are the first step's weights.
"""

import sqlite3
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gdscope as gs
from _helpers import assert_close
from gdscope.store import Store
from gdscope.store.runs import RunWriter


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), (x, y)


def _gd(model, data, mon, updates, lr=0.1, opt=None):
    """Full-batch updates: ``mon.step(0)`` first, ``mon.step(t)`` after the t-th update."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=lr)
    weights = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    mon.step(0, lr=lr)
    for t in range(1, updates + 1):
        opt.zero_grad()
        gs.losses.mse(model(data[0]), data[1]).backward()
        opt.step()
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        mon.step(t, lr=lr)
    return weights


def _distance(a, b):
    return sum(float(((a[k] - b[k]) ** 2).sum()) for k in a) ** 0.5


def test_step_t_is_the_weights_after_t_updates_and_the_baseline_is_step_0():
    model, data = _problem()
    probes = {"loss": 1, "dist_from_init": 1}
    with gs.monitor(model, gs.losses.mse, data, probes=probes, results=None) as mon:
        weights = _gd(model, data, mon, 4)
    steps, loss = mon.trace.series("loss")
    assert steps.tolist() == [0, 1, 2, 3, 4]
    probe = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    for t, w in enumerate(weights):
        probe.load_state_dict(w)
        with torch.no_grad():
            assert loss[t] == float(gs.losses.mse(probe(data[0]), data[1]))
    distance = mon.trace.series("dist_from_init")[1]
    assert distance[0] == 0.0
    for t, w in enumerate(weights):
        assert_close(distance[t], _distance(w, weights[0]), rtol=1e-6)


def test_a_step_0_after_an_update_warns_and_the_baselines_agree():
    """Every "from init" probe starts at the first step: dist_from_init, ntk_drift, residual."""
    model, data = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probes = {"dist_from_init": 1, "ntk_spectrum": 1, "residual": 1}
    with gs.monitor(model, gs.losses.mse, data, probes=probes, results=None) as mon:
        opt.zero_grad()
        gs.losses.mse(model(data[0]), data[1]).backward()
        opt.step()
        with pytest.warns(UserWarning, match=r"mon.step\(0\) after the weights moved"):
            mon.step(0)
        mon.step(1)
    for metric in ("dist_from_init", "ntk_drift"):
        assert mon.trace.series(metric)[1][0] == 0.0
    assert mon.trace.series("relative_residual")[1][0] == 1.0


def test_every_probe_is_measured_at_the_last_step_even_where_none_is_due():
    model, data = _problem()
    probes = {"loss": 5, "sharpness": 10}
    with gs.monitor(model, gs.losses.mse, data, probes=probes, results=None) as mon:
        _gd(model, data, mon, 23)
    assert mon.trace.series("sharpness")[0].tolist() == [0, 10, 20, 23]
    assert mon.trace.series("loss")[0].tolist() == [0, 5, 10, 15, 20, 23]


def test_drawing_the_probe_set_leaves_a_seeded_loader_order_alone():
    x = torch.arange(40.0)[:, None]
    data = TensorDataset(x, torch.zeros(40, 1))

    def epochs(monitored):
        loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator())
        loader.generator.manual_seed(3)  # pyright: ignore[reportOptionalMemberAccess]
        if monitored:
            gs.monitor(nn.Linear(1, 1), gs.losses.mse, loader, probe_size=12, results=None)
        return [torch.cat([b[0] for b in loader]).flatten().tolist() for _ in range(2)]

    assert epochs(True) == epochs(False)


def test_an_empty_schedule_ends_completed_in_the_store(tmp_path):
    model, data = _problem()
    with gs.monitor(model, gs.losses.mse, data, probes={}, results=tmp_path, run="r") as mon:
        mon.step(0)
        mon.step(1)
    assert mon.status == "completed" and mon.trace.reason == "no step was recorded"
    (trial,) = Store(tmp_path, read_only=True).trials()
    assert trial["status"] == "completed"


def test_a_write_that_fails_is_written_at_the_next_flush(tmp_path, monkeypatch):
    model, data = _problem()
    append, calls = RunWriter.append, []

    def flaky(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise sqlite3.OperationalError("database is locked")
        append(self, rows)

    monkeypatch.setattr(RunWriter, "append", flaky)
    with gs.monitor(model, gs.losses.mse, data, results=tmp_path, flush_every_s=0) as mon:
        mon.step(0, lr=0.1)
        with pytest.raises(sqlite3.OperationalError):
            mon.step(1, lr=0.1)
        mon.step(2, lr=0.1)
    (record,) = Store(tmp_path, read_only=True).records()
    assert record.series["loss"][0].tolist() == [0, 1, 2]
    assert record.series["lr"][0].tolist() == [0, 1, 2]


def test_the_preconditioned_sharpness_reads_the_loops_optimizer():
    model, data = _problem()
    probes = {"preconditioned_sharpness": 2}
    with pytest.raises(ValueError, match=r"^probes: 'preconditioned_sharpness' reads the optim"):
        gs.monitor(model, gs.losses.mse, data, probes=probes, results=None)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with gs.monitor(model, gs.losses.mse, data, probes=probes, results=None, optimizer=opt) as mon:
        _gd(model, data, mon, 4, lr=0.01, opt=opt)
    steps, ratio = mon.trace.series("preconditioned_sharpness_ratio")
    assert steps.tolist() == [2, 4]  # nothing before the first update: no preconditioner yet
    model.eval()
    direct = gs.probes.preconditioned_sharpness(model, gs.losses.mse, data, opt, lr_scaled=True)
    edge = gs.probes.adaptive_stability_threshold(opt, lr_scaled=True)
    assert_close(ratio[-1], direct / edge, rtol=1e-4)


def test_measuring_inside_inference_mode_and_after_a_layer_is_unfrozen():
    model, data = _problem()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probes = {"loss": 1, "dist_from_init": 1, "sharpness": 1}
    with gs.monitor(model, gs.losses.mse, data, probes=probes, results=None) as mon:
        with torch.inference_mode():
            mon.step(0)
        for t in (1, 2):
            opt.zero_grad()
            gs.losses.mse(model(data[0]), data[1]).backward()
            opt.step()
            mon.step(t)
        model[0].requires_grad_(True)  # the optimizer holds it already (without a gradient)
        for t in (3, 4):
            opt.zero_grad()
            gs.losses.mse(model(data[0]), data[1]).backward()
            opt.step()
            if t == 3:
                with pytest.warns(UserWarning, match="trainable parameters changed before step 3"):
                    mon.step(t)
            else:
                mon.step(t)
    assert mon.status == "completed"
    assert mon.trace.series("dist_from_init/0.weight")[0].tolist() == [3, 4]
    assert mon.trace.series("sharpness")[0].tolist() == [0, 1, 2, 3, 4]


def test_probes_given_as_a_list_are_refused_by_name():
    model, data = _problem()
    with pytest.raises(ValueError, match=r"^probes must be a mapping \{probe name: every k"):
        gs.monitor(model, gs.losses.mse, data, probes=["loss"], results=None)  # pyright: ignore[reportArgumentType]


def test_no_warning_in_the_documented_loop():
    model, data = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gs.monitor(model, gs.losses.mse, data, results=None) as mon:
            _gd(model, data, mon, 2)
