import math
import multiprocessing
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import pytest

from gdscope.runners import TrialError
from gdscope.store import Store, StoreBusy, StoreError, provenance
from gdscope.studies.table import flatten_config
from gdscope.training import Trace

CONFIG = {"kind": "network", "model": {"width": 8, "depth": 2}, "optimizer": {"lr": 0.1}, "seed": 3}


def _trace() -> Trace:
    trace = Trace(status="diverged", steps=3, reason="loss inf at step 3", wall_time_s=0.25)
    trace.record(0, {"loss": 1.0, "grad_norm/layers.0.weight": 0.5})
    trace.record(1, {"loss": 0.5, "grad_norm/layers.0.weight": math.nan})
    trace.record(2, {"loss": -math.inf, "sharpness": 2.0})
    trace.record(3, {"loss": math.inf})
    return trace


@dataclass
class _Verdict:
    claim_id: str
    status: str
    statistic: float
    ci: tuple[float, float] | None
    band: tuple[float | None, float | None] | None
    n_points: int
    reason: str
    evidence: list
    reference: str


def test_trace_round_trips_with_nonfinite_values_and_slashed_metrics(tmp_path):
    store = Store(tmp_path / "results")
    trace = _trace()
    assert store.record_trial("s", "quick", CONFIG, "h1", trace)
    [record] = store.records("s")
    assert record.hash == "h1" and record.status == "diverged" and record.reason == trace.reason
    assert record.config == flatten_config(CONFIG) and record.get("model.width") == 8
    assert set(record.series) == set(trace.records)
    for metric in trace.records:
        steps, values = record.series[metric]
        want_steps, want_values = trace.series(metric)
        assert steps.dtype == np.int64 and values.dtype == np.float64
        np.testing.assert_array_equal(steps, want_steps)
        np.testing.assert_array_equal(values, want_values)  # NaN == NaN here
    [row] = store.trials("s")
    assert (row["kind"], row["seed"], row["steps"], row["wall_time_s"]) == ("network", 3, 3, 0.25)
    assert row["config"] == CONFIG and row["error"] is None
    assert row["provenance"]["python"] and "timestamp" in row["provenance"]


def test_record_is_idempotent(tmp_path):
    store = Store(tmp_path)
    assert store.record_trial("s", "quick", CONFIG, "h1", _trace())
    other = Trace(status="completed", steps=1, reason="ran 1 steps", records={"loss": ([0], [9.0])})
    assert not store.record_trial("s", "quick", CONFIG, "h1", other)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM series").fetchone()[0] == len(_trace().rows())
    conn.close()
    assert store.records("s")[0].status == "diverged"


def test_finished_hashes_per_study_and_scale(tmp_path):
    store = Store(tmp_path)
    store.record_trial("a", "quick", CONFIG, "h1", _trace())
    store.record_trial("a", "paper", CONFIG, "h2", _trace())
    store.record_trial("b", "quick", CONFIG, "h3", ValueError("boom"))
    assert store.finished_hashes() == {"h1", "h2"}  # failed trials are run again
    assert store.finished_hashes("a") == {"h1", "h2"}
    assert store.finished_hashes("a", "quick") == {"h1"}
    assert store.finished_hashes("b") == set()
    assert store.link_trial("b", "quick", "h1") and not store.link_trial("b", "quick", "h3")
    assert store.finished_hashes("b") == {"h1"}
    assert [r.hash for r in store.records("b")] == ["h1", "h3"]
    assert [r.hash for r in store.records(hashes=["h2", "h3", "nope"])] == ["h2", "h3"]
    assert [r.hash for r in store.records("a", hashes={"h2", "h3"})] == ["h2"]
    with pytest.raises(ValueError, match="without a study"):
        store.records(scale="quick")


