"""What made verdicts untrustworthy, each pinned by a test that fails on the old behaviour.

Residual blocks with a positive-mean branch, learning rates above the stability edge by accident,
the fit-quality gate on one-sided and flat bands, the "extreme" printed in ``within`` reasons,
and sanity checks counted among the paper claims.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import gdscope as gs
from _claims import judge, record
from _helpers import assert_close
from gdscope.config import TrialConfig
from gdscope.studies._fitting import names_a_value
from gdscope.trials.trial import build_trial, stability_edge

# ---------------------------------------------------------------------------------------------
# residual MLP: a zero-mean branch keeps the stream (and the NTK) bounded in depth


def _kernel_and_loss(residual: bool, depth: int) -> tuple[float, float]:
    x, y = gs.data.sphere(n=32, d=16, seed=0, dtype=torch.float64)
    net = gs.models.mlp(16, 256, depth=depth, residual=residual, seed=0, dtype=torch.float64)
    lam_max = float(torch.linalg.eigvalsh(gs.probes.ntk_gram(net, x))[-1])
    with torch.no_grad():
        return lam_max, float(gs.losses.mse(net(x), y))


def test_a_deep_residual_mlp_is_scaled_like_the_plain_one():
    """Depth 32, width 256, n = 32: h + β·σ(Wh) gave λ_max(K₀) 44× and loss 37× the plain net's."""
    plain_lam, plain_loss = _kernel_and_loss(False, 32)
    res_lam, res_loss = _kernel_and_loss(True, 32)
    assert res_lam < 10 * plain_lam and plain_lam < 10 * res_lam, (res_lam, plain_lam)
    assert res_loss < 3 * plain_loss and plain_loss < 3 * res_loss, (res_loss, plain_loss)


def test_the_residual_branch_ends_in_a_linear_layer():
    net = gs.models.mlp(3, 4, depth=3, residual=True, bias=False, seed=0, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    first, block, readout = net.layers
    h = torch.relu(first(x))
    expected = readout(h + net.branch_scale * block(torch.relu(h)))
    out = net(x)
    assert out.dtype == expected.dtype and torch.equal(out, expected)  # bitwise: the same graph


# ---------------------------------------------------------------------------------------------
# lr = "auto_sharpness": a fraction of the stability edge measured at init


def _config(**optimizer) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 32, "depth": 3},
            "data": {"name": "sphere", "n": 16, "d": 4},
            "optimizer": optimizer,
            "loss": "mse",
            "dtype": "float64",
            "steps": 5,
        }
    )


@pytest.mark.parametrize(
    ("name", "momentum", "fraction"),
    [("gd", None, 0.5), ("gd", None, 0.9), ("heavy_ball", 0.5, 0.5), ("nesterov", 0.9, 0.8)],
)
def test_auto_sharpness_sets_the_lr_from_the_sharpness_at_init(name, momentum, fraction):
    config = _config(name=name, lr="auto_sharpness", lr_fraction=fraction, momentum=momentum)
    trial = build_trial(config)
    reference = build_trial(_config(name=name, lr=0.1, momentum=momentum))
    s0 = gs.probes.sharpness(reference.model, reference.loss_fn, reference.data, tol=1e-6)
    assert_close(trial.tuning["init_sharpness"], s0, rtol=1e-3, atol=1e-12)
    edge = stability_edge(name, trial.tuning["init_sharpness"], momentum)
    assert_close(trial.optimizer.param_groups[0]["lr"], fraction * edge, rtol=1e-12, atol=1e-12)
    trace = trial.run()
    assert_close(trace.series("tuned_lr")[1][0], fraction * edge, rtol=1e-12, atol=1e-12)
    assert_close(
        trace.series("lr_times_sharpness")[1][0], fraction * s0 * edge, rtol=1e-3, atol=1e-12
    )


def test_auto_sharpness_below_the_edge_trains_and_above_it_gd_diverges():
    below = build_trial(_config(name="gd", lr="auto_sharpness", lr_fraction=0.5)).run()
    assert below.status == "completed"
    losses = below.series("loss")[1]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("optimizer", "match"),
    [
        ({"name": "adam", "lr": "auto_sharpness"}, "optimizer whose stability edge"),
        ({"name": "gd", "lr": 0.1, "lr_fraction": 0.3}, "applies only with lr = 'auto_sharpness'"),
        ({"name": "gd", "lr": "auto_sharpness", "lr_fraction": 0}, "greater than 0"),
    ],
)
def test_auto_sharpness_options_are_checked_at_load(optimizer, match):
    with pytest.raises(ValidationError, match=match):
        _config(**optimizer)


def test_auto_sharpness_refuses_lr_multipliers():
    config = TrialConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 128, "depth": 3, "parameterization": "mup"},
            "data": {"name": "sphere", "n": 8, "d": 4},
            "optimizer": {"name": "gd", "lr": "auto_sharpness"},
        }
    )
    with pytest.raises(ValueError, match="lr multipliers"):
        build_trial(config)


