"""The threshold claim on synthetic records whose smallest succeeding width is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from _helpers import assert_close
from gdscope.stats.trends import exponent_over_seeds
from gdscope.studies.claims import CLAIM_KINDS, Claim
from gdscope.studies.spec import load_study
from gdscope.studies.table import TrialRecord
from gdscope.studies.threshold import exponent_bounds, onset

CLAIM = TypeAdapter(Claim)
NS = [8, 16, 32, 64, 128]
WIDTHS = [2**k for k in range(1, 12)]  # 2 … 2048
SPEC = {
    "id": "c",
    "kind": "threshold",
    "x": "model.width",
    "group": "data.n",
    "y": {"reduce": "max", "metric": "interpolated"},
    "level": 1.0,
    "band": [0.0, 4.0],
}
AXES = ["data.n", "model.width"]


def needed(n, seed, exponent):
    """Width needed: ``4 n^exponent`` times a seed factor in {1/2, 1, 2}."""
    return 4 * n**exponent * 2.0 ** ((seed % 3) - 1)


def records(need, ns=NS, widths=WIDTHS, seeds=5, status=None):
    """A trial fits (``interpolated`` reaches 1) iff its width ≥ ``need(n, seed)``."""
    out = []
    for n in ns:
        for width in widths:
            for seed in range(seeds):
                fits = width >= need(n, seed)
                config = {"data.n": n, "model.width": width, "seed": seed}
                series = {"interpolated": (np.array([0, 50]), np.array([0.0, float(fits)]))}
                st = (status or {}).get((n, width, seed), "stopped" if fits else "completed")
                out.append(TrialRecord(f"h{n}-{width}-{seed}", config, st, series, reason=st))
    return out


def judge(recs, **over):
    return CLAIM.validate_python({**SPEC, **over}).judge(recs, AXES)


def test_registered():
    assert CLAIM_KINDS["threshold"].__name__ == "ThresholdClaim"


def test_onset_and_bounds_by_hand():
    assert onset([4, 8, 16, 32], [False, False, True, True]) == (16, "exact", [])
    assert onset([4, 8, 16], [True, False, True]) == (16, "exact", [4])
    assert onset([4, 8, 16], [False, False, False]) == (16, "unreached", [])
    assert onset([4, 8, 16], [True, True, True]) == (4, "below_grid", [])
    u = np.log([1.0, 2.0, 4.0])
    y = np.log([3.0, 6.0, 12.0])
    assert_close(exponent_bounds(u, y, y), (1.0, 1.0), rtol=1e-5, atol=1e-8)
    lo, hi = exponent_bounds(u, np.array([y[0], y[1], y[2]]), np.array([y[0], y[1], np.inf]))
    assert_close(lo, 1.0, rtol=1e-9)
    assert hi == math.inf
    lo, hi = exponent_bounds(u, np.array([-np.inf, y[1], y[2]]), y)
    assert_close(lo, 1.0, rtol=1e-9)
    assert hi == math.inf


def test_sqrt_growth_passes_with_the_power_law_ci():
    v = judge(records(lambda n, s: needed(n, s, 0.5)))
    assert v.status == "PASS", v.reason
    assert 0.3 < v.statistic < 0.8
    assert v.ci is not None and 0.0 <= v.ci[0] <= v.ci[1] <= 4.0
    # same statistic and CI as power_law's bootstrap on the per-seed x* (no censoring)
    xstar = {}
    for e in v.evidence:
        xstar.setdefault(e["seed"], []).append(e["y"])
    ref = exponent_over_seeds(NS, [xstar[s] for s in sorted(xstar)], ci=0.9, n_boot=2000)
    assert_close(v.statistic, ref.median, rtol=1e-9)
    assert_close(v.ci, (ref.lo, ref.hi), rtol=1e-6, atol=1e-12)
    assert "x* = smallest model.width" in v.reason
    assert {e["censored"] for e in v.evidence} == {"exact"}


def test_steep_growth_fails():
    # width needed ∝ n^5: a finite exponent, but outside [0, 4]
    v = judge(records(lambda n, s: needed(n, s, 5.0), widths=[2**k for k in range(1, 40)]))
    assert v.status == "FAIL", v.reason
    assert v.ci is not None and v.ci[0] > 4.0
    assert_close(v.statistic, 5.0, rtol=1e-9, atol=0.3)
    v = judge(records(lambda n, s: needed(n, s, 2.0), widths=[2**k for k in range(1, 20)]))
    assert v.status == "PASS", v.reason
    v = judge(
        records(lambda n, s: needed(n, s, 2.0), widths=[2**k for k in range(1, 20)]),
        band=[0.0, 1.0],
    )
    assert v.status == "FAIL", v.reason


def test_unreached_width_is_never_dropped():
    # n = 128 needs more than the largest width for every seed: the exponent is bounded below only
    recs = records(lambda n, s: 1e6 if n == 128 else needed(n, s, 0.5))
    v = judge(recs)
    assert v.status == "INCONCLUSIVE", v.reason
    assert "not reached by model.width=2048" in v.reason
    assert "data.n=128" in v.reason
    assert v.ci is not None and v.ci[1] == math.inf and math.isfinite(v.ci[0])
    assert ">2048" in v.reason
    # ... and it FAILs when even the smallest exponent consistent with it exceeds the band
    v = judge(recs, band=[0.0, 0.6])
    assert v.status == "FAIL", v.reason
    assert v.ci is not None and v.ci[0] > 0.6


def test_one_unreached_seed_bounds_the_median_and_is_named():
    # seed 0 at n = 128 needs more than the grid: the median over 10 seeds stays bounded
    recs = records(lambda n, s: 1e6 if (n, s) == (128, 0) else needed(n, s, 0.5), seeds=10)
    v = judge(recs)
    assert v.status == "PASS", v.reason
    assert "data.n=128, seed=0: not reached by model.width=2048" in v.reason
    assert "widen" not in v.reason
    assert v.ci is not None and math.isfinite(v.ci[1])
    cell = next(e for e in v.evidence if e["seed"] == 0 and e["group"] == 128)
    assert cell["censored"] == "unreached"


def test_grid_not_bracketing_from_below_is_inconclusive():
    v = judge(
        records(lambda n, s: needed(n, s, 0.5)),
        where={"model.width": [64, 128, 256, 512, 1024, 2048]},
    )
    assert v.status == "INCONCLUSIVE", v.reason
    assert "already at model.width=64" in v.reason
    assert v.ci is not None and v.ci[0] == -math.inf


def test_diverged_counts_as_not_fitting_and_failed_is_inconclusive():
    recs = records(lambda n, s: needed(n, s, 0.5), status={(8, 2048, 0): "diverged"})
    v = judge(recs)
    assert "diverged, counted as not succeeding" in v.reason
    assert v.status == "INCONCLUSIVE"  # the widest width of (8, seed 0) no longer fits
    assert "not reached by model.width=2048" in v.reason
    recs = records(lambda n, s: needed(n, s, 0.5), status={(16, 4, 1): "failed"})
    v = judge(recs)
    assert v.status == "INCONCLUSIVE"
    assert "trial failed" in v.reason


def test_non_monotone_cell_is_a_warning():
    def need(n, s):
        return needed(n, s, 0.5)

    recs = records(need)
    # make one narrow trial fit by luck: x* is unchanged, a warning names it
    lucky = []
    for r in recs:
        if r.config["data.n"] == 64 and r.config["model.width"] == 2 and r.config["seed"] == 1:
            r = TrialRecord(
                r.hash, r.config, "stopped", {"interpolated": (np.array([0]), np.array([1.0]))}
            )
        lucky.append(r)
    v = judge(lucky)
    assert v.status == "PASS", v.reason
    assert "not monotone in model.width" in v.reason


def test_too_few_groups_and_seeds_are_inconclusive():
    v = judge(records(lambda n, s: needed(n, s, 0.5), ns=[8, 16, 32]))
    assert v.status == "INCONCLUSIVE"
    assert "needs ≥ 4" in v.reason
    v = judge(records(lambda n, s: needed(n, s, 0.5), seeds=2))
    assert v.status == "INCONCLUSIVE"
    assert "needs ≥ 3" in v.reason


def test_group_may_be_an_expression():
    def need(n, s):
        return needed(n, s, 0.5)

    recs = [
        TrialRecord(r.hash, {**r.config, "model.depth": r.config["data.n"] + 2}, r.status, r.series)
        for r in records(need)
    ]
    v = judge(recs, group={"reduce": "expr", "expr": "model.depth - 2"})
    assert v.status == "PASS", v.reason
    assert "per model.depth - 2" in v.reason


def test_spec_rejects_unknown_direction_and_loads_in_a_study():
    with pytest.raises(ValidationError):
        CLAIM.validate_python({**SPEC, "direction": "sideways"})
    text = """
name = "t"
title = "t"
seed_paper = "004"
reference = "r"
provenance = "designed"
seeds = [0]
[base]
"model.width" = 8
"data.n" = 8
[[claims]]
id = "w"
kind = "threshold"
x = "model.width"
group = "data.n"
y = { reduce = "max", metric = "interpolated" }
level = 1
band = [0, 4]
"""
    study = load_study(text)
    assert study.claims[0].kind == "threshold"


def test_a_tied_symmetric_onset_has_an_exponent_of_exactly_zero():
    # x* = 32, 16, 16, 16, 32 over n = 5 … 80: the least-squares slope is −4.6e-17 in floating
    # point, which would put the CI outside [0, 4] (a FAIL) without rounding
    ns = [5, 10, 20, 40, 80]
    pattern = dict(zip(ns, [32, 16, 16, 16, 32], strict=True))
    v = judge(records(lambda n, s: pattern[n] - 1, ns=ns))
    assert v.statistic == 0.0
    assert v.ci == (0.0, 0.0)
    assert v.status == "PASS", v.reason  # inside the closed band [0, 4], not decided by ±1e-17