def test_failed_trial_is_stored_with_its_error_and_replaced_by_a_rerun(tmp_path):
    store = Store(tmp_path)
    try:
        raise ValueError("lr must be positive")
    except ValueError as err:
        error = TrialError.from_exception(err)
    store.record_trial("s", "quick", CONFIG, "h1", error)
    [row] = store.trials()
    assert row["status"] == "failed" and row["steps"] is None
    assert "Traceback" in row["error"] and "ValueError: lr must be positive" in row["error"]
    [record] = store.records("s")
    assert record.status == "failed" and record.series == {}
    assert record.reason == "ValueError: lr must be positive"
    assert store.record_trial("s", "quick", CONFIG, "h1", _trace())
    assert store.records("s")[0].status == "diverged"
    store.record_trial("s", "quick", CONFIG, "h2", "plain error text")
    assert store.trials()[1]["error"] == "plain error text"


def test_verdicts_are_replaced_on_rejudge(tmp_path):
    store = Store(tmp_path)
    first = _Verdict("D1", "FAIL", 0.1, (0.0, 0.2), (0.4, None), 5, "too small", [{"x": 1}], "ref")
    store.record_verdicts(
        "s", "quick", [first, _Verdict("D2", "PASS", math.nan, None, None, 0, "", [], "")]
    )
    store.record_verdicts(
        "s",
        "quick",
        [
            _Verdict(
                "D1",
                "PASS",
                np.float64(0.5),
                (0.4, 0.6),
                (0.4, 0.6),
                6,
                "ok",
                [{"x": np.int64(2)}],
                "ref",
            )
        ],
    )
    store.record_verdicts("s", "paper", [first])
    got = store.verdicts("s", "quick")
    assert [(v["claim_id"], v["status"]) for v in got] == [("D1", "PASS"), ("D2", "PASS")]
    assert (
        got[0]["statistic"] == 0.5
        and got[0]["ci"] == (0.4, 0.6)
        and got[0]["evidence"] == [{"x": 2}]
    )
    assert math.isnan(got[1]["statistic"]) and all(math.isnan(v) for v in got[1]["ci"])
    paper = store.verdicts("s", "paper")[0]
    assert paper["band"][0] == 0.4 and math.isnan(paper["band"][1])
    assert len(store.verdicts()) == 3


def test_studies_keep_first_run_and_update_spec(tmp_path):
    store = Store(tmp_path)
    store.record_study("s", "quick", {"seeds": [0, 1]})
    first = store.studies()[0]["first_run"]
    store.record_study("s", "quick", {"seeds": [0, 1, 2]})
    [row] = store.studies()
    assert row["spec"] == {"seeds": [0, 1, 2]} and row["first_run"] == first


def test_readers_can_require_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="no gdscope results in"):
        Store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    Store(tmp_path)
    assert Store(tmp_path, create=False).trials() == []


def test_wal_mode_and_schema_version(tmp_path):
    store = Store(tmp_path)
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path)


def test_provenance_names_versions_and_host():
    prov = provenance()
    assert {
        "python",
        "torch",
        "numpy",
        "gdscope",
        "platform",
        "cpu",
        "hostname",
        "git_commit",
    } <= set(prov)


def _try_writer(directory, queue):
    try:
        with Store(directory).writer():
            queue.put("acquired")
    except StoreBusy as err:
        queue.put(str(err))


