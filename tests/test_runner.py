import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from gdscope.config import TrialConfig
from gdscope.runners import TrialError, WorkerPool, run_trials
from gdscope.store import Store
from gdscope.trials.trial import run_trial


def _run_tiny(config: dict):
    return run_trial(TrialConfig.model_validate(config))


def _configs() -> list[tuple[str, dict]]:
    base = {"model": {"width": 16, "depth": 2}, "data": {"n": 16, "d": 4}, "steps": 20}
    base["probes"] = {"loss": 1, "ntk_spectrum": 10}  # the NTK Gram: torch and scipy BLAS
    configs = [{**base, "seed": seed} for seed in range(3)]
    configs.append({**base, "optimizer": {"lr": 4.0}, "dtype": "float64"})  # diverges
    return [(TrialConfig.model_validate(c).content_hash(), c) for c in configs]


BAD = ("bad", {"optimizer": {"lr": -1.0}, "steps": 2})  # fails validation inside run_one


def _run_into_store(store: Store, trials, workers: int) -> list[tuple[int, int]]:
    ticks = []

    def on_result(hash, config, outcome):
        store.record_trial("s", "quick", config, hash, outcome)

    with store.writer():
        run_trials(
            trials,
            _run_tiny,
            workers=workers,
            on_result=on_result,
            progress=lambda *t: ticks.append(t),
        )
    return ticks


def test_one_and_two_workers_give_identical_records_and_report_failures(tmp_path):
    trials = _configs()
    trials.insert(1, BAD)
    serial, pooled = Store(tmp_path / "serial"), Store(tmp_path / "pooled")
    ticks = _run_into_store(serial, trials, workers=1)
    assert ticks == _run_into_store(pooled, trials, workers=2)
    assert ticks == [(i, len(trials)) for i in range(len(trials) + 1)]
    records, pooled_records = serial.records("s"), pooled.records("s")
    assert (
        [r.hash for r in records]
        == [r.hash for r in pooled_records]
        == sorted(h for h, _ in trials)
    )
    for one, two in zip(records, pooled_records, strict=True):
        assert (one.status, one.reason, one.config) == (two.status, two.reason, two.config)
        assert one.series.keys() == two.series.keys()
        for metric, (steps, values) in one.series.items():
            np.testing.assert_array_equal(steps, two.series[metric][0])
            np.testing.assert_array_equal(values, two.series[metric][1])  # bitwise
    statuses = {r.hash: r.status for r in records}
    assert statuses == {
        h: s
        for (h, _), s in zip(
            trials, ["completed", "failed", "completed", "completed", "diverged"], strict=True
        )
    }
    for store in (serial, pooled):
        bad = next(row for row in store.trials("s") if row["hash"] == "bad")
        assert "ValidationError" in bad["error"] and "Traceback" in bad["error"]
        assert store.finished_hashes("s") == {h for h, _ in trials if h != "bad"}


def test_outcome_of_a_raising_trial_is_a_trial_error_with_traceback():
    outcomes = []
    run_trials([("bad", {"steps": -1})], _run_tiny, on_result=lambda h, c, o: outcomes.append(o))
    [error] = outcomes
    assert isinstance(error, TrialError) and error.type_name == "ValidationError"
    assert str(error).startswith("ValidationError:") and "_run_tiny" in error.traceback


def test_workers_must_be_positive_and_run_one_picklable():
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_trials([], _run_tiny, workers=0, on_result=lambda *a: None)
    with pytest.raises(ValueError, match="max_retries must be a non-negative integer"):
        run_trials([], _run_tiny, on_result=lambda *a: None, max_retries=-1)
    with pytest.raises(TypeError, match="module-level function"):
        run_trials(_configs()[:2], lambda c: c, workers=2, on_result=lambda *a: None)


def _interrupt(config: dict):
    raise KeyboardInterrupt


@pytest.mark.parametrize("workers", [1, 2])
def test_keyboard_interrupt_stops_the_run(workers):
    seen = []
    with pytest.raises(KeyboardInterrupt):
        run_trials(_configs(), _interrupt, workers=workers, on_result=lambda *a: seen.append(a))
    assert seen == []


def _group_tiny(configs: list[dict]) -> list:
    """A group runner that tags its results, so tests can see which path ran."""
    traces = [_run_tiny(config) for config in configs]
    for trace in traces:
        trace.reason = f"grouped {len(configs)}"
    return traces


@pytest.mark.parametrize("workers", [1, 2])
def test_groups_run_as_one_job_and_report_per_trial(tmp_path, workers):
    trials = _configs()
    trials.insert(1, BAD)
    groups = [[0, 2, 3], [1], [4]]
    seen, ticks = {}, []
    run_trials(
        trials,
        _run_tiny,
        workers=workers,
        on_result=lambda h, c, o: seen.setdefault(h, o),
        progress=lambda *t: ticks.append(t),
        groups=groups,
        run_group=_group_tiny,
    )
    assert ticks[0] == (0, 5) and ticks[-1] == (5, 5) and len(ticks) == 6
    assert {trials[i][0] for i in (0, 2, 3)} == {
        h for h, o in seen.items() if "grouped 3" in getattr(o, "reason", "")
    }
    assert isinstance(seen["bad"], TrialError)  # a group of one goes through run_one
    assert "grouped" not in seen[trials[4][0]].reason


def _group_fails(configs: list[dict]) -> list:
    raise RuntimeError("the ensemble broke")


