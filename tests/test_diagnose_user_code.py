"""``gs.diagnose`` on registered names, and without touching the global probe registry."""

import importlib
import sys
from typing import Any

import pytest
import torch

import gdscope as gs
from _helpers import registries_restored
from gdscope.diagnose.measure import _SUBSET_SHARPNESS
from gdscope.store import Store
from gdscope.training import PROBES
from gdscope.training.user_probes import registered_probes, unregister_probe

NETS = """
import torch
import gdscope as gs


def mlp(width=16, depth=2, d=6):
    return gs.models.mlp(d_in=d, width=width, depth=depth, seed=0, dtype=torch.float64)


def sphere(n=24, d=6, scale=1.0, seed=0):
    x, y = gs.data.sphere(n=n, d=d, seed=seed, dtype=torch.float64)
    return x, scale * y
"""
SMALL: dict[str, Any] = {"lr": 0.05, "steps": 8, "every": 4, "dtype": "float64"}
SUBSET: dict[str, Any] = {
    "ntk_examples": 8,
    "hessian_examples": 12,
}  # fewer than n = 24: a probe subset


@pytest.fixture
def project(tmp_path, monkeypatch):
    """``dgusers.py`` in the current directory; one torch thread; registries restored after."""
    (tmp_path / "dgusers.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with registries_restored():
        yield tmp_path
    torch.set_num_threads(threads)
    sys.modules.pop("dgusers", None)


CALLS: list[int] = []


def users_probe(ctx):
    """A user's probe that happens to have the name diagnose used to register globally."""
    CALLS.append(ctx.step)
    return {"users_metric": 1.0}


def test_diagnose_leaves_the_global_probe_registry_alone(project):
    before, mine = dict(PROBES), registered_probes()
    diagnosis = gs.diagnose("dgusers:mlp", "dgusers:sphere", **SMALL, **SUBSET)
    assert dict(PROBES) == before and registered_probes() == mine  # nothing added or left over
    records = diagnosis.measurements.records
    assert records["sharpness"][0] == [0, 4, 8]  # measured on the subset along the run
    assert diagnosis.measurements.hessian_examples == 12

    gs.register_probe(_SUBSET_SHARPNESS, users_probe, metrics=["users_metric"])
    try:
        theirs = PROBES[_SUBSET_SHARPNESS]
        again = gs.diagnose("dgusers:mlp", "dgusers:sphere", **SMALL, **SUBSET)
        assert PROBES[_SUBSET_SHARPNESS] is theirs  # the user's probe of that name survives
        assert registered_probes()[_SUBSET_SHARPNESS] is theirs
        assert CALLS == []  # and diagnose ran its own probe, not the user's
        assert "users_metric" not in again.measurements.records
        assert again.measurements.records["sharpness"] == records["sharpness"]
    finally:
        unregister_probe(_SUBSET_SHARPNESS)


def test_train_runs_a_probe_of_one_run_without_registering_it():
    x, y = gs.data.sphere(n=8, d=3, seed=0)
    net = gs.models.mlp(d_in=3, width=8, depth=2, seed=0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    steps_seen: list[int] = []

    def mine(ctx):
        steps_seen.append(ctx.step)
        return {"my_metric": float(ctx.step)}

    trace = gs.train(
        net, optimizer, (x, y), 4, probes={"loss": 1, "mine": 2}, extra_probes={"mine": mine}
    )
    assert trace.records["my_metric"] == ([0, 2, 4], [0.0, 2.0, 4.0]) and steps_seen == [0, 2, 4]
    assert "mine" not in PROBES
    with pytest.raises(ValueError, match="unknown probe 'mine'"):
        gs.train(net, optimizer, (x, y), 1, probes={"mine": 1})


def test_diagnose_takes_registered_names(project):
    dgusers = importlib.import_module("dgusers")
    gs.register_model("dg_mlp", dgusers.mlp)
    gs.register_dataset("dg_sphere", dgusers.sphere)
    by_factory = gs.diagnose(
        "dgusers:mlp",
        "dgusers:sphere",
        model_args={"width": 12},
        data_args={"n": 20, "d": 6, "scale": 0.5},
        **SMALL,
    )
    by_name = gs.diagnose(
        "dg_mlp",
        "dg_sphere",
        model_args={"width": 12},
        data_args={"n": 20, "d": 6, "scale": 0.5},
        results=project / "r",
        **SMALL,
    )
    config = by_name.measurements.config
    assert config.model.kind == "dg_mlp" and config.data.name == "dg_sphere"
    assert (config.data.n, config.data.d) == (20, 6) and config.data.options == {"scale": 0.5}
    for field in ("sharpness_init", "ntk_lambda_min", "loss_final", "parameters", "n_train"):
        assert getattr(by_name.measurements, field) == getattr(by_factory.measurements, field)
    [run] = Store(project / "r").trials()
    assert run["config"]["run"] == "diagnose-mlp"
    assert run["config"]["model"]["class"] == "dgusers:mlp"
