"""A store whose finished trials lost their series is reported as damaged, and they rerun.

Issue 13: a trial with status ``completed`` but no series rows (rows deleted, or the whole
``series`` table dropped) is not counted as done; the store warns in one line how many trials of
which study lack their series, and the next run trains them again, replacing their rows and
nothing else.
"""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing

import pytest

from _helpers import run_cli
from _stores import assert_same_results, kernel_study, snapshot
from gdscope import api
from gdscope.store import Store, StoreDamaged
from gdscope.training import Trace

STUDY = kernel_study("tiny-damage", ns="[4, 8, 16]", seeds="[0, 1]")


def _sql(store: Store, *statements: str) -> None:
    with closing(sqlite3.connect(store.path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


@pytest.fixture
def ran(tmp_path):
    """A study run into a store, and a copy of that store's contents."""
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    results = tmp_path / "res"
    first = api.run_study(path, results=results)
    assert (first.trials, first.ran) == (6, 6)
    return path, Store(results), snapshot(Store(results))


def test_trials_whose_series_rows_were_deleted_are_reported_and_rerun(ran):
    path, store, before = ran
    victims = sorted(store.finished_hashes())[:2]
    _sql(store, *(f"DELETE FROM series WHERE trial_hash = '{h}'" for h in victims))
    assert store.damaged() == {("tiny-damage", "quick"): 2}
    with pytest.warns(StoreDamaged) as caught:
        done = Store(store.directory, read_only=True).finished_hashes()
    assert done.isdisjoint(victims) and len(done) == 4
    [warning] = caught
    text = str(warning.message)
    assert "\n" not in text and "2 trials of tiny-damage (quick)" in text
    assert "lack their series" in text and "rerun" in text
    # the dry run counts them as not stored; the run retrains exactly them
    with pytest.warns(StoreDamaged):
        assert api.plan_study(path, results=store.directory).stored == 4
    with pytest.warns(StoreDamaged):
        again = api.run_study(path, results=store.directory)
    assert (again.ran, again.missing, again.failed) == (2, 0, 0)
    assert store.damaged() == {}
    assert_same_results(store, Store(store.directory))  # sanity of the helper
    after = snapshot(store)
    assert after == before  # the same trials, links, series (bitwise) and verdicts
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreDamaged)
        assert api.run_study(path, results=store.directory).ran == 0


def test_a_dropped_series_table_is_recreated_and_every_trial_rerun(ran, monkeypatch, capsys):
    path, store, before = ran
    _sql(store, "DROP TABLE series")
    results = str(store.directory)
    # read-only readers see an empty table (nothing written), and say the store is damaged
    code, _, err = run_cli(monkeypatch, capsys, "run", str(path), "--results", results, "--dry-run")
    assert code == 0, err
    [line] = err.strip().splitlines()
    assert line.startswith("warning: ") and "6 trials of tiny-damage (quick)" in line
    with closing(sqlite3.connect(store.path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "series" not in tables  # the dry run wrote nothing
    code, _, err = run_cli(monkeypatch, capsys, "show", results)
    assert code == 0 and err.startswith("warning: ") and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(monkeypatch, capsys, "run", str(path), "--results", results)
    assert code == 0, err
    assert err.startswith("warning: ") and "6 trials of tiny-damage (quick)" in err
    assert "6 run" in err
    assert snapshot(store) == before


def test_record_trial_replaces_only_the_damaged_trial(tmp_path):
    store = Store(tmp_path)
    trace = Trace(status="completed", steps=1, reason="ran 1 steps", records={"loss": ([0], [1.0])})
    other = Trace(status="completed", steps=1, reason="ran 1 steps", records={"loss": ([0], [2.0])})
    assert store.record_trial("a", "quick", {"seed": 0}, "h1", trace)
    assert store.record_trial("a", "quick", {"seed": 1}, "h2", other)
    assert store.link_trial("b", "quick", "h1")
    assert not store.record_trial("a", "quick", {"seed": 0}, "h1", trace)  # sound: kept
    _sql(store, "DELETE FROM series WHERE trial_hash = 'h1'")
    with pytest.warns(StoreDamaged, match=r"1 trial of a \(quick\) and 1 trial of b \(quick\)"):
        assert store.finished_hashes() == {"h2"}
    assert store.record_trial("a", "quick", {"seed": 0}, "h1", trace)  # damaged: replaced
    assert store.damaged() == {}
    records = {r.hash: r for r in store.records()}
    assert records["h1"].series["loss"][1].tolist() == [1.0]
    assert records["h2"].series["loss"][1].tolist() == [2.0]
    assert store.trial_counts() == {
        ("a", "quick"): {"completed": 2},
        ("b", "quick"): {"completed": 1},
    }


def test_failed_trials_and_monitored_runs_are_not_damaged(tmp_path):
    store = Store(tmp_path)
    store.record_trial("a", "quick", {"seed": 0}, "h1", "boom")  # failed: no series, rerun anyway
    _sql(
        store,
        "INSERT INTO trials VALUES ('m1', 'run', 'monitor', '{}', 'monitor', NULL, 'completed', "
        "'', NULL, 0, 0.0, '{}', '2026-01-01')",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreDamaged)
        assert store.finished_hashes() == {"m1"}
    assert store.damaged() == {}