def test_a_failing_group_runs_its_trials_one_by_one():
    trials = _configs()[:3]
    seen = {}
    run_trials(
        trials,
        _run_tiny,
        on_result=lambda h, c, o: seen.setdefault(h, o),
        groups=[[0, 1, 2]],
        run_group=_group_fails,
    )
    assert [seen[h].status for h, _ in trials] == ["completed"] * 3


def test_groups_must_partition_the_trials():
    with pytest.raises(ValueError, match=r"groups must partition range\(3\)"):
        run_trials(_configs()[:3], _run_tiny, on_result=print, groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"groups must partition range\(3\)"):
        run_trials(_configs()[:3], _run_tiny, on_result=print, groups=[[0, 1]])


def _pid(config: dict) -> int:
    return os.getpid()


def _die(config: dict) -> None:
    os._exit(1)  # a worker that dies: the pool breaks


def test_a_worker_pool_outlives_one_call_and_replaces_itself_when_broken():
    trials = [(str(i), {"i": i}) for i in range(4)]
    seen: list = []
    with WorkerPool(2) as pool:
        run_trials(trials, _pid, on_result=lambda h, c, o: seen.append(o), pool=pool)
        first = pool.executor()
        run_trials(trials, _pid, on_result=lambda h, c, o: seen.append(o), pool=pool)
        assert pool.executor() is first  # same processes for both calls
        assert len(set(seen)) <= 2 and os.getpid() not in seen
        dead: list = []
        run_trials(
            trials[:2], _die, on_result=lambda h, c, o: dead.append(o), pool=pool, max_retries=0
        )
        assert len(dead) == 2 and all(isinstance(o, TrialError) for o in dead)
        assert all("worker process died (exit code 1)" in str(o) for o in dead)
        after: list = []
        run_trials(trials, _pid, on_result=lambda h, c, o: after.append(o), pool=pool)
        assert pool.executor() is not first and not set(after) & set(seen)


def _sleep(config: dict) -> int:
    import time

    Path(config["mark"], str(os.getpid())).touch()
    time.sleep(60)
    return os.getpid()


def test_aborting_a_pool_stops_its_workers_now(tmp_path):
    pool = WorkerPool(2)
    executor = pool.executor()
    for _ in range(2):
        executor.submit(_sleep, {"mark": str(tmp_path)})
    deadline = time.monotonic() + 60
    while len(list(tmp_path.iterdir())) < 2:  # both workers are inside a job
        assert time.monotonic() < deadline
        time.sleep(0.05)
    processes = list(executor._processes.values())
    start = time.monotonic()
    pool.abort()
    assert time.monotonic() - start < 10
    assert not any(process.is_alive() for process in processes)


def _maybe_die(config: dict) -> dict:
    """Count this start in ``config["die"][1]``; SIGKILL this worker on the first (``"once"``)
    or every (``"always"``) start. Returns the config without ``"die"``."""
    if "die" not in config:
        return config
    mode, path = config["die"]
    with open(path, "a") as handle:
        handle.write("x")
    if mode == "always" or os.path.getsize(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {k: v for k, v in config.items() if k != "die"}


def _run_or_die(config: dict):
    return _run_tiny(_maybe_die(config))


def _group_or_die(configs: list[dict]) -> list:
    return _group_tiny([_maybe_die(config) for config in configs])


@pytest.mark.parametrize(
    "grouped",
    [pytest.param(False, id="trials"), pytest.param(True, id="groups", marks=pytest.mark.slow)],
)
def test_a_dead_worker_costs_only_its_own_trial_a_retry(tmp_path, grouped):
    """One trial kills its worker once, one every time; all other trials run once, unharmed."""
    trials = _configs()
    reference = {h: _run_tiny(c) for h, c in trials}
    once, always = tmp_path / "once", tmp_path / "always"
    (killer, bad), (survivor, config) = trials[1], trials[2]
    trials[1] = (killer, {**bad, "die": ["always", str(always)]})
    trials[2] = (survivor, {**config, "die": ["once", str(once)]})  # never starts in the group
    trials += [(f"{h}-again", c) for h, c in _configs()]  # more jobs than workers
    reference.update({f"{h}-again": reference[h] for h, _ in _configs()})
    retries = 1 if grouped else 2  # default: 2
    seen: dict = {}
    ticks: list = []
    run_trials(
        trials,
        _run_or_die,
        workers=2,
        on_result=lambda h, c, o: seen.setdefault(h, []).append(o),
        progress=lambda *t: ticks.append(t),
        groups=[[0, 1, 2], [3], [4, 5], [6, 7]] if grouped else None,
        run_group=_group_or_die if grouped else None,
        **({"max_retries": retries} if grouped else {}),
    )
    assert ticks == [(i, len(trials)) for i in range(len(trials) + 1)]
    assert sorted(seen) == sorted(reference) and all(len(o) == 1 for o in seen.values())
    for h in seen.keys() - {killer}:
        [trace] = seen[h]
        assert (trace.status, trace.steps) == (reference[h].status, reference[h].steps)
        assert trace.metrics == reference[h].metrics
        for metric in trace.metrics:  # bitwise, NaN included
            np.testing.assert_array_equal(trace.series(metric), reference[h].series(metric))
    assert once.read_text().startswith("xx")  # killed once (rerun if another worker dies)
    # the first run and each retry (a group that dies is first split, with no retry counted)
    assert always.read_text() == "x" * (retries + 1 + grouped)
    [error] = seen[killer]
    assert isinstance(error, TrialError) and error.type_name == "WorkerDied"
    assert "killed by signal 9 (SIGKILL)" in str(error)
    assert f"{retries + 1} times" in str(error)
