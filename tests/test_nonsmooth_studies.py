"""Seed 002's non-smooth studies: RMSProp's stall (C4), L1 pruning of an MLP (C3-mlp), and the
network version of C1 — the instruments they read and the claims as the study files state them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from _helpers import assert_close
from gdscope import api
from gdscope.config import TrialConfig
from gdscope.studies.table import TrialRecord
from gdscope.trials.objective import ObjectiveConfig, run
from gdscope.trials.trial import build_trial

# ---------------------------------------------------------------------------------------------
# objective trials: absorbed runs and the distance to x*


def _final(trace, metric: str) -> float:
    return float(trace.series(metric)[1][-1])


def test_gd_landing_on_the_kink_is_absorbed_and_a_cycle_is_not():
    # 0.25 − 4 × 0.0625 = 0 exactly: sign(0) = 0 holds the iterate there for good
    landed = run(ObjectiveConfig(function="abs", method="gd", lr=0.0625, x0=0.25, steps=40))
    assert _final(landed, "absorbed") == 1.0
    assert _final(landed, "floor") == 0.0
    cycle = run(ObjectiveConfig(function="abs", method="gd", lr=0.0625, x0=0.26, steps=40))
    assert _final(cycle, "absorbed") == 0.0
    assert_close(_final(cycle, "floor"), 0.0625 / 2, rtol=1e-6, atol=1e-12)


def test_a_run_still_moving_over_the_tail_is_not_absorbed():
    # lands on 0 at step 32 of 36: the last 20% of the steps (8) are not all at rest
    late = run(ObjectiveConfig(function="abs", method="gd", lr=0.0078125, x0=0.25, steps=36))
    assert float(late.series("x")[1][-1]) == 0.0
    assert _final(late, "absorbed") == 0.0


def test_dist_floor_measures_the_distance_to_the_minimiser_of_the_l1_problem():
    # ½(x − 1)² + 0.5|x|: x* = 0.5, a smooth minimum that GD reaches
    trace = run(
        ObjectiveConfig(function="l1_scalar", lam=0.5, b=1.0, method="gd", lr=0.5, steps=200)
    )
    assert _final(trace, "dist_floor") < 1e-12
    assert_close(_final(trace, "floor"), 0.5, rtol=1e-6, atol=1e-12)
    assert _final(trace, "absorbed") == 1.0  # the float gradient at x* is exactly 0


def test_rmsprop_on_the_smooth_quadratic_is_ejected_to_a_floor_of_half_the_lr():
    # the claim C4 used to make ("converges at small lr") is false: after converging to ~1e-200,
    # √v decays until lr/√v crosses the stability edge and the iterate settles at |x| ≈ lr/2
    trace = run(
        ObjectiveConfig(function="quadratic", method="rmsprop", lr=1e-3, x0=0.25, steps=3000)
    )
    assert float(np.min(trace.series("abs_x")[1])) < 1e-100
    assert_close(_final(trace, "floor") / 1e-3, 0.5, rtol=0, atol=0.05)
    assert _final(trace, "absorbed") == 0.0


# ---------------------------------------------------------------------------------------------
# the C4 study's claims on records


def _objective_record(function: str, lam: float, lr: float, **finals: float) -> TrialRecord:
    config = {"kind": "objective", "function": function, "lam": lam, "lr": lr, "seed": 0}
    series = {k: (np.array([100]), np.array([v], dtype=np.float64)) for k, v in finals.items()}
    return TrialRecord(
        hash=f"{function}-{lam}-{lr}", config=config, status="completed", series=series
    )


def _claim(study: str, claim_id: str):
    return next(c for c in api.load(study).claims if c.id == claim_id)


def test_the_abs_floor_fit_leaves_absorbed_runs_out_and_names_them():
    claim = _claim("rmsprop-nonsmooth", "C4-abs-floor-linear")
    records = [
        _objective_record("abs", 1.5, lr, floor=lr / 2, absorbed=0.0)
        for lr in (1e-4, 3e-4, 1e-3, 3e-3)
    ] + [_objective_record("abs", 1.5, lr, floor=0.0, absorbed=1.0) for lr in (1e-2, 3e-2)]
    verdict = claim.judge(records, ("lr", "function"))
    assert verdict.status == "PASS", verdict.reason
    assert_close(verdict.statistic, 1.0, rtol=1e-6, atol=1e-12)
    assert "dropped 2 of 6" in verdict.reason and "lr=0.01" in verdict.reason


@pytest.mark.parametrize(
    "study_claim", ["C4-smooth-stalls-at-small-lr", "C4-kink-stalls-at-small-lr"]
)
def test_a_run_that_converges_at_small_lr_fails_the_stall_claims(study_claim):
    claim = _claim("rmsprop-nonsmooth", study_claim)
    function, lam = ("quadratic", 0.3) if "smooth" in study_claim else ("abs", 1.5)
    records = [_objective_record(function, lam, 1e-3, floor=1e-12, absorbed=0.0)]
    assert claim.judge(records, ("lr",)).status == "FAIL"


def test_the_c4_study_no_longer_claims_convergence_at_small_lr():
    ids = {c.id for c in api.load("rmsprop-nonsmooth").claims}
    assert "C4-smooth-converges-at-small-lr" not in ids
    assert {"C4-smooth-stalls-at-small-lr", "C4-smooth-floor-linear"} <= ids


# ---------------------------------------------------------------------------------------------
# C3-mlp: λ as a fraction of the readout's λ_max at init; auto_sharpness for proximal methods


def _mlp_config(**optimizer) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 16, "depth": 2, "bias": False},
            "data": {"name": "sphere", "n": 12, "d": 4},
            "optimizer": optimizer,
            "loss": "mse",
            "dtype": "float64",
            "steps": 3,
            "probes": {"zero_fraction": 1, "loss": 1},
        }
    )


def test_readout_lambda_max_is_the_lasso_lambda_max_on_the_features_at_init():
    trial = build_trial(_mlp_config(name="prox_gd", lr=0.1, l1=0.3, l1_scale="readout_lambda_max"))
    x, y = trial.data
    hidden, readout = trial.model.layers
    with torch.no_grad():
        # the readout's multiplier: its output on a unit input over the weight it reads
        scale = (
            readout(torch.eye(readout.weight.shape[1], dtype=x.dtype))[0, 0] / readout.weight[0, 0]
        )
        features = torch.relu(hidden(x))
        # ∂L/∂a at a = 0 for the half-MSE is −scale · Φᵀy/n
        lam_max = float((scale * features.T @ y.reshape(-1, 1) / x.shape[0]).abs().max())
    assert_close(trial.tuning["l1_lambda_max"], lam_max, rtol=1e-10, atol=1e-12)
    assert_close(trial.optimizer.param_groups[0]["l1"], 0.3 * lam_max, rtol=1e-12, atol=1e-12)
    trace = trial.run()
    assert_close(trace.series("tuned_l1")[1][0], 0.3 * lam_max, rtol=1e-12, atol=1e-12)


def test_at_lambda_max_proximal_gd_keeps_a_zero_readout_at_zero():
    # the defining property: with the hidden layer fixed, a = 0 is a fixed point of prox-GD on
    # the readout iff λ ≥ λ_max; just below, one step moves it
    for fraction, stays in ((1.0 + 1e-9, True), (0.99, False)):
        trial = build_trial(
            _mlp_config(name="prox_gd", lr=0.1, l1=fraction, l1_scale="readout_lambda_max")
        )
        readout = trial.model.layers[-1].weight
        with torch.no_grad():
            readout.zero_()
        trial.model.layers[0].weight.requires_grad_(False)
        trial.optimizer.zero_grad()
        x, y = trial.data
        trial.loss_fn(trial.model(x), y).backward()
        trial.optimizer.step()
        assert bool((readout == 0).all()) is stays


def test_l1_scale_options_are_checked_at_load():
    with pytest.raises(ValidationError, match="needs a trained mlp readout"):
        TrialConfig.model_validate(
            {
                "model": {"kind": "cnn"},
                "data": {"name": "sphere_images", "n": 8},
                "optimizer": {"name": "prox_gd", "l1": 0.1, "l1_scale": "readout_lambda_max"},
            }
        )
    with pytest.raises(ValidationError, match="polyak"):
        _mlp_config(name="subgradient", lr="auto_sharpness", schedule="polyak")


def test_proximal_methods_take_auto_sharpness_and_the_default_l1_scale_keeps_the_hash():
    for name in ("prox_gd", "subgradient"):
        trial = build_trial(_mlp_config(name=name, lr="auto_sharpness", l1=0.01))
        lr = trial.optimizer.param_groups[0]["lr"]
        assert_close(lr, 0.5 * 2 / trial.tuning["init_sharpness"], rtol=1e-12, atol=1e-12)
    plain = _mlp_config(name="prox_gd", lr=0.1, l1=0.01)
    explicit = _mlp_config(name="prox_gd", lr=0.1, l1=0.01, l1_scale="absolute")
    assert explicit.content_hash() == plain.content_hash()


def test_ista_prunes_and_subgradient_does_not_at_mid_grid_lambda_over_lambda_max(tmp_path):
    # the study's mid-grid point λ = 0.05 λ_max on one seed, at the quick budget
    result = api.run_study(
        "l1-pruning-mlp",
        scale="quick",
        results=tmp_path,
        overrides=["seeds=[1]", "sweep.optimizer.l1=[0.05]"],
    )
    status = {v.claim_id: v.status for v in result.verdicts}
    assert set(status) == {
        "C3-mlp-subgradient-dense",
        "C3-mlp-ista-sparse",
        "C3-mlp-ista-beats-subgradient",
    }
    assert status == dict.fromkeys(status, "PASS"), [
        (v.claim_id, v.reason) for v in result.verdicts
    ]
    # sparse, but not the whole net pruned (as an absolute λ = 0.05 did: 0.67 λ_max on this seed)
    sparse = next(v for v in result.verdicts if v.claim_id == "C3-mlp-ista-sparse")
    assert 0.5 <= sparse.statistic < 0.95


# ---------------------------------------------------------------------------------------------
# the network version of C1: MAE stalls at an O(η) floor, MSE converges linearly


def test_a_relu_net_on_mae_stalls_at_a_floor_linear_in_eta_and_on_mse_converges(tmp_path):
    result = api.run_study(
        "subgradient-floor-network",
        scale="quick",
        results=tmp_path,
        overrides=["seeds=[0]", "claims.C1-net-mae-floor-linear.min_seeds=1"],
    )
    status = {v.claim_id: v.status for v in result.verdicts}
    assert status == dict.fromkeys(status, "PASS"), [
        (v.claim_id, v.reason) for v in result.verdicts
    ]
    floor = next(v for v in result.verdicts if v.claim_id == "C1-net-mae-floor-linear")
    assert 0.9 <= floor.statistic <= 1.1
