"""Claims judged on synthetic records with known exponents, rates and bounds (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from _claims import POWER, SEEDS, WIDTHS, judge, power_records, record
from _helpers import assert_close
from gdscope.studies import TrialRecord, judge_study, load_study

# ---------------------------------------------------------------------------------------------
# power_law and slope


def test_power_law_pass_fail_inconclusive():
    records = power_records(-1.0)
    ok = judge({**POWER, "band": [-1.1, -0.9]}, records)
    assert ok.status == "PASS", ok.reason
    assert ok.ci is not None and ok.ci[0] <= ok.statistic <= ok.ci[1]
    assert_close(ok.statistic, -1.0, rtol=0, atol=0.03)
    assert ok.n_points == 18 and {"x", "y", "seed"} <= set(ok.evidence[0])
    wrong = judge({**POWER, "band": [0.9, 1.1]}, records)  # "laziness exponent +1"
    assert wrong.status == "FAIL" and "outside" in wrong.reason
    edge = judge({**POWER, "band": [-1.0, -0.5]}, power_records(-1.0, noise=0.05))
    assert edge.status == "INCONCLUSIVE" and "straddles" in edge.reason


def test_power_law_needs_points_decades_fit_and_seeds():
    few = judge({**POWER, "band": [-1.1, -0.9]}, power_records(-1.0, widths=[8, 16, 32]))
    assert few.status == "INCONCLUSIVE" and "3 points, needs ≥ 4" in few.reason
    short = judge({**POWER, "band": [-1.1, -0.9]}, power_records(-1.0, widths=[10, 12, 14, 16]))
    assert short.status == "INCONCLUSIVE" and "decades" in short.reason
    noisy = judge({**POWER, "band": [-1.1, -0.9]}, power_records(-1.0, noise=1.0))
    assert noisy.status == "INCONCLUSIVE" and "R²" in noisy.reason
    one_seed = [r for r in power_records(-1.0) if r.config["seed"] == 0]
    lonely = judge({**POWER, "band": [-1.1, -0.9]}, one_seed)
    assert lonely.status == "INCONCLUSIVE" and "needs ≥ 3" in lonely.reason


def test_power_law_diverged_trials_named():
    records = power_records(-1.0)
    records[4] = TrialRecord(
        records[4].hash, records[4].config, "diverged", records[4].series, "loss is nan at step 3"
    )
    verdict = judge({**POWER, "band": [-1.1, -0.9]}, records)
    assert verdict.status == "INCONCLUSIVE"
    assert "model.width=128, seed=0" in verdict.reason and "diverged" in verdict.reason
    allowed = judge({**POWER, "band": [-1.1, -0.9], "allow_diverged": True}, records)
    assert allowed.status == "PASS"


def test_power_law_where_and_duplicates():
    records = power_records(-1.0, extra={"method": "gd"}) + power_records(
        -0.5, extra={"method": "nag"}
    )
    gd = judge({**POWER, "band": [-1.1, -0.9], "where": {"method": "gd"}}, records)
    nag = judge({**POWER, "band": [-0.6, -0.4], "where": {"method": "nag"}}, records)
    assert (gd.status, nag.status) == ("PASS", "PASS")
    both = judge({**POWER, "band": [-1.1, -0.9]}, records)
    assert both.status == "INCONCLUSIVE" and "several trials" in both.reason
    none = judge({**POWER, "band": [-1.1, -0.9], "where": {"method": "hb"}}, records)
    assert (
        none.status == "INCONCLUSIVE"
        and "no trial matches" in none.reason
        and "'nag'" in none.reason
    )


def test_slope_pass_fail_inconclusive():
    # steps-to-ε linear in log(1/ε): steps = 10 + 5·log(1/ε)
    def recs(noise):
        rng = np.random.default_rng(3)
        return [
            record(
                {"eps": eps, "seed": s},
                {"steps": ([0], [10 + 5 * math.log(1 / eps) + noise * rng.standard_normal()])},
            )
            for s in SEEDS
            for eps in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
        ]

    spec = {"kind": "slope", "x": "eps", "y": {"reduce": "final", "metric": "steps"}, "log_x": True}
    assert judge({**spec, "band": [-5.2, -4.8]}, recs(0.1)).status == "PASS"
    assert judge({**spec, "band": [-1, 1]}, recs(0.1)).status == "FAIL"
    bad = judge({**spec, "band": [-5.2, -4.8], "min_r2": 0.999}, recs(3.0))
    assert bad.status == "INCONCLUSIVE" and "R²" in bad.reason


# ---------------------------------------------------------------------------------------------
# bound, monotone, reaches, compare, agrees


def _bound_records(upper_scale: float, status: str = "completed") -> list[TrialRecord]:
    steps = np.arange(0, 50, 5)
    loss = np.exp(-0.1 * steps)
    return [
        record(
            {"seed": s},
            {"loss": (steps, loss), "upper": (steps, upper_scale * loss * (1 + 0.1 * s))},
            status,
        )
        for s in SEEDS
    ]


def test_bound():
    spec = {"kind": "bound", "lhs": "loss", "rhs": "upper"}
    ok = judge(spec, _bound_records(1.5))
    assert ok.status == "PASS"
    assert_close(ok.statistic, 1 / 1.5, rtol=1e-6, atol=1e-12)
    bad = judge(spec, _bound_records(0.95))
    assert bad.status == "FAIL" and "seed=0 at step 0" in bad.reason
    assert judge({**spec, "slack": 0.1}, _bound_records(0.95)).status == "PASS"
    diverged = judge(spec, _bound_records(1.5, status="diverged"))
    assert diverged.status == "INCONCLUSIVE" and "diverged" in diverged.reason


def test_monotone():
    def recs(fn):
        return [
            record({"model.width": w, "seed": s}, {"lam": ([0], [fn(w, s)])})
            for s in SEEDS
            for w in WIDTHS
        ]

    spec = {
        "kind": "monotone",
        "x": "model.width",
        "y": {"reduce": "initial", "metric": "lam"},
        "direction": "increasing",
        "rho_min": 0.9,
    }
    up = judge(spec, recs(lambda w, s: math.log(w) + 0.01 * s))
    assert up.status == "PASS"
    assert_close(up.statistic, 1.0, rtol=1e-6, atol=1e-12)
    assert (
        judge({**spec, "direction": "decreasing"}, recs(lambda w, s: math.log(w))).status == "FAIL"
    )
    flat = judge(spec, recs(lambda w, s: 1.0))
    assert flat.status == "INCONCLUSIVE" and "constant" in flat.reason
    zigzag = judge(
        {**spec, "rho_min": 0.5, "allowed_inversions": 0},
        recs(lambda w, s: w + (30 if w == 16 else 0)),
    )
    assert zigzag.status == "FAIL" and "inversions ≤ 0" in zigzag.reason
    one_seed_rises = judge(  # two seeds monotone, one with a rise: "non-decreasing" fails
        {**spec, "rho_min": 0.5, "allowed_inversions": 0},
        recs(lambda w, s: w + (30 if w == 16 and s == SEEDS[-1] else 0)),
    )
    assert one_seed_rises.status == "FAIL", one_seed_rises.reason
    assert "most inversions in a seed group 1" in one_seed_rises.reason


def test_reaches_with_expression_budget_and_groups():
    def recs(rate_by_kappa):
        out = []
        for kappa in [10.0, 100.0]:
            for s in SEEDS:
                steps = np.arange(0, 2000)
                res = (1 - rate_by_kappa(kappa)) ** steps
                out.append(
                    record(
                        {"kappa_set": kappa, "seed": s},
                        {"res": (steps, res), "kappa": ([0], [kappa])},
                    )
                )
        return out

    spec = {
        "kind": "reaches",
        "metric": "res",
        "threshold": 1e-5,
        "budget": "40*sqrt(kappa)",
        "group_by": "kappa_set",
    }
    fast = judge(spec, recs(lambda k: 1 / math.sqrt(k)))  # needs ≈ 11.5·√κ steps
    assert fast.status == "PASS" and fast.statistic == 1.0
    slow = judge(spec, recs(lambda k: 1 / k))  # needs ≈ 11.5·κ steps > 40√κ at κ = 100
    assert slow.status == "FAIL" and slow.statistic == 0.0 and "kappa_set=10.0: 100%" in slow.reason
    broken = recs(lambda k: 1 / math.sqrt(k))
    broken[0] = TrialRecord(broken[0].hash, broken[0].config, "failed", {}, "RuntimeError")
    assert judge(spec, broken).status == "INCONCLUSIVE"


def test_compare():
    records = power_records(-1.0, extra={"method": "gd"}) + power_records(
        -0.5, extra={"method": "nag"}
    )
    measure = {"kind": "power_law", "x": "model.width", "y": {"reduce": "final", "metric": "loss"}}
    spec = {
        "kind": "compare",
        "where_a": {"method": "nag"},
        "where_b": {"method": "gd"},
        "measure": measure,
    }
    ok = judge({**spec, "band": [0.25, math.inf]}, records)
    assert ok.status == "PASS"
    assert_close(ok.statistic, 0.5, rtol=0, atol=0.05)
    assert judge({**spec, "band": [0, 0.15], "absolute": True}, records).status == "FAIL"
    straddle = judge({**spec, "band": [0.5, 1.0]}, records)
    assert straddle.status == "INCONCLUSIVE"
    median = {"kind": "median", "y": {"reduce": "final", "metric": "loss"}}
    same = judge(
        {**spec, "measure": median, "where_b": {"method": "nag"}, "band": [-1, 1]}, records
    )
    assert same.status == "PASS" and same.statistic == 0.0


def test_compare_means_of_an_indicator_count_every_trial():
    """Residual fits at 8 of 10 trials, plain at 10 of 10: the medians hide it, the means don't."""
    fits = {True: [0, 0, 1, 1, 1, 1, 1, 1, 1, 1], False: [1] * 10}
    records = [
        record({"residual": arm, "seed": i}, {"fit": ([0], [float(v)])})
        for arm, values in fits.items()
        for i, v in enumerate(values)
    ]
    spec = {
        "kind": "compare",
        "where_a": {"residual": True},
        "where_b": {"residual": False},
        "band": [0.0, math.inf],
    }
    y = {"reduce": "final", "metric": "fit"}
    median = judge({**spec, "measure": {"kind": "median", "y": y}}, records)
    assert median.status == "PASS" and median.statistic == 0.0
    mean = judge({**spec, "measure": {"kind": "mean", "y": y}}, records)
    assert_close(mean.statistic, -0.2, rtol=1e-6, atol=1e-12)
    assert mean.status != "PASS" and "A=0.8, B=1" in mean.reason, mean.reason