def test_second_writer_in_another_process_is_refused(tmp_path):
    store = Store(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with store.writer(), store.writer():  # re-entrant in one Store
        child = ctx.Process(target=_try_writer, args=(str(tmp_path), queue))
        child.start()
        message = queue.get(timeout=60)
        child.join()
        with (
            pytest.raises(StoreBusy, match="in use by another gdscope run"),
            Store(tmp_path).writer(),
        ):
            pass
    assert message == (
        f"results dir {tmp_path} is in use by another gdscope run (pid {os.getpid()}); "
        "wait for it or use --results DIR2"
    )
    with Store(tmp_path).writer():  # released
        pass


def test_rerunning_a_failed_trial_keeps_every_study_linked_to_it(tmp_path):
    store = Store(tmp_path)
    store.record_trial("a", "quick", CONFIG, "h", ValueError("boom"))
    store.record_trial("a", "paper", CONFIG, "h", ValueError("boom"))
    assert store.record_trial("b", "quick", CONFIG, "h", _trace())  # b reruns it: finished
    for study, scale in (("a", "quick"), ("a", "paper"), ("b", "quick")):
        [record] = store.records(study, scale)
        assert record.status == "diverged", (study, scale)


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "gdscope.sqlite"
    path.write_text("hi\n")
    for create in (True, False):
        with pytest.raises(StoreError) as info:
            Store(tmp_path, create=create)
        assert str(info.value) == (
            f"{path} is not a gdscope store (file is not a database); "
            "move it away or use another --results DIR"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gdscope.sqlite"]
    assert path.read_text() == "hi\n"


def test_another_programs_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "gdscope.sqlite"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.commit()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"is not a gdscope store \(no schema_version table\)"):
        Store(tmp_path)
    assert path.read_bytes() == before


def test_a_new_spec_unlinks_the_old_trials_of_that_study_and_scale_only(tmp_path):
    store = Store(tmp_path)
    store.record_study("s", "quick", {"seeds": [0]})
    store.record_trial("s", "quick", CONFIG, "h1", _trace())
    store.record_trial("s", "paper", CONFIG, "h2", _trace())
    assert store.link_trial("t", "quick", "h1")
    store.record_study("s", "quick", {"seeds": [0]})  # the same spec: a rerun keeps its links
    assert store.finished_hashes("s", "quick") == {"h1"}
    store.record_study("s", "quick", {"seeds": [0, 1]})  # another spec: its run relinks
    assert store.finished_hashes("s", "quick") == set()
    assert store.finished_hashes("s", "paper") == {"h2"}
    assert store.finished_hashes("t", "quick") == {"h1"}
    assert store.finished_hashes() == {"h1", "h2"}  # trials are never deleted


def test_trial_counts_follow_the_membership_per_study_and_scale(tmp_path):
    store = Store(tmp_path)
    store.record_trial("a", "quick", CONFIG, "h1", _trace())
    store.record_trial("a", "paper", CONFIG, "h2", ValueError("boom"))
    store.record_trial("a", "paper", CONFIG, "h3", _trace())
    assert store.link_trial("b", "quick", "h1")
    assert store.trial_counts() == {
        ("a", "paper"): {"diverged": 1, "failed": 1},
        ("a", "quick"): {"diverged": 1},
        ("b", "quick"): {"diverged": 1},
    }


def test_records_can_read_the_callers_configs_instead_of_the_stored_ones(tmp_path):
    store = Store(tmp_path)
    store.record_trial("a", "quick", CONFIG, "h1", _trace())
    store.record_trial("a", "quick", CONFIG, "h2", _trace())
    own = {**CONFIG, "model": {**CONFIG["model"], "init_scale": 1.0}, "steps": (1, 2)}
    first, second = store.records(hashes=["h1", "h2"], configs={"h1": own})
    assert first.config == flatten_config({**own, "steps": [1, 2]})  # as read back from JSON
    assert second.config == flatten_config(CONFIG)
    assert store.trials()[0]["config"] == CONFIG  # the store is unchanged


def test_a_store_path_that_is_a_folder_or_a_broken_link_is_one_line(tmp_path):
    (tmp_path / "a" / "gdscope.sqlite").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "gdscope.sqlite").symlink_to(tmp_path / "missing")
    for folder in ("a", "b"):
        for read_only in (False, True):
            with pytest.raises(StoreError, match="broken link or not a file"):
                Store(tmp_path / folder, read_only=read_only)
    with pytest.raises(StoreError, match="results directory is empty"):
        Store("")
    (tmp_path / "c").mkdir()
    Store(tmp_path / "real")
    (tmp_path / "c" / "gdscope.sqlite").symlink_to(tmp_path / "real" / "gdscope.sqlite")
    assert Store(tmp_path / "c", read_only=True).trials() == []  # a link to a store is a store


def test_sqlite_errors_opening_a_store_are_one_line_store_errors(tmp_path, monkeypatch):
    from gdscope.store import connection

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(connection, "open_connection", refuse)
    with pytest.raises(StoreError, match=r"cannot open the store \(disk I/O error\)"):
        Store(tmp_path)
