"""Trial kinds: kernel-level dynamics (D1–D3), test objectives (C1, C5), the lasso (C2, C3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import gdscope as gs
from _helpers import assert_close
from gdscope.stats import fit_linear_rate
from gdscope.trials import (
    TRIAL_KINDS,
    KernelDataConfig,
    KernelDynamicsConfig,
    LassoConfig,
    ObjectiveConfig,
    run_kernel_dynamics,
    run_lasso,
    run_objective,
)
from gdscope.trials import kernel_dynamics as kd

METHODS = ["gd", "nag", "heavy_ball"]


# ---------------------------------------------------------------------------------------------
# kernel dynamics


def _kernel(n: int = 16, seed: int = 0, **kwargs) -> KernelDynamicsConfig:
    return KernelDynamicsConfig(data=KernelDataConfig(n=n, d=4), seed=seed, **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_eigenbasis_recursion_equals_matrix_recursion(method):
    x, y = gs.data.sphere(7, 3, seed=3, dtype=torch.float64)
    H = gs.probes.h_infinity(x).numpy()
    lam = np.linalg.eigvalsh(H)
    tuning = kd.tune(method, lam[0], lam[-1])
    r0 = -y.numpy()[:, 0]
    fast = kd.residuals_eigen(H, r0, method, tuning, 60)
    slow = kd.residuals_direct(H, r0, method, tuning, 60)
    assert_close(fast, slow, rtol=0, atol=1e-10 * float(np.linalg.norm(r0)), what=method)


@pytest.mark.parametrize("method", METHODS)
def test_run_residuals_equal_the_matrix_oracle(method):
    config = _kernel(n=10, method=method, steps=40, seed=2)
    trace = run_kernel_dynamics(config)
    x, y = kd._inputs(config)
    H = gs.probes.h_infinity(torch.from_numpy(x)).numpy()
    tuning = kd.Tuning(trace.final("eta"), trace.final("beta"))
    oracle = np.linalg.norm(kd.residuals_direct(H, -y, method, tuning, 40), axis=1)
    assert_close(trace.series("residual")[1], oracle, rtol=1e-10, what=method)


def _rates(method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """κ, fitted 1 − ρ̂ and theoretical 1 − ρ over n = 8…64 in d = 4 and three seeds."""
    kappas, fitted, theory = [], [], []
    for n in (8, 16, 32, 64):
        for seed in (0, 1, 2):
            trace = run_kernel_dynamics(
                _kernel(n, seed, method=method, steps_per_kappa=40, tol=1e-10)
            )
            fit = fit_linear_rate(*trace.series("residual"))
            assert fit.ok, (method, n, seed, fit)
            kappas.append(trace.final("kappa"))
            fitted.append(1 - fit.rate)
            theory.append(1 - trace.final("theory_rate"))
    return np.array(kappas), np.array(fitted), np.array(theory)


@pytest.fixture(scope="module")
def rates() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {method: _rates(method) for method in METHODS}


def _slope(kappas: np.ndarray, gaps: np.ndarray) -> float:
    return float(np.polyfit(np.log(kappas), np.log(gaps), 1)[0])


def test_kappa_range_spans_the_claimed_decade(rates):
    kappas = rates["gd"][0]
    assert kappas.min() < 20 and kappas.max() > 400  # measured 10.0 … 438


def test_gd_fitted_rate_matches_theory(rates):
    kappas, fitted, theory = rates["gd"]
    assert_close(theory, 1 / kappas, rtol=1e-9, what="GD 1 − ρ = 1/κ")
    assert_close(fitted, theory, rtol=0.05, what="GD fitted vs theory")  # measured ≤ 3.7%


def test_momentum_fitted_rates_match_theory(rates):
    for method in ("nag", "heavy_ball"):
        _, fitted, theory = rates[method]
        assert_close(fitted, theory, rtol=0.08, what=method)  # measured ≤ 5.6%


def test_d1_exponents_of_one_minus_rho_in_kappa(rates):
    s_gd = _slope(*rates["gd"][:2])  # measured −0.997
    s_nag = _slope(*rates["nag"][:2])  # measured −0.499
    s_hb = _slope(*rates["heavy_ball"][:2])  # measured −0.448
    assert -1.1 <= s_gd <= -0.9
    assert -0.6 <= s_nag <= -0.4
    assert -0.6 <= s_hb <= -0.4
    assert abs(s_nag - s_hb) <= 0.15  # D2
    assert s_nag - s_gd >= 0.25


@pytest.mark.parametrize(("method", "per_kappa"), [("gd", 40), ("nag", 40), ("heavy_ball", 40)])
def test_d3_reaches_1e_minus_5_within_budget(method, per_kappa):
    trace = run_kernel_dynamics(_kernel(64, 1, method=method, steps_per_kappa=per_kappa))
    kappa = trace.final("kappa")
    budget = math.ceil(per_kappa * (kappa if method == "gd" else math.sqrt(kappa)))
    steps, relative = trace.series("relative_residual")
    assert steps[-1] <= budget
    assert relative.min() < 1e-5


def test_step_zero_records_and_auto_tunings():
    trace = run_kernel_dynamics(_kernel(method="heavy_ball", steps=5))
    lo, hi, kappa = trace.final("lambda_min"), trace.final("lambda_max"), trace.final("kappa")
    assert_close(kappa, hi / lo, rtol=1e-6, atol=1e-12)
    assert_close(
        trace.final("eta"), 4 / (math.sqrt(hi) + math.sqrt(lo)) ** 2, rtol=1e-6, atol=1e-12
    )
    root = math.sqrt(kappa)
    assert_close(trace.final("beta"), ((root - 1) / (root + 1)) ** 2, rtol=1e-6, atol=1e-12)
    assert_close(trace.final("theory_rate"), (root - 1) / (root + 1), rtol=1e-6, atol=1e-12)
    assert trace.series("residual")[0].tolist() == [0, 1, 2, 3, 4, 5]
    for metric in ("kappa", "lambda_min", "lambda_max", "eta", "beta", "theory_rate"):
        assert trace.series(metric)[0].tolist() == [0]


def test_record_every_and_stop_at_tol():
    trace = run_kernel_dynamics(_kernel(method="nag", steps=10_000, record_every=7, tol=1e-8))
    assert trace.status == "stopped"
    steps, relative = trace.series("relative_residual")
    assert relative[-1] < 1e-8 <= relative[-2]
    assert steps[-1] == trace.steps and all(s % 7 == 0 for s in steps[:-1])


def test_deterministic_and_seeded():
    config = _kernel(method="nag", steps=200)
    again = KernelDynamicsConfig.model_validate(config.model_dump(mode="json"))
    assert again.content_hash() == config.content_hash()
    assert run_kernel_dynamics(config).records == run_kernel_dynamics(again).records
    other = run_kernel_dynamics(config.model_copy(update={"seed": 1}))
    assert other.final("kappa") != run_kernel_dynamics(config).final("kappa")


@pytest.mark.parametrize("method", METHODS)
def test_too_large_step_diverges_without_exception(method):
    lam_max = run_kernel_dynamics(_kernel(steps=1)).final("lambda_max")
    trace = run_kernel_dynamics(_kernel(method=method, lr=10 / lam_max, steps=100_000))
    assert trace.status == "diverged"
    assert trace.steps < 100_000 and "relative residual" in trace.reason


def test_near_pair_raises_kappa_and_sits_at_the_distance():
    plain = run_kernel_dynamics(_kernel(steps=1)).final("kappa")
    config = KernelDynamicsConfig(data=KernelDataConfig(n=16, d=4, near_pair=0.01), steps=1)
    x, _ = kd._inputs(config)
    assert_close(np.linalg.norm(x[-1] - x[0]), 0.01, rtol=1e-9, atol=1e-12)
    assert_close(np.linalg.norm(x, axis=1), np.ones(16), rtol=1e-6, atol=1e-12)
    assert run_kernel_dynamics(config).final("kappa") > 10 * plain


def test_empirical_gram_approaches_h_infinity():
    wide = run_kernel_dynamics(_kernel(gram="empirical", width=8192, steps=1))
    closed = run_kernel_dynamics(_kernel(steps=1))
    assert_close(wide.final("lambda_max"), closed.final("lambda_max"), rtol=0.05, atol=1e-12)
    assert_close(wide.final("lambda_min"), closed.final("lambda_min"), rtol=0.1, atol=1e-12)


def test_steps_per_kappa_budget_is_capped():
    trace = run_kernel_dynamics(_kernel(steps_per_kappa=1e9, max_steps=50, tol=0))
    assert trace.steps == 50 and "capped" in trace.reason


def test_float32_recursion_runs():
    trace = run_kernel_dynamics(_kernel(method="nag", steps=300, dtype="float32", tol=1e-5))
    assert trace.status == "stopped"


# ---------------------------------------------------------------------------------------------
# objectives


@pytest.mark.parametrize("eta", [0.01, 0.03, 0.1, 0.3])
def test_c1_constant_step_gd_on_abs_stalls_at_an_order_eta_floor(eta):
    trace = run_objective(ObjectiveConfig(function="abs", x0=1.01, lr=eta, steps=1000))
    floor = trace.final("floor")
    assert 0.25 * eta <= floor <= eta  # measured floor = η/2 (the midpoint of the 2-cycle)
    assert trace.status == "completed"


def test_c1_floor_is_linear_in_eta():
    etas = np.array([0.01, 0.03, 0.1, 0.3])
    floors = [
        run_objective(ObjectiveConfig(function="abs", x0=1.01, lr=eta, steps=2000)).final("floor")
        for eta in etas
    ]
    assert 0.9 <= np.polyfit(np.log(etas), np.log(floors), 1)[0] <= 1.1


def test_c1_gd_on_quadratic_converges():
    trace = run_objective(ObjectiveConfig(function="quadratic", lr=0.5, steps=100))
    assert trace.final("f") < 1e-12
    assert np.all(trace.series("curvature")[1] == 0.5)


@pytest.mark.parametrize("p", [1.2, 1.5, 1.8])
@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_c5_abs_power_two_cycle_curvature(p, eta):
    trace = run_objective(ObjectiveConfig(function="abs_power", p=p, lr=eta, steps=2000))
    _, xs = trace.series("x")
    assert_close(xs[-1], -xs[-2], rtol=1e-6, atol=1e-12)  # the cycle x → −x
    assert_close(trace.final("curvature"), 2 * (p - 1), rtol=0.01, atol=1e-12)


@pytest.mark.parametrize("eta", [2.5, 3.0, 4.0])
def test_c5_pseudo_huber_two_cycle_amplitude(eta):
    trace = run_objective(ObjectiveConfig(function="pseudo_huber", lr=eta, x0=3.0, steps=2000))
    assert_close(trace.final("abs_x"), math.sqrt(eta**2 / 4 - 1), rtol=0.01, atol=1e-12)


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("subgradient", {"schedule": "sqrt", "lr": 0.3}),
        ("rmsprop", {"alpha": 0.9, "lr": 0.01}),
        ("heavy_ball", {"momentum": 0.5, "lr": 0.01}),
        ("nesterov", {"momentum": 0.5, "lr": 0.01}),
    ],
)
def test_other_methods_approach_the_l1_scalar_minimum(method, extra):
    config = ObjectiveConfig(function="l1_scalar", b=1.0, lam=0.3, method=method, **extra)
    trace = run_objective(config.model_copy(update={"steps": 3000}))
    assert trace.final("f_gap") < 1e-3
    assert_close(trace.final("x"), 0.7, rtol=0, atol=0.05)
    assert math.isnan(trace.final("curvature"))


@pytest.mark.parametrize(("method", "threshold"), [("heavy_ball", 3.8), ("nesterov", 3.8 / 2.8)])
def test_momentum_on_a_quadratic_is_stable_exactly_below_its_threshold(method, threshold):
    """½x²: stable iff η < 2 + 2β (heavy ball), η < (2 + 2β)/(1 + 2β) (PyTorch Nesterov), β = 0.9."""
    for factor, stable in ((0.995, True), (1.005, False)):
        config = ObjectiveConfig(method=method, momentum=0.9, lr=factor * threshold, steps=4000)
        trace = run_objective(config)
        f0 = trace.series("f")[1][0]
        if stable:
            assert trace.status == "completed" and trace.final("f") < 1e-6 * f0, factor
        else:
            assert trace.status == "diverged" or trace.final("f") > 1e3 * f0, factor


def test_objective_vector_start_and_divergence():
    trace = run_objective(ObjectiveConfig(dim=3, x0=[1.0, -2.0, 0.5], lr=3.0, steps=100))
    assert trace.status == "diverged" and trace.steps < 100
    assert trace.series("abs_x")[1][0] == 2.0 and trace.series("x")[1][0] == 1.0


# ---------------------------------------------------------------------------------------------
# lasso


@pytest.mark.parametrize("method", ["ista", "fista"])
@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_proximal_methods_reach_the_exact_lasso_solution(method, fraction):
    trace = run_lasso(LassoConfig(method=method, lam_fraction=fraction, steps=800))
    assert trace.final("dist_to_exact") < 1e-6  # measured ~1e-14
    assert_close(trace.final("l1_norm"), trace.final("exact_l1_norm"), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", ["ista", "fista"])
@pytest.mark.parametrize("fraction", [1.0, 2.0])
def test_lambda_above_lambda_max_gives_exact_zeros(method, fraction):
    trace = run_lasso(LassoConfig(method=method, lam_fraction=fraction, steps=50))
    assert np.all(trace.series("zero_fraction")[1] == 1.0)
    assert np.all(trace.series("l1_norm_avg")[1] == 0.0)
    assert trace.final("exact_l1_norm") == 0.0


def test_c3_subgradient_leaves_no_exact_zeros_while_ista_prunes():
    sub = run_lasso(LassoConfig(method="subgradient", lam_fraction=0.3, steps=500))
    ista = run_lasso(LassoConfig(method="ista", lam_fraction=0.3, steps=500))
    assert sub.final("zero_fraction") < 0.01
    assert ista.final("zero_fraction") >= 0.5


def test_lasso_absolute_lambda_records_and_average():
    trace = run_lasso(LassoConfig(lam=0.05, steps=30, record_every=10))
    steps, l1 = trace.series("l1_norm")
    assert steps.tolist() == [0, 10, 20, 30] and l1[0] == 0.0
    full = run_lasso(LassoConfig(lam=0.05, steps=30))
    assert_close(
        trace.final("l1_norm_avg"), np.mean(full.series("l1_norm")[1]), rtol=1e-6, atol=1e-12
    )
    assert_close(
        trace.final("nonzeros"), 50 * (1 - trace.final("zero_fraction")), rtol=1e-6, atol=1e-12
    )


def test_lasso_diverges_with_a_large_step_and_is_deterministic():
    trace = run_lasso(LassoConfig(method="ista", lr=100.0, steps=200))
    assert trace.status == "diverged"
    config = LassoConfig(method="fista", steps=50, dtype="float32")
    assert run_lasso(config).records == run_lasso(config).records


# ---------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (KernelDynamicsConfig, {"data": {"n": 1}}, "data.n"),
        (KernelDynamicsConfig, {"data": {"d": 0}}, "data.d"),
        (KernelDynamicsConfig, {"data": {"near_pair": 3.0}}, "data.near_pair"),
        (KernelDynamicsConfig, {"steps": 0}, "steps"),
        (KernelDynamicsConfig, {"lr": -1.0}, "lr"),
        (KernelDynamicsConfig, {"lr": math.inf}, "lr"),
        (KernelDynamicsConfig, {"momentum": 1.0, "method": "nag"}, "momentum"),
        (KernelDynamicsConfig, {"method": "adam"}, "method"),
        (KernelDynamicsConfig, {"seed": -1}, "seed"),
        (KernelDynamicsConfig, {"dtype": "float16"}, "dtype"),
        (KernelDynamicsConfig, {"widht": 3}, "widht"),
        (KernelDynamicsConfig, {"steps": 10, "steps_per_kappa": 2.0}, "steps_per_kappa"),
        (KernelDynamicsConfig, {"gram": "empirical"}, "width"),
        (KernelDynamicsConfig, {"width": 64}, "width"),
        (KernelDynamicsConfig, {"momentum": 0.5}, "momentum"),
        (ObjectiveConfig, {"function": "abs_power"}, "p"),
        (ObjectiveConfig, {"function": "abs_power", "p": 1.0}, "p"),
        (ObjectiveConfig, {"function": "abs_power", "p": 2.5}, "p"),
        (ObjectiveConfig, {"lr": 0.0}, "lr"),
        (ObjectiveConfig, {"lr": math.nan}, "lr"),
        (ObjectiveConfig, {"steps": 0}, "steps"),
        (ObjectiveConfig, {"dim": 2, "x0": [1.0]}, "x0"),
        (ObjectiveConfig, {"momentum": 0.5}, "momentum"),
        (ObjectiveConfig, {"method": "heavy_ball", "momentum": 1.0}, "momentum"),
        (ObjectiveConfig, {"method": "rmsprop", "momentum": 0.5}, "momentum"),
        (ObjectiveConfig, {"schedule": "sqrt"}, "schedule"),
        (ObjectiveConfig, {"alpha": 1.0}, "alpha"),
        (LassoConfig, {"data": {"sparsity": 60}}, "sparsity"),
        (LassoConfig, {"data": {"n": 1}}, "data.n"),
        (LassoConfig, {"lam": 0.1, "lam_fraction": 0.2}, "lam_fraction"),
        (LassoConfig, {"lam": -0.1}, "lam"),
        (LassoConfig, {"lr": 0.0}, "lr"),
        (LassoConfig, {"method": "ista", "schedule": "sqrt"}, "schedule"),
    ],
)
def test_bad_values_raise_validation_errors_naming_the_field(cls, kwargs, field):
    with pytest.raises(ValidationError) as info:
        cls(**kwargs)
    named = [".".join(str(p) for p in e["loc"]) + " " + e["msg"] for e in info.value.errors()]
    assert any(field in text for text in named), named


def test_trial_kinds_registry_round_trips():
    for kind, (cls, run) in TRIAL_KINDS.items():
        config = cls()
        assert config.kind == kind and callable(run)
        dumped = config.model_dump(mode="json")
        assert cls.model_validate(dumped) == config
        assert len(config.content_hash()) == 64
        with pytest.raises(ValidationError):
            config.seed = 1  # frozen
    a, b = KernelDynamicsConfig(seed=1), KernelDynamicsConfig(seed=2)
    assert a.content_hash() != b.content_hash()