def test_agrees():
    recs = [
        record({"seed": s}, {"a": ([0, 1], [1.0, 2.0 + 1e-9 * s]), "b": ([0, 1], [1.0, 2.0])})
        for s in SEEDS
    ]
    spec = {
        "kind": "agrees",
        "y1": {"reduce": "final", "metric": "a"},
        "y2": {"reduce": "final", "metric": "b"},
    }
    assert judge({**spec, "rtol": 1e-6}, recs).status == "PASS"
    assert judge({**spec, "rtol": 1e-12}, recs).status == "FAIL"
    missing = judge({**spec, "y2": {"reduce": "final", "metric": "c"}, "rtol": 1e-6}, recs)
    assert missing.status == "INCONCLUSIVE" and "no metric 'c'" in missing.reason


def test_judge_study_end_to_end():
    study = load_study(
        """
        name = "toy"
        title = "t"
        seed_paper = "001"
        reference = "r"
        provenance = "designed"
        seeds = [0, 1, 2]
        [sweep]
        "model.width" = [8, 16, 32, 64, 128, 256]
        [[claims]]
        id = "shrinks"
        kind = "power_law"
        x = "model.width"
        y = {reduce = "final", metric = "loss"}
        band = [-1.1, -0.9]
        reference = "paper"
        [[claims]]
        id = "grows"
        kind = "monotone"
        x = "model.width"
        y = {reduce = "final", metric = "loss"}
        direction = "increasing"
        """
    )
    verdicts = judge_study(study, power_records(-1.0))
    assert [(v.claim_id, v.status) for v in verdicts] == [("shrinks", "PASS"), ("grows", "FAIL")]
    assert verdicts[0].reference == "paper" and verdicts[0].band == (-1.1, -0.9)
    assert all(v.reason for v in verdicts)


def _within_records(values):
    import numpy as np

    from gdscope.studies.table import TrialRecord

    return [
        TrialRecord(
            hash=str(i),
            config={"lr": lr, "seed": 0},
            status="completed",
            series={"floor": (np.array([10]), np.array([v]))},
        )
        for i, (lr, v) in enumerate(values)
    ]


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([(0.1, 0.05), (0.2, 0.1)], "PASS"),
        ([(0.1, 0.05), (0.2, 0.3)], "FAIL"),
    ],
)
def test_within_claim_checks_every_trial(values, status):
    from gdscope.studies.pointwise import WithinClaim

    claim = WithinClaim.model_validate(
        {
            "id": "C1-floor",
            "kind": "within",
            "y": {"reduce": "expr", "expr": "floor / lr"},
            "band": [0.25, 1.0],
        }
    )
    verdict = claim.judge(_within_records(values))
    assert verdict.status == status, verdict.reason
    assert verdict.n_points == 2
