"""Ctrl-C during ``gdscope diagnose``: it exited 130 without a word and stored nothing, even
with ``--results``; it now says where it stopped, and stores the series as an interrupted run.

The interrupt is raised in-process by a probe of the run (as SIGINT raises KeyboardInterrupt
in the main thread), at a known checkpoint, so the test is exact and fast.
"""

import dataclasses
import importlib
import re

import pytest

import gdscope as gs
from _helpers import run_cli, user_module
from gdscope.store import Store
from gdscope.training import PROBES

ARGS = ["irnets:net", "--data", "irnets:data", "--lr", "0.1", "--steps", "1000", "--every", "5"]
ARGS += ["--probe-size", "4", "--hessian-size", "4"]


@pytest.fixture
def project(tmp_path, monkeypatch, one_thread):
    return user_module(tmp_path, monkeypatch, "irnets")


@pytest.fixture
def ctrl_c_at_step_10(monkeypatch):
    """Raise KeyboardInterrupt from the PL probe at checkpoint 10 (after 10 updates)."""
    real = PROBES["pl_ratio"]

    def probe(ctx):
        if ctx.step == 10:
            raise KeyboardInterrupt
        return real.fn(ctx)

    monkeypatch.setitem(PROBES, "pl_ratio", dataclasses.replace(real, fn=probe))


def test_ctrl_c_says_where_it_stopped_and_stores_the_run_as_interrupted(
    project, ctrl_c_at_step_10, monkeypatch, capsys
):
    results = project / "results"
    code, out, err = run_cli(monkeypatch, capsys, "diagnose", *ARGS, "--results", str(results))
    assert code == 130
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(
        r"interrupted after 10 of 1000 steps \(last loss \S+\); stored as run "
        r"'diagnose-net' \(status interrupted\) in \S+: gdscope show \S+ lists it; run the "
        r"command again to diagnose from the start",
        lines[0],
    ), lines[0]
    store = Store(results)
    (run,) = store.studies(monitored=True)
    (trial,) = store.records(run["name"], "monitor")
    assert trial.status == "interrupted"
    steps, _ = trial.series["loss"]
    assert list(steps) == list(range(11))  # checkpoints 0..10: the loss of each
    assert {"init_sharpness", "ntk_lambda_min", "sharpness", "lr"} <= set(trial.series)


def test_ctrl_c_without_results_says_nothing_is_stored(
    project, ctrl_c_at_step_10, monkeypatch, capsys
):
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *ARGS)
    assert code == 130
    line = err.strip()
    assert line.startswith("interrupted after 10 of 1000 steps (last loss "), line
    assert "nothing is stored (--results DIR keeps an interrupted run's series)" in line
    assert len(line.splitlines()) == 1


def test_ctrl_c_at_init_says_so(project, monkeypatch, capsys):
    """Ctrl-C while measuring S₀ (before the first update) says that, not 'after 0 steps'."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module = importlib.import_module("gdscope.diagnose.measure")  # gs.diagnose is the function
    monkeypatch.setattr(module, "sharpness", interrupted)
    results = project / "results"
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *ARGS, "--results", str(results))
    assert code == 130
    assert err.strip().startswith(
        "interrupted while measuring at init, before the first of 1000 steps; stored as run"
    ), err


def test_the_python_api_raises_keyboard_interrupt_after_storing(project, ctrl_c_at_step_10):
    results = project / "results"
    with pytest.raises(KeyboardInterrupt) as caught:
        gs.diagnose(
            "irnets:net", "irnets:data", lr=0.1, steps=1000, every=5, results=results, run="mine"
        )
    stop = caught.value
    assert getattr(stop, "stored", None) == "mine"
    partial = getattr(stop, "partial", None)
    assert partial is not None and (partial.steps, partial.phase) == (10, "training")
    (trial,) = Store(results).records("mine", "monitor")
    assert trial.status == "interrupted"


def test_ctrl_c_while_building_the_model_says_so(project, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module = importlib.import_module("gdscope.diagnose.measure")
    monkeypatch.setattr(module, "build_trial", interrupted)
    code, _, err = run_cli(monkeypatch, capsys, "diagnose", *ARGS)
    assert code == 130
    assert err.strip() == (
        "interrupted outside the run (building the model and data, or storing); run the "
        "command again to diagnose from the start"
    )
