"""Reducer windows that start or end where a series first crosses a threshold, and late_over_early.

The edge-of-stability claims (Cohen et al. 2021) read the sharpness plateau from the first step
with S ≥ 0.95·2/η on, and the progressive-sharpening rise up to the first S ≥ 0.9·2/η; η comes
from the trial's config, so the window differs per trial.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope.studies import Reducer, TrialRecord, reduce_record
from gdscope.studies._series import first_crossing, late_over_early
from gdscope.studies.claims import Claim

CLAIM = TypeAdapter(Claim)
EDGE_95 = {"metric": "sharpness", "at_least": "0.95*2/optimizer.lr"}


def record(lr: float, series: dict) -> TrialRecord:
    arrays = {
        k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
        for k, (s, v) in series.items()
    }
    return TrialRecord(
        hash=f"h{lr}", config={"optimizer.lr": lr, "seed": 0}, status="completed", series=arrays
    )


def eos_record(lr: float = 0.5) -> TrialRecord:
    """Sharpness rises 1 → 0.92·2/η by step 550, is 0.96·2/η at 600, then hovers at 1.05·2/η.

    The first checkpoint ≥ 0.9·2/η is step 550, the first ≥ 0.95·2/η step 600; the loss
    oscillates between checkpoints and falls.
    """
    steps = np.arange(0, 1001, 50)
    edge = 2.0 / lr
    sharp = np.where(steps <= 550, 1.0 + (0.92 * edge - 1.0) * steps / 550, 1.05 * edge)
    sharp[steps == 600] = 0.96 * edge
    loss_steps = np.arange(0, 1001, 10)
    loss = 1.0 / (1 + loss_steps / 100) * (1 + 0.5 * (loss_steps // 10 % 2))  # non-monotone
    return record(lr, {"sharpness": (steps, sharp), "loss": (loss_steps, loss)})


def test_window_from_starts_at_the_first_crossing_of_a_config_threshold():
    red = Reducer(reduce="median_window", metric="sharpness", window_from=EDGE_95)
    for lr in (0.5, 0.25):  # 2/η = 4 and 8: the threshold follows each trial's η
        out = reduce_record(red, eos_record(lr))
        assert_close(out.value, 1.05 * 2 / lr, rtol=1e-6, atol=1e-12)
        assert not out.reason
    # the plain median over the whole run is dragged down by the sharpening phase
    whole = Reducer(reduce="median_window", metric="sharpness", window=(0, 1000))
    assert reduce_record(whole, eos_record()).value < 0.95 * 4
    # window and window_from intersect: [600, 1000] ∩ [0, 650] keeps steps 600 and 650
    both = Reducer(reduce="max", metric="sharpness", window=(0, 650), window_from=EDGE_95)
    assert_close(reduce_record(both, eos_record()).value, 1.05 * 4, rtol=1e-6, atol=1e-12)
    first = Reducer(reduce="initial", metric="sharpness", window_from=EDGE_95)
    assert_close(reduce_record(first, eos_record()).value, 0.96 * 4, rtol=1e-6, atol=1e-12)


def test_window_until_ends_at_the_first_crossing_inclusive():
    red = Reducer(
        reduce="final_over_initial",
        metric="sharpness",
        window_until={"at_least": "0.9*2/optimizer.lr"},  # metric defaults to the reducer's
    )
    out = reduce_record(red, eos_record())
    assert_close(out.value, 0.92 * 4, rtol=1e-6, atol=1e-12)
    assert not out.reason  # S(550) / S(0)
    assert "until sharpness ≥ 0.9*2/optimizer.lr" in red.label


def test_window_on_one_metric_from_the_crossing_of_another():
    red = Reducer(reduce="max_rise", metric="loss", relative=True, window_from=EDGE_95)
    loss_steps, loss = eos_record().series["loss"]
    keep = loss_steps >= 600
    tail = loss[keep]
    expected = np.max((tail[1:] - tail[:-1]) / np.abs(tail[:-1]))
    assert_close(reduce_record(red, eos_record()).value, expected, rtol=1e-6, atol=1e-12)


def test_never_crossing_gives_nan_with_a_reason():
    flat = record(0.5, {"sharpness": ([0, 100, 200], [1.0, 3.5, 3.2])})
    red = Reducer(reduce="median_window", metric="sharpness", window_from=EDGE_95)
    out = reduce_record(red, flat)
    assert math.isnan(out.value)
    assert "sharpness never reached ≥ 3.8 (max 3.5 at step 100 of 0–200)" in out.reason
    assert "from sharpness ≥ 0.95*2/optimizer.lr" in out.reason
    # a claim on it is INCONCLUSIVE (never PASS or FAIL) and names the trial's reason
    claim = CLAIM.validate_python(
        {
            "id": "c",
            "kind": "within",
            "y": red.model_dump(exclude_defaults=True),
            "band": [3.8, 4.6],
        }
    )
    verdict = claim.judge([flat])
    assert verdict.status == "INCONCLUSIVE" and "never reached ≥ 3.8" in verdict.reason


def test_crossing_reasons_for_missing_metric_and_threshold():
    rec = record(0.5, {"loss": ([0, 10], [1.0, 0.5])})
    red = Reducer(reduce="final", metric="loss", window_from=EDGE_95)
    out = reduce_record(red, rec)
    assert math.isnan(out.value) and "no metric 'sharpness' recorded" in out.reason
    bad = Reducer(reduce="final", metric="loss", window_from={"at_most": "2/optimizer.momentum"})
    out = reduce_record(bad, rec)
    assert math.isnan(out.value) and "threshold of loss ≤ 2/optimizer.momentum" in out.reason
    below = Reducer(reduce="initial", metric="loss", window_from={"at_most": 0.6})
    assert reduce_record(below, rec).value == 0.5


def test_crossing_is_validated_at_construction():
    with pytest.raises(ValueError, match="exactly one of at_least, at_most"):
        Reducer(reduce="final", metric="loss", window_from={"metric": "loss"})
    with pytest.raises(ValueError, match="exactly one of at_least, at_most"):
        Reducer(reduce="final", metric="loss", window_until={"at_least": 1, "at_most": 2})
    with pytest.raises(ValueError, match="calls allowed"):
        Reducer(reduce="final", metric="loss", window_from={"at_least": "open('x')"})
    with pytest.raises(ValueError, match="needs window, window_from or window_until"):
        Reducer(reduce="median_window", metric="loss")
    with pytest.raises(ValueError, match="remove window_from"):
        Reducer(reduce="config", key="seed", window_from={"at_least": 1})


def test_first_crossing_skips_non_finite_values():
    steps = np.array([0, 1, 2, 3])
    assert first_crossing(steps, np.array([np.inf, np.nan, 2.0, 5.0]), 2.0) == (2, "")
    assert first_crossing(steps, np.array([3.0, 2.0, 1.0, 0.5]), 1.0, above=False) == (2, "")
    step, why = first_crossing(steps, np.full(4, np.nan), 1.0)
    assert step is None and "no finite value" in why


def test_late_over_early_by_hand():
    # 12 checkpoints, fraction 0.25 → 3 each: median(9, 1, 8) = 8 early, median(2, 4, 3) = 3 late
    values = np.array([9.0, 1.0, 8.0, 5, 5, 5, 5, 5, 5, 2.0, 4.0, 3.0])
    assert late_over_early(values, 0.25) == (3 / 8, "")
    # the final checkpoint over the first one says "rises" here; the medians say "falls"
    assert values[-1] / values[0] < 1 and values[-2] / values[1] > 1
    assert_close(late_over_early(values, 0.5)[0], 4.5 / 5, rtol=1e-6, atol=1e-12)
    assert late_over_early(np.array([1.0, np.nan, 2.0]), 0.25) == (2.0, "")
    value, why = late_over_early(np.array([1.0]), 0.25)
    assert math.isnan(value) and "two finite values" in why
    value, why = late_over_early(np.array([0.0, 1.0]), 0.25)
    assert math.isnan(value) and "undefined" in why


def test_late_over_early_reducer_on_an_oscillating_falling_loss():
    red = Reducer(reduce="late_over_early", metric="loss", window_from=EDGE_95)
    out = reduce_record(red, eos_record())
    assert 0 < out.value < 1 and not out.reason
    rising = record(0.5, {"loss": (np.arange(8), [1.0, 2, 1, 2, 3, 4, 3, 4])})
    assert (
        reduce_record(Reducer(reduce="late_over_early", metric="loss"), rising).value == 3.5 / 1.5
    )
    with pytest.raises(ValueError, match=r"less than or equal to 0\.5"):
        Reducer(reduce="late_over_early", metric="loss", fraction=0.6)
    with pytest.raises(ValueError, match="remove fraction"):
        Reducer(reduce="final", metric="loss", fraction=0.25)


def test_an_expression_reads_the_loss_series_where_the_config_names_the_loss_function():
    from gdscope.studies._windows import evaluate

    rec = record(0.5, {"loss": ([0, 1], [4.0, 1.0])})
    rec = TrialRecord(rec.hash, {**rec.config, "loss": "mse", "data.n": 2}, rec.status, rec.series)
    assert evaluate("sqrt(data.n * loss)", rec).value == math.sqrt(8.0)  # the first loss, 4
    assert (
        "is not a number"
        in evaluate(
            "dtype",
            TrialRecord(rec.hash, {**rec.config, "dtype": "float64"}, rec.status, rec.series),
        ).reason
    )
