"""Seed 003 on the real two-layer network: the tools its studies need, each pinned by a test.

The ``residual`` probe (‖u − y‖ and its ratio to the start), the ``rate_window`` of a reducer (a
quantity read where a rate is fitted, e.g. the NTK's κ), the ``paired_compare`` claim (two
optimizers started from the same seeds, compared seed by seed), and the laziness gate of
nag-acceleration-real-network on the Frobenius drift of the NTK rather than on λ_min.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError

import gdscope as gs
from _helpers import assert_close
from gdscope import api
from gdscope.store import Store
from gdscope.studies import Reducer, TrialRecord, reduce_record
from gdscope.studies.claims import Claim
from gdscope.studies.paired import paired_median

CLAIM = TypeAdapter(Claim)
KAPPAS = [3.0, 10.0, 30.0, 100.0]
SEEDS = [0, 1, 2, 3, 4]


def _record(config: dict, series: dict) -> TrialRecord:
    series = {
        k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
        for k, (s, v) in series.items()
    }
    name = f"h{abs(hash(tuple(sorted(config.items())))):x}"
    return TrialRecord(hash=name, config=config, status="completed", series=series)


# ---------------------------------------------------------------------------------------------
# probe "residual"


def test_the_residual_probe_is_the_norm_of_u_minus_y_and_its_ratio_to_the_start():
    x, y = gs.data.sphere(8, 4, seed=0, dtype=torch.float64)
    net = gs.models.two_layer(4, 256, seed=0, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    trace = gs.train(net, opt, (x, y), 20, loss_fn=gs.losses.mse, probes={"loss": 1, "residual": 1})
    _, loss = trace.series("loss")
    _, residual = trace.series("residual")
    _, relative = trace.series("relative_residual")
    # mse is ½·mean over the n points: ‖u − y‖² = 2n·loss
    assert_close(np.asarray(residual) ** 2, 2 * 8 * np.asarray(loss), rtol=1e-10)
    assert relative[0] == 1.0
    assert_close(relative, np.asarray(residual) / residual[0], rtol=1e-12)
    assert relative[-1] < 0.9


# ---------------------------------------------------------------------------------------------
# reducer option rate_window: read a series where the rate of another one is fitted


def _drifting_run(rate: float = 0.9, steps: int = 60) -> TrialRecord:
    """A residual with a slow transient (10 steps) then rate ``rate``; κ doubles at step 10."""
    t = np.arange(steps)
    residual = np.where(t < 10, 0.99**t, 0.99**10 * rate ** (t - 10.0))
    kappa = np.where(t < 10, 50.0, 100.0)
    return _record(
        {"data.n": 8, "seed": 0}, {"residual": (t, residual), "ntk_kappa": (t[::2], kappa[::2])}
    )


def test_rate_window_reads_kappa_where_the_rate_is_fitted_not_at_init():
    rec = _drifting_run()
    where = Reducer(reduce="median_window", metric="ntk_kappa", rate_window="residual")
    at_init = Reducer(reduce="initial", metric="ntk_kappa")
    assert reduce_record(at_init, rec).value == 50.0
    assert reduce_record(where, rec).value == 100.0
    rate = reduce_record(Reducer(reduce="rate", metric="residual"), rec).value
    assert_close(rate, 0.9, rtol=1e-9, atol=1e-12)
    assert "where rate(residual) is fitted" in where.label


def test_rate_window_gives_nan_with_the_reason_when_the_rate_fit_is_rejected():
    t = np.arange(40)
    noisy = _record(
        {"seed": 0},
        {"residual": (t, 1.0 + 0.5 * np.sin(t)), "ntk_kappa": (t, np.full(40, 7.0))},
    )
    red = reduce_record(
        Reducer(reduce="median_window", metric="ntk_kappa", rate_window="residual"), noisy
    )
    assert math.isnan(red.value) and "rate fit of residual rejected" in red.reason


def test_rate_window_is_an_option_of_series_reducers_only():
    with pytest.raises(ValidationError, match="remove rate_window"):
        Reducer(reduce="config", key="data.n", rate_window="residual")


# ---------------------------------------------------------------------------------------------
# claim kind paired_compare


def _two_optimizers(gap: float, *, spread: float = 0.3, noise: float = 0.01) -> list[TrialRecord]:
    """``final(y) = κ^(s_seed + gap)`` for A and ``κ^s_seed`` for B, s_seed spread over seeds."""
    rng = np.random.default_rng(1)
    out = []
    for seed in SEEDS:
        s = -1.0 + spread * (seed - 2) / 2  # shared by both groups at this seed
        for kappa in KAPPAS:
            for name, p in (("nag", s + gap), ("gd", s)):
                value = kappa**p * math.exp(noise * rng.standard_normal())
                config = {"opt": name, "kappa": kappa, "seed": seed}
                out.append(_record(config, {"y": ([0], [value])}))
    return out


PAIRED = {
    "kind": "paired_compare",
    "where_a": {"opt": "nag"},
    "where_b": {"opt": "gd"},
    "measure": {"kind": "power_law", "x": "kappa", "y": {"reduce": "final", "metric": "y"}},
    "band": [0.25, math.inf],
}


def test_paired_compare_decides_what_the_unpaired_compare_cannot():
    """A seed-to-seed spread shared by both groups cancels in the per-seed difference."""
    records = _two_optimizers(0.4)
    paired = CLAIM.validate_python({"id": "p", **PAIRED}).judge(records, ["opt", "kappa"])
    unpaired = CLAIM.validate_python({"id": "u", **PAIRED, "kind": "compare"}).judge(records)
    assert paired.status == "PASS", paired.reason
    assert_close(paired.statistic, 0.4, rtol=0, atol=0.03)
    assert unpaired.status == "INCONCLUSIVE", unpaired.reason
    fails = CLAIM.validate_python({"id": "f", **PAIRED}).judge(_two_optimizers(0.1))
    assert fails.status == "FAIL", fails.reason


def test_paired_compare_trial_mode_fits_the_ratio_of_paired_trials():
    spec = {**PAIRED, "pair": "trial"}
    verdict = CLAIM.validate_python({"id": "t", **spec}).judge(_two_optimizers(0.4))
    assert verdict.status == "PASS", verdict.reason
    assert_close(verdict.statistic, 0.4, rtol=0, atol=0.03)
    assert "exponent of A/B" in verdict.reason
    absolute = {**spec, "absolute": True, "band": [0.0, 0.15]}
    close = CLAIM.validate_python({"id": "a", **absolute}).judge(_two_optimizers(-0.05))
    assert close.status == "PASS"
    assert_close(close.statistic, 0.05, rtol=0, atol=0.02)


def test_paired_compare_trial_mode_names_a_trial_without_its_partner():
    gone = {"opt": "gd", "kappa": 30.0, "seed": 1}
    records = [r for r in _two_optimizers(0.4) if r.config != gone]
    verdict = CLAIM.validate_python({"id": "t", **PAIRED, "pair": "trial"}).judge(
        records, ["opt", "kappa"]
    )
    assert verdict.status == "INCONCLUSIVE"
    assert "kappa=30.0, seed=1" in verdict.reason and "no B trial" in verdict.reason


def test_paired_compare_needs_every_seed_in_both_groups():
    records = [r for r in _two_optimizers(0.4) if (r.config["opt"], r.config["seed"]) != ("gd", 4)]
    verdict = CLAIM.validate_python({"id": "s", **PAIRED}).judge(records)
    assert verdict.status == "INCONCLUSIVE" and "fitted in one group only: 4" in verdict.reason


def test_paired_median_resamples_seeds():
    stat, lo, hi = paired_median([0.2, 0.3, 0.4, 0.5, 0.6], n_boot=4000)
    assert stat == 0.4 and 0.2 <= lo < 0.4 < hi <= 0.6
    assert paired_median([-0.1, -0.1], absolute=True) == (0.1, 0.1, 0.1)
    assert all(math.isnan(v) for v in paired_median([]))


# ---------------------------------------------------------------------------------------------
# the study: laziness gated on the Frobenius drift; λ_min's fall reported, not gating


NAG_ONLY = 'sweep_zip=[{"optimizer.name" = ["nesterov"], "optimizer.momentum" = ["auto_kernel"]}]'


def test_a_run_whose_lambda_min_falls_is_lazy_by_the_frobenius_drift(tmp_path):
    """NAG, n = 8, seed 0, m = 4096: λ_min falls ≈ 4× while ‖K_T − K₀‖_F/‖K₀‖_F stays ≈ 0.04.

    The old gate (λ_min(K_T)/λ_min(K₀) ∈ [0.5, 1.5]) dropped this run and FAILed
    D1prime-runs-are-lazy; now the drift gate keeps it and the fall is reported.
    """
    result = api.run_study(
        "nag-acceleration-real-network",
        scale="quick",
        results=tmp_path,
        overrides=["seeds=[0]", "sweep.data.n=[8]", NAG_ONLY],
    )
    verdicts = {v.claim_id: v for v in result.verdicts}
    assert verdicts["D1prime-runs-are-lazy"].status == "PASS", verdicts["D1prime-runs-are-lazy"]
    assert verdicts["D1prime-runs-are-lazy"].statistic < 0.1
    moves = verdicts["D1prime-lambda-min-moves"]
    assert moves.status == "REPORTED" and "by its band: FAIL" in moves.reason
    assert moves.statistic < 0.5
    (record,) = Store(tmp_path).records("nag-acceleration-real-network", "quick")
    kappa_0 = reduce_record(Reducer(reduce="initial", metric="kernel_kappa"), record).value
    where = Reducer(reduce="median_window", metric="ntk_kappa", rate_window="residual")
    assert reduce_record(where, record).value > 2 * kappa_0