def test_new_options_at_their_defaults_leave_the_hash_unchanged():
    plain = _config(name="gd", lr=0.1)
    explicit = TrialConfig.model_validate(
        {
            **plain.model_dump(),
            "optimizer": {**plain.optimizer.model_dump(), "lr_fraction": 0.5},
            "model": {**plain.model.model_dump(), "trained": "all", "readout_init": "default"},
        }
    )
    assert explicit.content_hash() == plain.content_hash()
    hidden = _config(name="gd", lr=0.1).model_copy(
        update={"model": plain.model.model_copy(update={"trained": "hidden"})}
    )
    assert hidden.content_hash() != plain.content_hash()


# ---------------------------------------------------------------------------------------------
# the Allen-Zhu–Li–Song architecture and mup's zero readout


def test_trained_hidden_freezes_the_input_and_readout_layers():
    config = _config(name="gd", lr=0.05).model_copy(
        update={"model": _config(name="gd").model.model_copy(update={"trained": "hidden"})}
    )
    trial = build_trial(config)
    before = [p.detach().clone() for p in trial.model.parameters()]
    trial.run()
    after = list(trial.model.parameters())
    frozen = {id(p) for p in trial.model.parameters() if not p.requires_grad}
    layers = [m for m in trial.model.modules() if isinstance(m, gs.models.ScaledLinear)]
    assert frozen == {id(p) for layer in (layers[0], layers[-1]) for p in layer.parameters()}
    for old, new in zip(before, after, strict=True):
        if id(new) in frozen:
            assert torch.equal(old, new)
        else:
            assert not torch.equal(old, new)


def test_trained_hidden_needs_a_hidden_layer():
    with pytest.raises(ValidationError, match="needs depth ≥ 3"):
        TrialConfig.model_validate({"model": {"kind": "mlp", "depth": 2, "trained": "hidden"}})


def test_a_zero_readout_gives_zero_output_at_init():
    net = gs.models.mlp(4, 64, depth=3, parameterization="mup", readout_init="zero", seed=0)
    with torch.no_grad():
        assert torch.count_nonzero(net(torch.randn(7, 4))) == 0


# ---------------------------------------------------------------------------------------------
# losses for the non-smooth and smooth-non-quadratic headlines


def test_mae_and_pseudo_huber_match_their_formulas():
    out = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    r = out - target
    assert_close(float(gs.losses.mae(out, target)), float(r.abs().sum() / 2), rtol=1e-6, atol=1e-12)
    expected = float(((1 + r**2).sqrt() - 1).sum() / 2)
    assert_close(float(gs.losses.pseudo_huber_loss(out, target)), expected, rtol=1e-6, atol=1e-12)
    assert gs.losses.get_loss("mae") is gs.losses.mae


# ---------------------------------------------------------------------------------------------
# the fit-quality rule: R² gates a claimed value, not a direction or a flat trend


def _noisy_slope_records(slope: float, noise: float) -> list:
    rng = np.random.default_rng(1)
    out = []
    for seed in (0, 1, 2, 3, 4):
        for width in (8, 16, 32, 64, 128, 256):
            y = width**slope * math.exp(noise * rng.standard_normal())
            out.append(record({"model.width": width, "seed": seed}, {"loss": ([0], [y])}))
    return out


POWER = {"kind": "power_law", "x": "model.width", "y": {"reduce": "final", "metric": "loss"}}


def test_names_a_value():
    assert names_a_value((-0.6, -0.4))
    assert not names_a_value((-math.inf, -0.3))
    assert not names_a_value((-0.1, 0.1))
    assert not names_a_value((0.0, math.inf))


def test_a_noisy_fit_inside_a_one_sided_band_passes_with_a_warning():
    records = _noisy_slope_records(-1.0, noise=0.5)
    verdict = judge({**POWER, "band": [-math.inf, -0.3]}, records)
    assert verdict.status == "PASS", verdict.reason
    assert "warning" in verdict.reason and "R²" in verdict.reason


def test_a_noisy_fit_of_a_named_exponent_stays_inconclusive():
    records = _noisy_slope_records(-1.0, noise=0.5)
    verdict = judge({**POWER, "band": [-1.5, -0.5]}, records)
    assert verdict.status == "INCONCLUSIVE", verdict.reason
    assert "R²" in verdict.reason


def test_a_flat_trend_is_judged_by_its_ci():
    verdict = judge({**POWER, "band": [-0.1, 0.1]}, _noisy_slope_records(0.0, noise=0.01))
    assert verdict.status == "PASS", verdict.reason


# ---------------------------------------------------------------------------------------------
# within: the value nearest the binding edge, and the range


