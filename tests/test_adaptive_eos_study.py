"""The adaptive-edge-of-stability study: its claims read each trial's own ratio series, and can fail.

Synthetic trials stand in for training (as in test_eos_studies): the ratio
``r = λ_max(P⁻¹H)/(38/η)`` starts at ``start``, rises from ``rise_at`` to ``plateau`` and then
oscillates ±8% around it; the loss falls, with a relative trend ``edge_loss_trend`` at the edge;
the raw sharpness grows by the factor ``sharpness_growth`` from the edge to the last step.
"""

from __future__ import annotations

import numpy as np
import pytest

from gdscope import api
from gdscope.studies import TrialRecord, judge_study
from gdscope.trials.trial import validate_trial

STUDY = "adaptive-edge-of-stability"


def trial(
    seed: int,
    *,
    start: float = 0.1,
    rise_at: int = 60,
    plateau: float = 0.97,
    edge_loss_trend: float = -0.4,
    sharpness_growth: float = 5.0,
    steps: int = 300,
) -> TrialRecord:
    s = np.arange(10, steps + 1, 10)  # the probe records nothing at step 0
    ramp = np.clip((s - rise_at) / 40, 0, 1)
    ratio = np.where(
        ramp >= 1, plateau * (1 + 0.08 * np.sin(s / 9.0)), start + (plateau - start) * ramp
    )
    ls = np.arange(0, steps + 1, 10)
    edge = rise_at + 40
    loss = 0.28 * (1 + edge_loss_trend * np.clip((ls - edge) / (steps - edge), 0, 1))
    sharpness = 2.0 * sharpness_growth ** np.clip((s - edge) / (steps - edge), 0, 1)
    return TrialRecord(
        hash=f"{seed}{start}{rise_at}{plateau}{edge_loss_trend}{sharpness_growth}",
        config={"optimizer.lr": 0.01, "seed": seed},
        status="completed",
        series={
            "preconditioned_sharpness_ratio": (s.astype(np.int64), ratio),
            "loss": (ls.astype(np.int64), loss),
            "sharpness": (s.astype(np.int64), sharpness),
        },
    )


def verdicts(records: list[TrialRecord]) -> dict:
    return {v.claim_id: v for v in judge_study(api.load(STUDY), records)}


def test_the_adaptive_edge_passes_on_each_seeds_own_plateau():
    out = verdicts([trial(0), trial(1, rise_at=30), trial(2, rise_at=150)])
    assert {k: v.status for k, v in out.items()} == dict.fromkeys(out, "PASS"), {
        k: v.reason for k, v in out.items()
    }
    assert set(out) == {
        "AEOS-starts-below", "AEOS-reaches-edge", "AEOS-plateau", "AEOS-loss-falls",
        "AEOS-sharpness-rises",
    }  # fmt: skip


def test_the_adaptive_edge_claims_can_fail():
    never = verdicts([trial(0), trial(1, plateau=0.8)])  # seed 1 stops below 0.95·38/η
    assert never["AEOS-reaches-edge"].status == "FAIL"
    assert never["AEOS-plateau"].status == "INCONCLUSIVE"
    assert verdicts([trial(0, plateau=1.3)])["AEOS-plateau"].status == "FAIL"
    assert verdicts([trial(0, start=0.8)])["AEOS-starts-below"].status == "FAIL"
    assert verdicts([trial(0, edge_loss_trend=0.3)])["AEOS-loss-falls"].status == "FAIL"
    # GD at its edge: the raw sharpness hovers instead of rising
    assert verdicts([trial(0, sharpness_growth=1.1)])["AEOS-sharpness-rises"].status == "FAIL"


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_trial_is_a_full_batch_adam_run_recording_both_probes(scale):
    configs = [validate_trial(c) for c in api.load(STUDY).expand(scale)]
    assert configs
    for config in configs:
        assert config.optimizer.name == "adam" and config.batch_size is None
        assert {"preconditioned_sharpness", "hessian_density"} <= set(config.probes)
        assert config.probes["hessian_density"] >= config.steps  # first and last checkpoint


@pytest.mark.slow
def test_the_adaptive_edge_is_reached_at_quick_scale(tmp_path):
    """Full-batch Adam, 3 seeds × 300 steps (about 5 s of trial time)."""
    result = api.run_study(STUDY, scale="quick", results=tmp_path)
    status = {v.claim_id: (v.status, v.reason) for v in result.verdicts}
    assert all(s == "PASS" for s, _ in status.values()), status
