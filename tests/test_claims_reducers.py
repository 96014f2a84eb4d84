"""Reducers of trial records (final, rate, steps_to_eps, max_rise, expr...) computed by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from _claims import record
from _helpers import assert_close
from gdscope.studies import Reducer, reduce_record


def test_reducers_by_hand():
    steps = np.arange(0, 40)
    values = 2.0 * 0.8**steps
    values[:3] = [5.0, 4.0, 3.0]  # transient
    rec = record({"data.n": 16, "seed": 0}, {"residual": (steps, values)})

    def red(**spec):
        return reduce_record(Reducer(**spec), rec)

    assert_close(red(reduce="final", metric="residual").value, 2.0 * 0.8**39, rtol=1e-6, atol=1e-12)
    assert red(reduce="initial", metric="residual").value == 5.0
    assert red(reduce="max", metric="residual").value == 5.0
    assert_close(red(reduce="min", metric="residual").value, 2.0 * 0.8**39, rtol=1e-6, atol=1e-12)
    assert_close(
        red(reduce="median_window", metric="residual", window=(3, 5)).value,
        2.0 * 0.8**4,
        rtol=1e-6,
        atol=1e-12,
    )
    assert_close(
        red(reduce="final_over_initial", metric="residual").value,
        2.0 * 0.8**39 / 5,
        rtol=1e-6,
        atol=1e-12,
    )
    assert red(reduce="steps_to_eps", metric="residual", eps=0.1).value == 14  # 2·0.8^14 = 0.088
    assert red(reduce="steps_to_eps", metric="residual", eps=0.02, relative=True).value == 14
    assert_close(red(reduce="rate", metric="residual").value, 0.8, rtol=1e-9, atol=1e-12)
    assert_close(red(reduce="one_minus_rate", metric="residual").value, 0.2, rtol=1e-8, atol=1e-12)
    assert red(reduce="config", key="data.n").value == 16
    assert_close(
        red(reduce="expr", expr="40*sqrt(data.n) + residual").value, 165.0, rtol=1e-6, atol=1e-12
    )


def test_reducer_nan_reasons():
    steps = np.arange(30)
    noisy = np.exp(np.random.default_rng(1).standard_normal(30))  # no linear rate
    rec = record({"seed": 0}, {"loss": (steps, noisy)})
    rate = reduce_record(Reducer(reduce="rate", metric="loss"), rec)
    assert math.isnan(rate.value) and "R²" in rate.reason
    never = reduce_record(Reducer(reduce="steps_to_eps", metric="loss", eps=1e-9), rec)
    assert math.isnan(never.value) and "never reached" in never.reason
    missing = reduce_record(Reducer(reduce="final", metric="acc"), rec)
    assert "no metric 'acc'" in missing.reason and "loss" in missing.reason
    diverged = record(
        {"seed": 0}, {"loss": (steps, noisy)}, status="diverged", reason="loss is inf at step 7"
    )
    out = reduce_record(Reducer(reduce="final", metric="loss"), diverged)
    assert math.isnan(out.value) and "diverged: loss is inf at step 7" in out.reason
    allowed = reduce_record(Reducer(reduce="final", metric="loss"), diverged, allow_diverged=True)
    assert allowed.value == noisy[-1]
    assert (
        reduce_record(Reducer(reduce="config", key="seed"), diverged).value == 0
    )  # config is fine


@pytest.mark.parametrize(
    ("values", "absolute", "relative"),
    [
        ([4.0, 3.0, 3.5, 1.0, 1.2], 0.5, 0.2),  # rises 0.5 (1/6 of 3) and 0.2 (1/5 of 1)
        ([4.0, 3.0, 2.0, 2.0, 1.0], 0.0, 0.0),  # monotone: the largest "rise" is 0
        ([4.0, 3.0, 2.0, 1.0, 0.5], -0.5, -0.25),  # strictly decreasing: negative
        ([1.0, math.nan, 5.0, 6.0, 2.0], 1.0, 0.2),  # pairs with a nan are skipped
    ],
)
def test_max_rise_by_hand(values, absolute, relative):
    rec = record({"seed": 0}, {"loss": (np.arange(len(values)) * 10, values)})
    red = reduce_record(Reducer(reduce="max_rise", metric="loss"), rec)
    rel = reduce_record(Reducer(reduce="max_rise", metric="loss", relative=True), rec)
    assert_close(red.value, absolute, rtol=1e-6, atol=1e-12)
    assert not red.reason
    pairs = itertools.pairwise(values)
    expected = max((b - a) / abs(a) for a, b in pairs if np.isfinite(a + b))
    assert_close(rel.value, expected, rtol=1e-6, atol=1e-12)
    assert_close(expected, relative, rtol=0, atol=0.05)


def test_max_rise_nan_reasons_and_window():
    rec = record({"seed": 0}, {"loss": ([0, 10, 20], [1.0, 2.0, 1.0])})
    one = reduce_record(Reducer(reduce="max_rise", metric="loss", window=(0, 5)), rec)
    assert math.isnan(one.value) and "two consecutive finite values" in one.reason
    zeros = record({"seed": 0}, {"loss": ([0, 1], [0.0, 1.0])})
    rel = reduce_record(Reducer(reduce="max_rise", metric="loss", relative=True), zeros)
    assert math.isnan(rel.value) and "undefined" in rel.reason
    later = reduce_record(Reducer(reduce="max_rise", metric="loss", window=(10, 20)), rec)
    assert later.value == -1.0


def test_steps_to_eps_r2_by_hand():
    steps = np.arange(0, 200)
    linear = record({"seed": 0}, {"loss": (steps, 0.5 * 0.9**steps)})
    spec = {"reduce": "steps_to_eps_r2", "metric": "loss", "eps_range": (1e-6, 1e-2)}
    fit = reduce_record(Reducer(**spec), linear)
    # T(ε) = ceil(log(0.5/ε)/log(1/0.9)): a line in log(1/ε) up to rounding to whole steps
    assert 0.999 < fit.value <= 1.0 and not fit.reason
    fine = reduce_record(Reducer(**spec, per_decade=4), linear)
    assert 0.999 < fine.value <= 1.0
    # sublinear: L_t = 1/(1+t) gives T(ε) ≈ 1/ε, far from a line in log(1/ε)
    slow = record(
        {"seed": 0}, {"loss": (np.arange(0, 10**6, 7), 1.0 / (1.0 + np.arange(0, 10**6, 7)))}
    )
    assert reduce_record(Reducer(**spec), slow).value < 0.8
    short = record({"seed": 0}, {"loss": (steps[:50], 0.5 * 0.9 ** steps[:50])})
    out = reduce_record(Reducer(**spec), short)
    assert math.isnan(out.value) and "never reached ε = 0.001 (best 0.00286)" in out.reason
    with pytest.raises(ValueError, match="needs eps_range"):
        Reducer(reduce="steps_to_eps_r2", metric="loss")
    with pytest.raises(ValueError, match="0 < low < high"):
        Reducer(**{**spec, "eps_range": (1e-2, 1e-6)})
    with pytest.raises(ValueError, match="remove eps_range"):
        Reducer(reduce="max_rise", metric="loss", eps_range=(1e-6, 1e-2))


def test_reducer_rejects_stray_options():
    with pytest.raises(ValueError, match="remove eps"):
        Reducer(reduce="final", metric="loss", eps=1e-3)
    with pytest.raises(ValueError, match="calls allowed"):
        Reducer(reduce="expr", expr="__import__('os')")
