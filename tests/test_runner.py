import numpy as np
import pytest

from gdscope.config import TrialConfig
from gdscope.runners import TrialError, run_trials
from gdscope.store import Store
from gdscope.trial import run_trial


def _run_tiny(config: dict):
    return run_trial(TrialConfig.model_validate(config))


def _configs() -> list[tuple[str, dict]]:
    base = {"model": {"width": 16, "depth": 2}, "data": {"n": 16, "d": 4}, "steps": 20}
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
