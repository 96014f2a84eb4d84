"""gs.monitor: gdscope's scheduled probes inside a user's own training loop, into the store."""

import json
import sqlite3
from contextlib import closing

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import gdscope as gs
from gdscope.cli import app
from gdscope.config import canonical_hash
from gdscope.store import Store
from gdscope.store.runs import config_hash

PROBES = {"loss": 1, "sharpness": 10, "grad_norm": 5}


def _mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def _loader(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


def _train(model, loader, updates, mon=None, fail_at=None):
    """A plain loop: Adam, StepLR, clipping; ``mon.step(0)``, then ``mon.step(t)`` after update t."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    t, lrs = 0, {0: sched.get_last_lr()[0]}
    if mon is not None:
        mon.step(0, lr=lrs[0])
    while t < updates:
        for x, y in loader:
            if t == fail_at:
                raise RuntimeError("boom")
            opt.zero_grad()
            gs.losses.mse(model(x), y).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            t += 1
            lrs[t] = sched.get_last_lr()[0]  # the lr of the next update
            if mon is not None:
                mon.step(t, lr=lrs[t])
            if t == updates:
                break
    return lrs


def _cli(*args):
    out = CliRunner().invoke(app, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    return out.output


def _rows(path):
    with closing(sqlite3.connect(path)) as conn:
        trials = conn.execute("SELECT * FROM trials ORDER BY hash").fetchall()
        series = conn.execute("SELECT * FROM series ORDER BY 1, 2, 3").fetchall()
        studies = conn.execute("SELECT * FROM studies ORDER BY 1, 2").fetchall()
    return trials, series, studies


def test_monitor_records_a_plain_loop_that_show_export_and_report_read(tmp_path):
    model, loader = _mlp(), _loader()
    with gs.monitor(
        model, gs.losses.mse, loader, probes=PROBES, results=tmp_path, run="my-run", probe_size=48
    ) as mon:
        lrs = _train(model, loader, 29, mon)
    assert mon.status == "completed", mon.trace.reason

    store = Store(tmp_path, read_only=True)
    assert store.studies() == []  # a monitored run is no study: verify never sees it
    (run,) = store.studies(monitored=True)
    assert (run["name"], run["scale"], run["spec"]["kind"]) == ("my-run", "monitor", "monitor")
    (trial,) = store.trials("my-run", "monitor")
    config = trial["config"]
    assert (trial["kind"], trial["status"], trial["steps"]) == ("monitor", "completed", 29)
    assert trial["hash"] == mon.key == config_hash(config) == canonical_hash(config)
    assert config["model"] == {"class": "Sequential", "parameters": 4 * 16 + 16 + 16 + 1}
    assert config["probes"] == PROBES and config["attempt"] == 1
    assert config["probe_set"] == {"source": "DataLoader", "examples": 48}

    (record,) = store.records("my-run", "monitor")
    steps, lr = record.series["lr"]
    assert steps.tolist() == list(range(30))
    np.testing.assert_array_equal(lr, [lrs[t] for t in range(30)])
    assert lr[0] == 1e-2 and lr[-1] == 1e-2 * 0.5**2  # StepLR halves every 10 steps
    assert record.series["loss"][0].tolist() == list(range(30))
    # every 10 steps, and every probe once more at the last step (as train does)
    assert record.series["sharpness"][0].tolist() == [0, 10, 20, 29]
    assert record.series["grad_norm"][0].tolist() == [0, 5, 10, 15, 20, 25, 29]
    assert np.all(record.series["sharpness"][1] > 0)
    for metric in ("loss", "sharpness", "lr"):  # the store holds what the monitor measured
        np.testing.assert_array_equal(record.series[metric][1], mon.trace.series(metric)[1])

    assert "my-run (monitor): 1 completed" in _cli("show", tmp_path)
    export = tmp_path / "long.csv"
    _cli("export", tmp_path, "--csv", export, "--study", "my-run")
    lines = export.read_text().splitlines()
    columns = lines[0].split(",")
    assert {"model.class", "probes.sharpness", "run", "metric", "step", "value"} <= set(columns)
    lr_rows = [dict(zip(columns, line.split(","), strict=True)) for line in lines[1:]]
    lr_rows = [r for r in lr_rows if r["metric"] == "lr"]
    assert [int(r["step"]) for r in lr_rows] == list(range(30))
    assert float(lr_rows[-1]["value"]) == lrs[29]
    _cli("report", tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "my-run" in page and "Sharpness against 2/η" in page
    assert "2/η of the recorded lr" in page
    before = _rows(store.path)
    _cli("verify", tmp_path)  # nothing to re-judge, nothing re-run or written
    assert _rows(store.path) == before


def test_measuring_leaves_the_users_run_bitwise_as_without_it(tmp_path):
    """Eval mode and back, RNG streams restored, .grad untouched: same weights to the bit."""
    plain, watched = _mlp(dropout=0.2), _mlp(dropout=0.2)
    torch.manual_seed(1)
    _train(plain, _loader(), 25)
    loader = _loader()
    torch.manual_seed(1)
    with gs.monitor(watched, gs.losses.mse, loader, probes=PROBES, results=None) as mon:
        _train(watched, loader, 25, mon)
    assert mon.status == "completed" and watched.training
    for a, b in zip(plain.parameters(), watched.parameters(), strict=True):
        assert torch.equal(a, b)


def test_series_are_stored_while_the_run_goes_on(tmp_path):
    model, loader = _mlp(), _loader()
    x, y = next(iter(loader))
    with gs.monitor(model, gs.losses.mse, (x, y), results=tmp_path, flush_every_s=0) as mon:
        _train(model, loader, 2, mon)
        (trial,) = Store(tmp_path, read_only=True).trials()
        assert trial["status"] == "running"
        (record,) = Store(tmp_path, read_only=True).records()
        assert record.series["loss"][0].tolist() == [0, 1, 2]
    assert mon.run == "Sequential" and mon.config["probe_set"]["source"] == "tensors"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"probes": {"sharpnes": 5}}, ["probes", "'sharpnes'", "did you mean 'sharpness'"]),
        ({"probes": {"loss": 0}}, ["probes", "'loss'", "positive integer", "got 0"]),
        ({"probes": {"loss": 2.5}}, ["probes", "positive integer", "got 2.5"]),
        ({"probe_batch": "data.csv"}, ["probe_batch", "got str", "DataLoader"]),
        ({"probe_batch": [torch.ones(2)] * 3}, ["probe_batch", "list of 3 items"]),
        ({"probe_batch": (torch.ones(3, 2), torch.ones(2))}, ["probe_batch", "(3, 2)", "(2,)"]),
        ({"probe_size": 0}, ["probe_size", "positive integer"]),
        ({"run": ""}, ["run", "non-empty"]),
        ({"probes": {"test": 1}}, ["probes", "'test'", "eval_batch"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, kwargs, words):
    args = {"probe_batch": (torch.ones(8, 4), torch.ones(8, 1)), **kwargs}
    batch = args.pop("probe_batch")
    with pytest.raises(ValueError) as err:
        gs.monitor(_mlp(), gs.losses.mse, batch, results=tmp_path / "r", **args)
    message = str(err.value)
    assert "\n" not in message
    assert all(word in message for word in words), message
    assert not (tmp_path / "r").exists()


def test_bad_steps_and_values_are_refused(tmp_path):
    data = (torch.ones(8, 4), torch.ones(8, 1))
    mon = gs.monitor(_mlp(), gs.losses.mse, data, results=None)
    with pytest.raises(RuntimeError, match="inside"):
        mon.step(0)
    with mon:
        mon.step(3, batch_loss=0.5)
        with pytest.raises(ValueError, match="step must increase: got 3 after 3"):
            mon.step(3)
        with pytest.raises(ValueError, match="'loss' clashes"):
            mon.step(4, loss=1.0)
        with pytest.raises(ValueError, match="must be a number"):
            mon.step(5, batch_loss="high")  # pyright: ignore[reportArgumentType]
    assert mon.trace.series("batch_loss")[0].tolist() == [3]


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")]
)
def test_an_exception_keeps_the_series_so_far_and_the_status(tmp_path, error, status):
    model, loader = _mlp(), _loader()
    with (
        pytest.raises(type(error)),
        gs.monitor(
            model, gs.losses.mse, loader, probes=PROBES, results=tmp_path, run="crash"
        ) as mon,
    ):
        _train(model, loader, 29, mon)
        raise error
    (trial,) = Store(tmp_path, read_only=True).trials()
    assert (trial["status"], trial["steps"]) == (status, 29)
    assert trial["reason"].startswith(type(error).__name__)
    assert trial["reason"].endswith("after step 29")
    assert type(error).__name__ in trial["error"]  # the traceback
    (record,) = Store(tmp_path, read_only=True).records()
    assert record.series["lr"][0].tolist() == list(range(30))
    assert record.series["sharpness"][0].tolist() == [0, 10, 20]  # no final probes after a crash


def test_an_exception_in_the_users_step_mid_run(tmp_path):
    model, loader = _mlp(), _loader()
    with (
        pytest.raises(RuntimeError, match="boom"),
        gs.monitor(model, gs.losses.mse, loader, results=tmp_path, run="crash") as mon,
    ):
        _train(model, loader, 30, mon, fail_at=7)
    (trial,) = Store(tmp_path, read_only=True).trials()
    assert (trial["status"], trial["reason"]) == ("failed", "RuntimeError: boom after step 7")
    (record,) = Store(tmp_path, read_only=True).records()
    assert record.series["loss"][0].tolist() == list(range(8))


def test_a_diverging_loss_is_a_status_not_a_crash(tmp_path):
    model = _mlp()
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    with gs.monitor(model, gs.losses.mse, (x, y), probes=PROBES, results=tmp_path) as mon:
        mon.step(0, lr=50.0)
        for t in range(1, 41):  # the user's loop goes on; the probes stop
            opt.zero_grad()
            gs.losses.mse(model(x), y).backward()
            opt.step()
            mon.step(t, lr=50.0)
    assert mon.diverged and mon.status == "diverged"
    (trial,) = Store(tmp_path, read_only=True).trials()
    assert trial["status"] == "diverged" and "at step" in trial["reason"]
    (record,) = Store(tmp_path, read_only=True).records()
    last = int(record.series["loss"][0][-1])
    assert trial["steps"] == last < 40 and record.series["lr"][0].tolist() == list(range(41))


def test_running_twice_records_a_second_attempt_and_keeps_the_first(tmp_path):
    model, loader = _mlp(), _loader()
    with gs.monitor(model, gs.losses.mse, loader, results=tmp_path, run="again") as mon1:
        _train(model, loader, 5, mon1)
    store = Store(tmp_path, read_only=True)
    trials1, series1, _ = _rows(store.path)
    with gs.monitor(model, gs.losses.mse, loader, results=tmp_path, run="again") as mon2:
        _train(model, loader, 8, mon2)
    trials2, series2, studies = _rows(store.path)
    assert set(trials1) < set(trials2) and set(series1) < set(series2)  # nothing replaced
    assert [(name, scale) for name, scale, *_ in studies] == [("again", "monitor")]
    first, second = (json.loads(t[3]) for t in sorted(trials2, key=lambda t: t[3]))
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert mon1.key != mon2.key and mon2.config["attempt"] == 2
    assert "again (monitor): 2 completed" in _cli("show", tmp_path)


def test_a_study_store_is_left_alone(tmp_path):
    """An existing non-monitor row (run, "monitor") is refused, a foreign file is never touched."""
    (tmp_path / "gdscope.sqlite").write_text("not a database")
    mon = gs.monitor(_mlp(), gs.losses.mse, (torch.ones(4, 4), torch.ones(4, 1)), results=tmp_path)
    with pytest.raises(gs.store.StoreError, match="not a gdscope store"):
        mon.__enter__()
    assert (tmp_path / "gdscope.sqlite").read_text() == "not a database"


def test_a_row_of_another_kind_under_the_run_name_is_refused(tmp_path):
    Store(tmp_path)
    with closing(sqlite3.connect(tmp_path / "gdscope.sqlite")) as conn, conn:
        conn.execute(
            "INSERT INTO studies VALUES ('x', 'monitor', '{\"name\": \"x\"}', 'now', 'now')"
        )
    before = _rows(tmp_path / "gdscope.sqlite")
    mon = gs.monitor(
        _mlp(), gs.losses.mse, (torch.ones(4, 4), torch.ones(4, 1)), results=tmp_path, run="x"
    )
    with pytest.raises(gs.store.StoreError, match="no monitored run; choose another run name"):
        mon.__enter__()
    assert _rows(tmp_path / "gdscope.sqlite") == before
