"""The seed_spread claim on synthetic records whose spread over seeds is known."""

from __future__ import annotations

import math

import numpy as np
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope.studies.claims import CLAIM_KINDS, Claim
from gdscope.studies.spread import seed_statistic
from gdscope.studies.table import TrialRecord

CLAIM = TypeAdapter(Claim)
WIDTHS = [64, 128, 256, 512, 1024]
WIDE = [64, 128, 256, 512, 1024, 2048, 4096]
SPEC = {
    "id": "c",
    "kind": "seed_spread",
    "group_by": "model.width",
    "y": {"reduce": "initial", "metric": "lam"},
}


def records(spread_of, widths=WIDTHS, seeds=5, low_group=None):
    """``lam = 1 + spread_of(width) · offset[seed]``; ``low_group`` gets one seed at 0.1."""
    offsets = np.linspace(-1.0, 1.0, seeds)
    out = []
    for width in widths:
        for seed in range(seeds):
            lam = 1.0 + spread_of(width) * offsets[seed]
            if width == low_group and seed == 0:
                lam = 0.1
            config = {"model.width": width, "seed": seed}
            series = {"lam": (np.array([0]), np.array([lam]))}
            out.append(TrialRecord(f"h{width}-{seed}", config, "completed", series))
    return out


def judge(recs, **over):
    return CLAIM.validate_python({**SPEC, **over}).judge(recs, ["model.width"])


def test_registered():
    assert CLAIM_KINDS["seed_spread"].__name__ == "SeedSpreadClaim"


def test_statistics_by_hand():
    v = np.array([1.0, 2.0, 3.0])
    assert_close(float(seed_statistic(v, "cv")), 0.5, rtol=1e-9)
    assert_close(float(seed_statistic(v, "min_over_mean")), 0.5, rtol=1e-9)
    assert_close(float(seed_statistic(v, "mean")), 2.0, rtol=1e-9)


def test_cv_falling_like_inverse_sqrt_width_passes():
    v = judge(
        records(lambda w: 0.5 * (w / 64) ** -0.5, widths=WIDE, seeds=20),
        statistic="cv",
        trend="power_law",
        band=[-math.inf, -0.3],
    )
    assert v.status == "PASS", v.reason
    assert_close(v.statistic, -0.5, rtol=1e-9, atol=0.02)
    assert v.ci is not None and v.ci[1] <= -0.3
    assert "R²" in v.reason
    assert [e["n_seeds"] for e in v.evidence] == [20] * len(WIDE)
    assert [e["group"] for e in v.evidence] == WIDE


def test_flat_cv_fails():
    v = judge(
        records(lambda w: 0.3, widths=WIDE, seeds=20),
        statistic="cv",
        trend="power_law",
        band=[-math.inf, -0.3],
    )
    assert v.status == "FAIL", v.reason
    assert abs(v.statistic) < 0.05
    assert "outside" in v.reason


def test_power_law_needs_a_decade():
    v = judge(
        records(lambda w: 0.3, widths=[64, 128, 256, 512]),
        statistic="cv",
        trend="power_law",
        band=[-math.inf, -0.3],
    )
    assert v.status == "INCONCLUSIVE", v.reason
    assert "decades" in v.reason


def test_min_over_mean_above_half_passes():
    v = judge(records(lambda w: 0.3), statistic="min_over_mean", trend="none", band=[0.5, math.inf])
    assert v.status == "PASS", v.reason
    assert_close(v.statistic, 0.7, rtol=1e-9)


def test_one_group_below_fails():
    v = judge(
        records(lambda w: 0.3, low_group=256),
        statistic="min_over_mean",
        trend="none",
        band=[0.5, math.inf],
    )
    assert v.status == "FAIL", v.reason
    assert "model.width=256" in v.reason
    assert v.statistic < 0.5


def test_too_few_seeds_is_inconclusive():
    recs = [
        r
        for r in records(lambda w: 0.3)
        if not (r.config["model.width"] == 128 and r.config["seed"] > 1)
    ]
    for trend, band in (("none", [0.5, math.inf]), ("power_law", [-math.inf, -0.3])):
        v = judge(recs, statistic="min_over_mean", trend=trend, band=band)
        assert v.status == "INCONCLUSIVE", v.reason
        assert "model.width=128: 2 seed(s)" in v.reason
