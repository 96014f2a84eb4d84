"""The optimum_shift claim on synthetic records whose best learning rate is known."""

from __future__ import annotations

import math

import numpy as np
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope.studies.claims import CLAIM_KINDS, Claim
from gdscope.studies.optimum import optimum_spread
from gdscope.studies.table import TrialRecord

CLAIM = TypeAdapter(Claim)
LRS = [2.0 ** (k / 2) for k in range(-8, 3)]  # ×√2 grid, 2^-4 … 2^1
WIDTHS = [64, 128, 256, 512]
SPEC = {
    "id": "c",
    "kind": "optimum_shift",
    "group_by": "model.width",
    "x": "optimizer.lr",
    "y": {"reduce": "final", "metric": "loss"},
    "band": [0.0, 1.0],
}


def records(best_of, seeds=(0, 1, 2), noise=0.0, diverge_above=None):
    """``final(loss) = (log2 lr − log2 best_of(width))² + 1`` (+ noise); diverged above a cap."""
    rng = np.random.default_rng(0)
    out = []
    for width in WIDTHS:
        for lr in LRS:
            for seed in seeds:
                loss = (math.log2(lr) - math.log2(best_of(width))) ** 2 + 1
                loss += noise * rng.standard_normal()
                status = "completed"
                if diverge_above is not None and lr > diverge_above:
                    status, loss = "diverged", math.inf
                config = {"model.width": width, "optimizer.lr": lr, "seed": seed}
                series = {"loss": (np.array([0, 10]), np.array([5.0, loss]))}
                out.append(TrialRecord(f"h{width}-{lr}-{seed}", config, status, series))
    return out


def judge(recs, **over):
    return CLAIM.validate_python({**SPEC, **over}).judge(recs, ["model.width", "optimizer.lr"])


def test_registered():
    assert CLAIM_KINDS["optimum_shift"].__name__ == "OptimumShiftClaim"


def test_spread_by_hand():
    curves = {
        1: {0.1: np.array([3.0]), 0.2: np.array([1.0]), 0.4: np.array([2.0])},
        2: {0.1: np.array([3.0]), 0.2: np.array([2.0]), 0.4: np.array([1.0])},
    }
    spread, best = optimum_spread(curves)
    assert best == {1: 0.2, 2: 0.4}
    assert_close(spread, 1.0, rtol=1e-9)
    spread_max, best_max = optimum_spread(curves, minimize=False)
    assert best_max == {1: 0.1, 2: 0.1} and spread_max == 0.0


def test_fixed_optimum_passes():
    v = judge(records(lambda w: 2.0**-2, noise=0.01))
    assert v.status == "PASS", v.reason
    assert v.statistic == 0.0 and v.ci == (0.0, 0.0)


def test_moving_optimum_fails():
    # the optimum halves per doubling of width: log2 x* moves 3 octaves over 64 … 512
    v = judge(records(lambda w: 64 / w))
    assert v.status == "FAIL", v.reason
    assert_close(v.statistic, 3.0, rtol=1e-9)


def test_half_octave_shift_is_measured():
    best = {64: 2.0**-2, 128: 2.0**-2, 256: 2.0**-1.5, 512: 2.0**-1.5}
    v = judge(records(lambda w: best[w]))
    assert v.status == "PASS"
    assert_close(v.statistic, 0.5, rtol=1e-9)


def test_diverged_trials_count_as_worst_not_inconclusive():
    v = judge(records(lambda w: 2.0**-2, diverge_above=1.0))
    assert v.status == "PASS", v.reason
    ev = [e for e in v.evidence if e["worst"]]
    assert ev and all(e["y"] == math.inf for e in ev)


def test_optimum_at_grid_edge_is_inconclusive():
    v = judge(records(lambda w: 2.0**-4 if w == 512 else 2.0**-2))
    assert v.status == "INCONCLUSIVE"
    assert "edge of the grid" in v.reason
    assert judge(records(lambda w: 2.0**-4 if w == 512 else 2.0**-2), edge_ok=True).status == "FAIL"


def test_too_few_finite_points_is_inconclusive():
    v = judge(records(lambda w: 2.0**-4, diverge_above=2.0**-3.5))
    assert v.status == "INCONCLUSIVE" and "finite" in v.reason


def test_one_group_is_inconclusive():
    recs = [r for r in records(lambda w: 0.25) if r.config["model.width"] == 64]
    v = judge(recs)
    assert v.status == "INCONCLUSIVE" and "needs ≥ 2" in v.reason


def test_seed_disagreement_widens_ci():
    # seed 2 puts every optimum elsewhere: the bootstrap CI must see it
    recs = records(lambda w: 2.0**-2)
    moved = records(lambda w: 2.0**-3 if w >= 256 else 2.0**-1, seeds=(2,))
    recs = [r for r in recs if r.config["seed"] != 2] + moved
    v = judge(recs)
    assert v.statistic == 0.0
    assert v.ci is not None and v.ci[1] >= 2.0
    assert v.status == "INCONCLUSIVE"