def test_within_names_the_value_nearest_an_edge_and_the_range():
    records = [
        record({"model.width": w, "seed": 0}, {"loss": ([0], [v])})
        for w, v in ((8, 0.73), (16, 1.27), (32, 1.0))
    ]
    spec = {"kind": "within", "y": {"reduce": "final", "metric": "loss"}, "band": [0.0, 2.0]}
    verdict = judge(spec, records)
    assert verdict.status == "PASS"
    assert_close(verdict.statistic, 1.27, rtol=1e-6, atol=1e-12)
    assert "values in [0.73, 1.27]" in verdict.reason
    upper = judge({**spec, "band": [-math.inf, 1.5]}, records)
    assert_close(upper.statistic, 1.27, rtol=1e-6, atol=1e-12)
    lower = judge({**spec, "band": [0.5, math.inf]}, records)
    assert_close(lower.statistic, 0.73, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# roles and findings: instrument checks apart from the paper claims


def _store_with_roles(tmp_path):
    from gdscope.store import Store

    within = {"kind": "within", "y": {"reduce": "final", "metric": "loss"}}
    spec = {
        "name": "s",
        "claims": [
            {"id": "paper-pass", **within, "band": [0, 1]},
            {"id": "paper-fail", **within, "band": [2, 3], "finding": "measured  1.0;\n too low"},
            {"id": "identity", **within, "band": [0, 1], "role": "sanity"},
        ],
    }
    records = [record({"seed": 0}, {"loss": ([0], [0.5])})]
    verdicts = [
        judge({k: v for k, v in c.items() if k != "id"} | {"id": c["id"]}, records)
        for c in spec["claims"]
    ]
    store = Store(tmp_path)
    store.record_study("s", "quick", spec)
    store.record_verdicts("s", "quick", verdicts)
    return verdicts


def test_a_claim_carries_its_role_and_finding_into_its_verdict(tmp_path):
    verdicts = _store_with_roles(tmp_path)
    assert [v.role for v in verdicts] == ["paper", "paper", "sanity"]
    assert verdicts[1].finding == "measured  1.0;\n too low"


def test_show_counts_sanity_checks_apart_and_prints_findings(tmp_path):
    _store_with_roles(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "gdscope", "show", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "paper claims: 1 PASS, 1 FAIL, 0 INCONCLUSIVE, 0 REPORTED" in text
    assert "instrument checks: 1 PASS, 0 FAIL, 0 INCONCLUSIVE, 0 REPORTED" in text
    assert "    finding: measured 1.0; too low" in text
    paper_part, checks_part = text.split("instrument checks (")
    assert "identity" not in paper_part and "identity" in checks_part


def test_the_report_shows_roles_and_findings(tmp_path):
    from gdscope.report import write_report

    _store_with_roles(tmp_path)
    page = write_report(tmp_path, tmp_path / "report.html").read_text()
    assert '<section id="checks"><h2>Instrument checks</h2>' in page
    assert "2 claims" not in page
    assert "instrument checks apart: 1 PASS" in page
    assert '<p class="finding"><b>Finding.</b> measured 1.0; too low</p>' in page
    verdicts, checks = (
        page.split('<section id="checks">')[0],
        page.split('<section id="checks">')[1],
    )
    assert ">identity<" not in verdicts.split('<section id="verdicts">')[1]
    assert ">identity<" in checks.split("</section>")[0]


def test_the_markdown_verdicts_page_lists_studies_claims_and_findings(tmp_path):
    _store_with_roles(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "gdscope", "report", str(tmp_path), "--markdown", "-o", "v.md"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "v.md").read_text()
    assert "| s | quick | 1 PASS, 1 FAIL | 1 PASS | 0 (0.0 s of trial time) | reused |" in page
    assert "- **paper-fail**: FAIL" in page
    assert "  *Finding:* measured 1.0; too low" in page
    assert "- **identity** (instrument check): PASS" in page


def test_the_markdown_wall_time_is_the_span_of_the_trials_this_run_stored():
    from gdscope.report.collect import StudyView
    from gdscope.report.markdown import elapsed

    def trial(finished, took):
        return {"finished_at": f"2026-12-04T10:{finished}+00:00", "wall_time_s": took}

    # the run (one queue for all studies) started at 10:00:00; this study's first trial started
    # at 10:01:33 (finished 10:01:40 after 7 s) and its last finished at 10:01:50
    runs = {"last_run": "2026-12-04T10:00:00+00:00"}
    trials = [trial("01:40", 7.0), trial("01:50", 2.0), trial("00:00", 0.0)]
    view = StudyView("s", "quick", {}, [], trials=trials[:2], runs=runs)
    assert elapsed(view) == "17 s"
    before = {"finished_at": "2026-12-04T09:30:00+00:00", "wall_time_s": 1.0}  # an earlier run
    resumed = StudyView("s", "quick", {}, [], trials=[*trials[:2], before], runs=runs)
    assert elapsed(resumed) == "17 s (resumed: 1 trial stored before)"
    early = StudyView("s", "quick", {}, [], trials=[trial("00:05", 30.0)], runs=runs)
    assert elapsed(early) == "5 s"  # never before the run started
    # a later run only judged: the span of the sitting that stored the trials, with its date
    old = {"last_run": "2026-12-04T11:00:00+00:00"}
    view = StudyView("s", "quick", {}, [], trials=trials[:2], runs=old)
    assert elapsed(view) == "17 s (stored 2026-12-04)"
    # trials stored in two sittings (a span far longer than their summed time): not a wall time
    apart = [trial("01:40", 7.0), {"finished_at": "2026-12-04T10:41:50+00:00", "wall_time_s": 2.0}]
    assert elapsed(StudyView("s", "quick", {}, [], trials=apart, runs=old)) == "reused"
