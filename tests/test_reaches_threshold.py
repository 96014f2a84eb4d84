"""``reaches`` thresholds given as expressions, evaluated per trial (e.g. ``0.95*2/optimizer.lr``).

The edge-of-stability claims (Cohen et al. 2021) ask that the sharpness reach 0.95·2/η; with a
fixed number the claim is only right for the η it was written for. A trial at η = 0.25 whose
sharpness stalls at 4.5 passes a fixed 3.8 but has not reached its own edge (0.95·2/0.25 = 7.6).
"""

from __future__ import annotations

import math
from importlib.resources import files

import numpy as np
import pytest
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope import api
from gdscope.studies import TrialRecord
from gdscope.studies.claims import Claim
from gdscope.studies.errors import StudyError
from gdscope.studies.reducers import Reducer
from gdscope.studies.spec import load_study

CLAIM = TypeAdapter(Claim)
EDGE = "0.95*2/optimizer.lr"


def trial(lr: float, plateau: float, seed: int = 0, rise_at: int = 500) -> TrialRecord:
    """Sharpness 1 until ``rise_at``, then ``plateau`` to step 2000 (every 25 steps)."""
    steps = np.arange(0, 2001, 25)
    sharp = np.where(steps < rise_at, 1.0, plateau)
    return TrialRecord(
        hash=f"h{lr}-{plateau}-{seed}",
        config={"optimizer.lr": lr, "seed": seed},
        status="completed",
        series={"sharpness": (steps.astype(np.int64), sharp.astype(np.float64))},
    )


def reaches(threshold, **more):
    spec = {"id": "edge", "kind": "reaches", "metric": "sharpness", "direction": "above"}
    return CLAIM.validate_python({**spec, "threshold": threshold, **more})


def test_a_threshold_expression_follows_each_trials_learning_rate():
    claim = reaches(EDGE)
    assert isinstance(claim.threshold, Reducer) and claim.threshold.expr == EDGE
    at_edge = [trial(0.5, 1.04 * 4), trial(0.25, 1.04 * 8, seed=1)]
    out = claim.judge(at_edge, ["optimizer.lr"])
    assert out.status == "PASS", out.reason
    assert_close([e["threshold"] for e in out.evidence], [3.8, 7.6], rtol=1e-6, atol=1e-12)
    assert f"sharpness ≥ {EDGE} = 3.8–7.6 per trial" in out.reason
    assert "first at step 500" in out.reason

    stalled = [trial(0.5, 1.04 * 4), trial(0.25, 4.5, seed=1)]  # η = 0.25 stalls below 7.6
    assert reaches(3.8).judge(stalled).status == "PASS"  # the fixed number cannot see it
    out = claim.judge(stalled, ["optimizer.lr"])
    assert out.status == "FAIL" and out.statistic == 0.5
    assert "optimizer.lr=0.25, seed=1 never reached ≥ 7.6 (closest 4.5)" in out.reason
    stalled_evidence = out.evidence[1]
    assert_close(stalled_evidence["threshold"], 7.6, rtol=1e-6, atol=1e-12)
    assert stalled_evidence["reached_at"] is None and not stalled_evidence["ok"]


def test_a_per_trial_threshold_and_budget_together():
    claim = reaches(EDGE, budget="200/optimizer.lr")  # 400 steps at η = 0.5, 800 at η = 0.25
    late = [trial(0.5, 4.2, rise_at=600), trial(0.25, 8.4, seed=1, rise_at=600)]
    out = claim.judge(late)
    assert out.status == "FAIL" and out.statistic == 0.5
    assert "reached ≥ 3.8 at step 600 > budget 400" in out.reason
    assert reaches(3.8).judge(late).status == "PASS"
    assert "within the run" in reaches(3.8).judge(late).reason


def test_a_threshold_that_cannot_be_computed_is_inconclusive_naming_it():
    out = reaches("0.95*2/optimizer.momentum").judge([trial(0.5, 4.2)])
    assert out.status == "INCONCLUSIVE"
    assert "threshold: expr '0.95*2/optimizer.momentum'" in out.reason
    assert math.isnan(out.statistic)


def _message(text: str) -> str:
    with pytest.raises(StudyError) as caught:
        load_study(text)
    return str(caught.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('threshold = "0.95*2/optimizer.lr +"', "not an arithmetic expression"),
        ('threshold = "0.95*2/lr(1)"', "calls allowed: sqrt"),
        ('threshold = {reduce = "max", metrc = "sharpness"}', "metrc: unknown key"),
        ("threshold = true", "a number, an expression string or a reducer table"),
        ('threshold = 3.8\nbudget = "40*sqrt(kappa"', "not an arithmetic expression"),
    ],
)
def test_a_bad_threshold_is_refused_at_load_in_one_line_naming_the_field(line, expected):
    text = _catalog_text()
    old = f'\nthreshold = "{EDGE}"\n'  # the claim's line (the description quotes it too)
    assert text.count(old) == 1
    message = _message(text.replace(old, f"\n{line}\n"))
    problems = message.splitlines()[1:]
    field = "budget" if "budget" in line else "threshold"
    assert len(problems) == 1, message
    assert problems[0].strip().startswith(f"claims[R4-reaches-edge].{field}: "), message
    assert expected in problems[0], message


def _catalog_text() -> str:
    return (files("gdscope.studies") / "catalog" / "edge-of-stability.toml").read_text()


def test_the_eos_reaches_claims_use_the_per_trial_edge_at_every_scale():
    for name in ("edge-of-stability", "eos-relu-vs-tanh"):
        study = api.load(name)
        for scale in ("quick", "paper", "smoke"):
            claims = [c for c in study.with_scale(scale).claims if c.kind == "reaches"]
            assert claims and all(
                isinstance(c.threshold, Reducer) and c.threshold.expr == EDGE for c in claims
            ), (name, scale)
        dumped = study.model_dump(mode="json", exclude_defaults=True)["claims"]
        assert {"reduce": "expr", "expr": EDGE} in [c.get("threshold") for c in dumped]
