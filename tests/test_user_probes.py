"""A user's own scheduled probe: ``gs.register_probe``, scheduled in a study run by worker processes."""

import pytest

import gdscope as gs
from gdscope import api
from gdscope.training.user_probes import registered_probes, unregister_probe

STUDY = """
name = "weight-norm-grows"
seeds = [0, 1]
[base]
steps = 10
"optimizer.lr" = 0.5
"model.width" = 16
"data.n" = 16
probes = { loss = 5, weight_norm = 5 }
[sweep]
"model.depth" = [2, 3]
[[claims]]
id = "weights-move"
kind = "within"
description = "the weights' norm changes by less than 50 % in 10 steps"
y = { reduce = "final_over_initial", metric = "weight_norm" }
band = [0.5, 1.5]
"""


def weight_norm(ctx):
    """The parameters' Euclidean norm (a probe defined at module level: workers import it)."""
    return {"weight_norm": float(sum(p.pow(2).sum() for p in ctx.params.values()) ** 0.5)}


@pytest.fixture
def registered():
    gs.register_probe("weight_norm", weight_norm, metrics=["weight_norm"])
    yield
    unregister_probe("weight_norm")


def test_a_registered_probe_runs_in_a_study_on_worker_processes(registered, tmp_path):
    result = api.run_study(_load(tmp_path), workers=2, results=tmp_path / "r")
    (verdict,) = result.verdicts
    assert verdict.status == "PASS" and verdict.n_points == 4, verdict.reason
    assert result.failed == 0


def _load(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return api.load(path)


def test_a_study_reading_an_unregistered_probe_is_refused_at_load(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    with pytest.raises(api.StudyError, match="weight_norm"):
        api.run_study(api.load(path), results=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("name", "fn", "metrics", "message"),
    [
        ("two words", weight_norm, ["m"], "must be letters"),
        ("sharpness", weight_norm, ["m"], "is a built-in probe"),
        ("mine", 3, ["m"], "must be callable"),
        ("mine", weight_norm, [], "must name every metric"),
    ],
)
def test_bad_registrations_are_one_line_errors(name, fn, metrics, message):
    with pytest.raises(ValueError, match=message):
        gs.register_probe(name, fn, metrics=metrics)
    assert "mine" not in registered_probes() and "two words" not in gs.training.PROBES


def test_a_name_is_registered_once_unless_replaced(registered):
    with pytest.raises(ValueError, match="replace=True"):
        gs.register_probe("weight_norm", weight_norm, metrics=["weight_norm"])
    gs.register_probe("weight_norm", weight_norm, metrics=["weight_norm", "x"], replace=True)
    assert gs.training.PROBES["weight_norm"].metrics == ("weight_norm", "x")
