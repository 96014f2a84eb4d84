"""Several studies through one trial queue, runner objects, and the store comparison."""

import json
import sqlite3
from contextlib import closing

import pytest

from _stores import kernel_study
from gdscope import api
from gdscope.runners import LocalRunner, RayRunner, make_runner
from gdscope.runners.queue import QueueEntry, TrialQueue
from gdscope.store.diff import diff_stores, main


def _studies(tmp_path):
    """Two studies sharing the trials at n = 8 and 16 (same configs, so the same hashes)."""
    a = tmp_path / "a.toml"
    a.write_text(kernel_study("first", ns="[4, 8, 16]", seeds="[0, 1]"))
    b = tmp_path / "b.toml"
    b.write_text(kernel_study("second", ns="[8, 16, 32]", seeds="[0, 1]"))
    return a, b


def test_one_queue_stores_what_one_study_after_another_stores(tmp_path):
    a, b = _studies(tmp_path)
    api.run_study(a, results=tmp_path / "apart")
    api.run_study(b, results=tmp_path / "apart")
    judged = []
    both = api.run_studies([api.load(a), b], results=tmp_path / "together", on_study=judged.append)
    assert diff_stores(tmp_path / "apart", tmp_path / "together") == []
    # the shared trials ran once, under the first study; the second reused them
    assert [(r.trials, r.ran) for r in both] == [(6, 6), (6, 2)]
    assert sorted(r.study.name for r in judged) == ["first", "second"]
    again = api.run_studies([a, b], results=tmp_path / "together")
    assert [r.ran for r in again] == [0, 0]  # everything stored: judged without training


def test_a_study_whose_trials_are_all_stored_is_judged_before_the_queue_runs(tmp_path):
    a, b = _studies(tmp_path)
    api.run_study(a, results=tmp_path / "res")
    order = []
    api.run_studies([a, b], results=tmp_path / "res", on_study=lambda r: order.append(r.ran))
    assert order == [0, 2]


def test_store_diff_names_every_difference_and_exits_1(tmp_path, capsys):
    a, _ = _studies(tmp_path)
    for name in ("x", "y"):
        api.run_study(a, results=tmp_path / name)
    assert main([str(tmp_path / "x"), str(tmp_path / "y")]) == 0
    with closing(sqlite3.connect(tmp_path / "y" / "gdscope.sqlite")) as conn, conn:
        (trial, metric, step), *_ = conn.execute(
            "SELECT trial_hash, metric, step FROM series WHERE value > 0"
        )
        conn.execute(  # one ulp: the comparison is bit for bit
            "UPDATE series SET value = value * (1 + 2.3e-16) WHERE trial_hash = ? AND metric = ? "
            "AND step = ?",
            (trial, metric, step),
        )
        conn.execute("UPDATE verdicts SET status = 'FAIL'")
        conn.execute("UPDATE trials SET wall_time_s = 0")  # timings may differ
    lines = diff_stores(tmp_path / "x", tmp_path / "y")
    assert len(lines) == 2
    assert lines[0].startswith("series {'trial_hash'") and metric in lines[0]
    assert "verdicts" in lines[1] and "→ 'FAIL'" in lines[1]
    assert main([str(tmp_path / "x"), str(tmp_path / "y")]) == 1
    assert main([str(tmp_path / "x"), str(tmp_path / "nowhere")]) == 2
    assert "no gdscope store" in capsys.readouterr().err


def test_store_diff_takes_a_config_stored_in_full_as_the_same_and_a_changed_value_not(tmp_path):
    a, _ = _studies(tmp_path)
    for name in ("x", "y"):
        api.run_study(a, results=tmp_path / name)
    with closing(sqlite3.connect(tmp_path / "x" / "gdscope.sqlite")) as conn, conn:
        (digest, text), *_ = conn.execute("SELECT hash, config_json FROM trials")
        config = json.loads(text)
        assert config["momentum"] == "auto"  # stored validated: defaults included
        del config["momentum"]  # as a store written before kept the study file's keys
        conn.execute(
            "UPDATE trials SET config_json = ? WHERE hash = ?", (json.dumps(config), digest)
        )
    assert diff_stores(tmp_path / "x", tmp_path / "y") == []
    with closing(sqlite3.connect(tmp_path / "x" / "gdscope.sqlite")) as conn, conn:
        config["tol"] = 1e-3
        conn.execute(
            "UPDATE trials SET config_json = ? WHERE hash = ?", (json.dumps(config), digest)
        )
    (line,) = diff_stores(tmp_path / "x", tmp_path / "y")
    assert line.startswith("trials {'hash'") and "config_json" in line


def test_trial_queue_owner_links_and_completion():
    queue = TrialQueue(
        [
            QueueEntry(
                "a", "a", [{"i": 1}, {"i": 2}, {"i": 2}], ["v1", "v2", "v2"], ["h1", "h2", "h2"]
            ),
            QueueEntry("b", "b", [{"i": 2, "b": 0}], ["v2b"], ["h2"]),
        ]
    )
    assert queue.todo({"h1"}) == [("h2", "v2")]  # distinct, the owner's validated config
    assert queue.config("h2") == {"i": 2}  # and what the store keeps: the owner's config
    assert queue.already_stored({"h1"}) == [(0, "h1")]
    assert queue.complete() == []
    assert queue.stored("h2", failed=True) == [0, 1]
    assert (queue.ran, queue.failed) == ([1, 0], [1, 0])  # counted on the owner only


def test_make_runner_builds_runners_and_refuses_bad_flags():
    assert isinstance(make_runner("local", workers=3), LocalRunner)
    ray = make_runner("ray", address="auto", workers=2)
    assert isinstance(ray, RayRunner) and ray.address == "auto"
    with pytest.raises(ValueError, match="runner"):
        make_runner("lcoal")
    with pytest.raises(ValueError, match="address='auto' is for runner='ray'"):
        make_runner("local", address="auto")
    with pytest.raises(ValueError, match="workers"):
        make_runner("local", workers=0)


def test_local_runner_checks_cuda_trials_where_no_gpu_is_seen(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runner = LocalRunner()
    runner.check_devices([{"device": "cpu"}])
    with pytest.raises(ValueError, match="torch sees no GPU"):
        runner.check_devices([{"device": "cuda:0"}])


def test_a_loaded_study_takes_no_overrides(tmp_path):
    a, _ = _studies(tmp_path)
    with pytest.raises(api.StudyError, match="overrides"):
        api.run_study(api.load(a), results=tmp_path / "r", overrides=["seeds=[0]"])
    assert not (tmp_path / "r").exists()


def test_each_trial_is_validated_once_per_run(tmp_path, monkeypatch):
    from gdscope.trials import trial

    calls = []
    validate = trial._TrialValidator.__call__

    def counted(self, raw):
        calls.append(raw["data"]["n"])
        return validate(self, raw)

    monkeypatch.setattr(trial._TrialValidator, "__call__", counted)
    a, b = _studies(tmp_path)
    api.run_study(a, results=tmp_path / "one")
    assert sorted(calls) == [4, 4, 8, 8, 16, 16]  # 3 points × 2 seeds: loading validates none
    calls.clear()
    api.run_studies([a, b], results=tmp_path / "two")
    assert len(calls) == 12  # each study's 6 trials once (the 4 shared ones run once)
