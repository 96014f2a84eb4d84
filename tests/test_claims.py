"""Claims judged on synthetic records with known exponents, rates and bounds (no training)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope.studies import Reducer, TrialRecord, judge_study, load_study, reduce_record
from gdscope.studies.claims import Claim

CLAIM = TypeAdapter(Claim)
WIDTHS = [8, 16, 32, 64, 128, 256]
SEEDS = [0, 1, 2]


def record(
    config: dict, series: dict | None = None, status: str = "completed", reason: str = ""
) -> TrialRecord:
    series = {
        k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
        for k, (s, v) in (series or {}).items()
    }
    return TrialRecord(
        hash=f"h{abs(hash(tuple(sorted(config.items())))):x}",
        config=config,
        status=status,
        series=series,
        reason=reason,
    )


def power_records(
    exponent: float, *, noise: float = 0.02, widths=WIDTHS, extra: dict | None = None
) -> list[TrialRecord]:
    """``final(loss) = 3 · width^exponent · e^(noise)`` for every width and seed."""
    rng = np.random.default_rng(0)
    out = []
    for seed in SEEDS:
        for width in widths:
            y = 3.0 * width**exponent * math.exp(noise * rng.standard_normal())
            config = {"model.width": width, "seed": seed, **(extra or {})}
            out.append(record(config, {"loss": ([0, 10], [1.0, y])}))
    return out


def judge(spec: dict, records: list[TrialRecord]):
    return CLAIM.validate_python({"id": "c", **spec}).judge(records, ["model.width"])


POWER = {"kind": "power_law", "x": "model.width", "y": {"reduce": "final", "metric": "loss"}}


# ---------------------------------------------------------------------------------------------
# reducers against hand computations


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
