"""Studies of learning-rate transfer, the μP coordinate check and weights staying near init.

lr-transfer (B5) must tell μP from SP: widths over ≥ 5 octaves, a ×√2 grid per
parameterization, SP's optimum moving ≥ 2 octaves where μP's stays. mup-coord-check (R5) must
run at a learning rate below SP's stability edge at its widest width, with μP's readout at zero.
weights-stay-near-init (D4) reads the displacement in units of the initial residual.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

from _helpers import assert_close
from gdscope import api
from gdscope.config import TrialConfig
from gdscope.probes.hessian import sharpness
from gdscope.studies.claims import Claim
from gdscope.studies.table import TrialRecord
from gdscope.trials.trial import build_trial
from test_optimum import SPEC as OPTIMUM_SPEC

CLAIM = TypeAdapter(Claim)


def _by_id(result):
    return {v.claim_id: v for v in result.verdicts}


# ---------------------------------------------------------------------------------------------
# optimum_shift: the width range a claim of transfer needs


def _optimum_records(widths, lrs, best_lr):
    out = []
    for width in widths:
        for lr in lrs:
            loss = (math.log2(lr) - math.log2(best_lr)) ** 2 + 1
            config = {"model.width": width, "optimizer.lr": lr, "seed": 0}
            series = {"loss": (np.array([0, 10]), np.array([5.0, loss]))}
            out.append(TrialRecord(f"h{width}-{lr}", config, "completed", series))
    return out


def _optimum_claim(**over):
    return CLAIM.validate_python({**OPTIMUM_SPEC, **over})


def test_optimum_shift_is_inconclusive_over_too_few_octaves_of_width():
    lrs = [2.0 ** (k / 2) for k in range(-8, 3)]
    recs = _optimum_records([64, 128, 256, 512], lrs, best_lr=0.25)
    axes = ["model.width", "optimizer.lr"]
    short = _optimum_claim(min_span_octaves=5.0).judge(recs, axes)
    assert short.status == "INCONCLUSIVE", short.reason
    assert "spans 3 octaves" in short.reason and "needs ≥ 5" in short.reason
    enough = _optimum_claim(min_span_octaves=3.0).judge(recs, axes)
    assert enough.status == "PASS", enough.reason
    assert _optimum_claim().judge(recs, axes).status == "PASS"  # default: no span asked


# ---------------------------------------------------------------------------------------------
# lr-transfer (B5)


def test_lr_transfer_spans_five_octaves_on_root_two_grids():
    study = api.load("lr-transfer").with_scale("quick")
    configs = study.expand("quick")
    widths = sorted({c["model"]["width"] for c in configs})
    assert math.log2(widths[-1] / widths[0]) >= 5
    for param in ("standard", "mup", "ntk"):
        lrs = sorted(
            {c["optimizer"]["lr"] for c in configs if c["model"]["parameterization"] == param}
        )
        ratios = np.diff(np.log2(lrs))
        assert_close(ratios, np.full_like(ratios, 0.5), rtol=1e-5, atol=1e-4, what=f"{param} {lrs}")
    claims = {c.id: c for c in study.claims}
    assert claims["B5-mup"].band == (0.0, 1.0)
    assert claims["B5-sp"].band[0] >= 2.0 and claims["B5-sp"].band[1] == math.inf
    assert claims["B5-ntk"].gate is False
    assert all(claims[i].min_span_octaves >= 5 for i in ("B5-mup", "B5-sp", "B5-ntk"))


def test_lr_transfer_tells_sp_from_mup(tmp_path):
    """Widths 32 and 256 (3 octaves): SP's η* moves ≥ 2 octaves, μP's stays within 1."""
    sp = [2.0 ** (k / 2) for k in range(-14, -4)]  # 2^-7 … 2^-2.5
    mup = [2.0 ** (k / 2) for k in range(-12, -4)]  # 2^-6 … 2^-2.5
    zipped = {
        "model.parameterization": ["standard"] * len(sp) + ["mup"] * len(mup),
        "optimizer.lr": sp + mup,
    }
    toml_zip = ", ".join(f'"{k}" = {v!r}'.replace("'", '"') for k, v in zipped.items())
    result = api.run_study(
        "lr-transfer",
        scale="quick",
        results=tmp_path / "res",
        overrides=[
            "seeds=[0]",
            "sweep.model.width=[32, 256]",
            f"sweep_zip=[{{{toml_zip}}}]",
            "claims.B5-sp.min_span_octaves=3.0",
            "claims.B5-mup.min_span_octaves=3.0",
        ],
    )
    verdicts = _by_id(result)
    assert verdicts["B5-sp"].status == "PASS", verdicts["B5-sp"].reason
    assert verdicts["B5-sp"].statistic >= 2.0
    assert verdicts["B5-mup"].status == "PASS", verdicts["B5-mup"].reason
    assert verdicts["B5-mup"].statistic <= 1.0


# ---------------------------------------------------------------------------------------------
# mup-coord-check (R5)


@pytest.mark.slow  # one Lanczos sharpness of a width-2048 net: ~10 s
def test_coord_check_runs_below_sp_stability_edge_at_its_widest_width():
    torch.manual_seed(0)
    configs = api.load("mup-coord-check").with_scale("quick").expand("quick")
    mup = [c for c in configs if c["model"]["parameterization"] == "mup"]
    assert mup and all(c["model"]["readout_init"] == "zero" for c in mup)
    sp = [c for c in configs if c["model"]["parameterization"] == "standard" and c["seed"] == 0]
    widest = max(sp, key=lambda c: c["model"]["width"])
    lrs = {c["optimizer"]["lr"] for c in configs}
    assert len(lrs) == 1  # one lr at every width: a coordinate check
    trial = build_trial(TrialConfig.model_validate(widest))
    s0 = float(sharpness(trial.model, trial.loss_fn, trial.data, tol=1e-3))
    assert lrs.pop() < 2 / s0


def test_coord_check_mup_is_flat_with_a_zero_readout(tmp_path):
    """Widths 64 … 1024 (the former quick range): μP's output and hidden updates are flat."""
    result = api.run_study(
        "mup-coord-check",
        scale="quick",
        results=tmp_path / "res",
        overrides=["sweep.model.width=[64, 128, 256, 512, 1024]"],
    )
    verdicts = _by_id(result)
    for claim_id in ("R5-mup-hidden-flat", "R5-mup-output-flat", "R5-sp-output-grows"):
        assert verdicts[claim_id].status == "PASS", verdicts[claim_id].reason


# ---------------------------------------------------------------------------------------------
# weights-stay-near-init (D4)


def test_displacement_in_units_of_the_initial_residual_fits_a_power_law(tmp_path):
    """GD arm at quick scale: every seed's log–log fit reaches R² ≥ 0.9 and the CI decides."""
    result = api.run_study(
        "weights-stay-near-init",
        scale="quick",
        results=tmp_path / "res",
        overrides=[
            'sweep_zip=[{"optimizer.name" = ["gd"], "optimizer.lr" = [1.0], '
            '"optimizer.momentum" = [0.0]}]'
        ],
    )
    verdict = _by_id(result)["D4-displacement"]
    assert verdict.status == "PASS", verdict.reason
    assert -0.7 <= verdict.ci[0] <= verdict.ci[1] <= -0.3


@pytest.mark.parametrize("claim_id", ["D4-displacement", "D4-nag-displacement"])
def test_displacement_claims_divide_by_the_initial_residual(claim_id):
    claim = next(c for c in api.load("weights-stay-near-init").claims if c.id == claim_id)
    assert claim.y.then == "value / sqrt(2 * data.n * loss)"
