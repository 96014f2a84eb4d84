"""Claim options on synthetic records: keep, gaps against a baseline, exploratory claims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _claims import CLAIM, POWER, SEEDS, WIDTHS, judge, power_records, record
from _helpers import assert_close


def test_keep_judges_only_the_trials_in_its_band_and_names_the_rest():
    good = power_records(-0.5)
    outliers = [  # a second group of trials that are "not lazy" and would spoil the exponent
        record(
            {"model.width": w, "seed": s, "lazy": False},
            {"loss": ([0, 10], [1.0, 50.0 * w]), "ratio": ([0, 10], [1.0, 0.1])},
        )
        for w in WIDTHS
        for s in SEEDS
    ]
    for r in good:
        r.series["ratio"] = (np.array([0, 10]), np.array([1.0, 0.9]))
    spec = {**POWER, "band": [-0.6, -0.4]}
    assert judge(spec, good + outliers).status != "PASS"  # everything: the outliers count
    keep = {"y": {"reduce": "final_over_initial", "metric": "ratio"}, "band": [0.5, 1.5]}
    kept = judge({**spec, "keep": keep}, good + outliers)
    assert kept.status == "PASS", kept.reason
    assert kept.statistic == judge(spec, good).statistic
    assert (
        "dropped 18 of 36 trials with final_over_initial(ratio) outside [0.5, 1.5]" in kept.reason
    )
    assert "model.width=8, seed=0 (0.1)" in kept.reason
    none = judge({**spec, "keep": {**keep, "band": [2, 3]}}, good)
    assert none.status == "INCONCLUSIVE" and none.reason.startswith("no trial kept: dropped 18")
    with pytest.raises(ValueError, match="keep"):
        judge({**spec, "keep": {"band": [0, 1]}}, good)


def test_monotone_gap_against_a_baseline_pairs_by_x_and_seed():
    """Residual stays at 1, plain falls as 1/depth: the gap grows though residual alone is flat."""
    records = [
        record(
            {"model.depth": d, "seed": s, "residual": res},
            {"ratio": ([0], [1.0 + 0.01 * s if res else 1.0 / d])},
        )
        for d in [2, 4, 8, 16]
        for s in SEEDS
        for res in (True, False)
    ]
    spec = {
        "kind": "monotone",
        "x": "model.depth",
        "y": {"reduce": "final", "metric": "ratio"},
        "direction": "increasing",
    }
    gap = CLAIM.validate_python({"id": "g", **spec, "baseline": {"residual": False}})
    verdict = gap.judge(records, ["model.depth", "residual"])
    assert verdict.status == "PASS", verdict.reason
    assert_close(verdict.statistic, 1.0, rtol=1e-6, atol=1e-12, what=verdict.reason)
    seed0 = sorted(e["y"] for e in verdict.evidence if e["seed"] == 0)  # the gaps, as plotted
    assert_close(seed0, [1 - 1 / d for d in [2, 4, 8, 16]], rtol=1e-6, atol=1e-12)
    alone = CLAIM.validate_python({"id": "a", **spec, "where": {"residual": True}})
    assert alone.judge(records, ["model.depth"]).status != "PASS"  # flat alone
    shrinking = [  # plain catches up: the gap falls, so "grows" fails
        record(r.config, {"ratio": ([0], [1.0 - 1.0 / r.config["model.depth"]])})
        if not r.config["residual"]
        else r
        for r in records
    ]
    assert gap.judge(shrinking, ["model.depth"]).status == "FAIL"
    missing = gap.judge(
        [r for r in records if r.config["model.depth"] != 4 or r.config["residual"]], []
    )
    assert missing.status == "INCONCLUSIVE" and "no baseline trial" in missing.reason
    nobase = CLAIM.validate_python({"id": "n", **spec, "baseline": {"residual": "maybe"}})
    assert "no trial matches" in nobase.judge(records, []).reason


def test_within_gap_against_a_baseline_pairs_by_the_rest_of_the_config():
    records = [
        record(
            {"model.depth": d, "seed": s, "residual": res},
            {"loss": ([0, 9], [1.0, (0.1 if res else 0.2) * d])},
        )
        for d in [8, 16, 32]
        for s in SEEDS
        for res in (True, False)
    ]
    spec = {
        "kind": "within",
        "y": {"reduce": "final", "metric": "loss"},
        "band": [-math.inf, 0.0],
        "baseline": {"residual": False},
    }
    lower = judge(spec, records)
    assert lower.status == "PASS" and lower.n_points == 9, lower.reason
    assert_close(
        lower.statistic, -0.8, rtol=1e-6, atol=1e-12
    )  # the gap closest to the band's edge: depth 8
    assert "final(loss) − baseline {'residual': False} ∈ [-inf, 0]" in lower.reason
    one_depth_worse = [  # residual above plain at depth 32 only: pooled medians would hide it
        record(r.config, {"loss": ([0, 9], [1.0, 100.0])})
        if r.config["residual"] and r.config["model.depth"] == 32
        else r
        for r in records
    ]
    worse = CLAIM.validate_python({"id": "c", **spec}).judge(one_depth_worse, ["model.depth"])
    assert worse.status == "FAIL" and "model.depth=32, seed=0: 93.6" in worse.reason, worse.reason
    unpaired = judge(spec, [r for r in records if r.config["residual"] or r.config["seed"] != 1])
    assert unpaired.status == "INCONCLUSIVE" and "no baseline trial" in unpaired.reason


def test_an_exploratory_claim_is_reported_with_what_its_band_gives():
    spec = {**POWER, "band": [0.9, 1.1], "gate": False}  # the data's exponent is -0.5: FAIL
    verdict = judge(spec, power_records(-0.5))
    assert verdict.status == "REPORTED"
    assert verdict.reason.startswith("exploratory, not a gate (by its band: FAIL): ")
    assert verdict.statistic == judge({**POWER, "band": [0.9, 1.1]}, power_records(-0.5)).statistic
    passing = judge({**spec, "band": [-0.6, -0.4]}, power_records(-0.5))
    assert passing.status == "REPORTED" and "(by its band: PASS)" in passing.reason
