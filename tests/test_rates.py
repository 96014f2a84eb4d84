import math

import numpy as np
import pytest

from _helpers import assert_close
from gdscope.stats.fits import loglog_fit, slope_fit
from gdscope.stats.rates import fit_linear_rate, steps_to_epsilon
from gdscope.stats.trends import exponent_over_seeds, slope_over_seeds, spearman
from gdscope.studies.verdict import band_status

# --- linear rates ----------------------------------------------------------------------------

GEOMETRIC = [  # (rho, r0, steps)
    (0.9, 1.0, np.arange(60)),
    (0.5, 3.0, np.arange(30)),
    (0.999, 2.5, np.arange(0, 5000, 10)),
    (0.97, 1e-3, np.array([0, 1, 2, 5, 9, 20, 40, 41, 80, 150])),
]


@pytest.mark.parametrize(("rho", "r0", "steps"), GEOMETRIC)
def test_exact_geometric_sequence_recovers_rate(rho, r0, steps):
    fit = fit_linear_rate(steps, r0 * rho ** steps.astype(float))
    assert fit.ok
    assert fit.start == 0
    assert_close(fit.rate, rho, rtol=1e-12)
    assert_close(math.exp(fit.intercept), r0, rtol=1e-9)
    assert fit.r2 > 1 - 1e-12


@pytest.mark.parametrize("rho", [0.8, 0.95, 0.99])
def test_noisy_geometric_sequence_within_tolerance(rho):
    rng = np.random.default_rng(1)
    steps = np.arange(400)
    residuals = rho**steps * np.exp(0.05 * rng.standard_normal(steps.size))
    fit = fit_linear_rate(steps, residuals)
    assert fit.ok
    assert abs(fit.slope - math.log(rho)) < 4 * fit.slope_stderr + 1e-12
    assert abs(fit.rate - rho) < 2e-3


TRANSIENTS = [  # (name, transient values, rho) -- the linear phase starts at len(transient)
    ("plateau", np.full(15, 1.0), 0.9),
    ("fast_then_slow", 0.5 ** np.arange(12), 0.97),
    ("rise_then_fall", np.array([1.0, 1.5, 2.0, 2.2, 2.0, 1.6, 1.3]), 0.8),
]


@pytest.mark.parametrize(("name", "transient", "rho"), TRANSIENTS)
def test_transient_linear_floor_window(name, transient, rho):
    n_lin, n_floor = 60, 20
    lin = transient[-1] * rho ** np.arange(1, n_lin + 1)
    floor_level = 1e-13 * transient[0]
    residuals = np.concatenate([transient, np.maximum(lin, floor_level), np.full(n_floor, 1e-14)])
    steps = np.arange(residuals.size)
    fit = fit_linear_rate(steps, residuals)
    first_linear = transient.size - 1  # the last transient point lies on the line too
    assert first_linear <= fit.start <= transient.size, name
    floor_at = int(np.argmax(residuals <= 1e-12 * residuals[0]))
    assert fit.stop == floor_at, name
    assert fit.ok, name
    assert_close(fit.rate, rho, rtol=1e-10, what=name)


def test_explicit_skip_and_floor():
    steps = np.arange(50)
    residuals = np.concatenate([np.ones(10), 0.9 ** np.arange(1, 41)])
    fit = fit_linear_rate(steps, residuals, skip=9, floor=0.9**30)
    assert (fit.start, fit.stop) == (9, 39)
    assert_close(fit.rate, 0.9, rtol=1e-12)


def test_divergence_and_zero_cut_the_series():
    steps = np.arange(40)
    residuals = 0.8 ** steps.astype(float)
    residuals[30] = np.nan
    assert fit_linear_rate(steps, residuals).stop == 30
    residuals[30], residuals[25] = 1.0, 0.0
    fit = fit_linear_rate(steps, residuals)
    assert fit.stop == 25
    assert_close(fit.rate, 0.8, rtol=1e-12)


DEGENERATE = {
    "constant": np.ones(20),
    "too_few": 0.5 ** np.arange(4.0),
    "nan_first": np.array([np.nan, 1.0, 0.5, 0.25, 0.125, 0.0625]),
    "zero_first": np.array([0.0, 1.0, 0.5, 0.25, 0.125, 0.0625]),
    "inf_early": np.array([1.0, 0.5, np.inf, 0.1, 0.1, 0.1]),
    "empty": np.array([]),
    "noise": np.exp(np.random.default_rng(0).standard_normal(50)),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_residuals_are_not_ok(name):
    residuals = DEGENERATE[name]
    fit = fit_linear_rate(np.arange(residuals.size), residuals)
    assert not fit.ok
    assert 0 <= fit.start <= fit.stop <= residuals.size


BAD_RATE_ARGS = [
    ({"steps": [0, 1, 2], "residuals": [1.0, 0.5]}, "same length"),
    ({"steps": [[0, 1]], "residuals": [[1.0, 0.5]]}, "steps must be 1-D"),
    ({"steps": [0, 2, 1], "residuals": [1.0, 0.5, 0.2]}, "steps must be strictly increasing"),
    ({"steps": [0, 1, 2], "residuals": [1.0, 0.5, 0.2], "skip": -1}, "skip"),
    ({"steps": [0, 1, 2], "residuals": [1.0, 0.5, 0.2], "skip": "first"}, "skip"),
    ({"steps": [0, 1, 2], "residuals": [1.0, 0.5, 0.2], "floor": -1.0}, "floor"),
    ({"steps": [0, 1, 2], "residuals": [1.0, 0.5, 0.2], "min_points": 2}, "min_points"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_RATE_ARGS)
def test_bad_rate_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_linear_rate(**kwargs)


STEPS_TO_EPS = [  # (values, eps, relative, expected)
    ([4.0, 2.0, 1.0, 0.5], 0.25, True, 2),
    ([4.0, 2.0, 1.0, 0.5], 0.5, False, 3),
    ([4.0, np.nan, 1.0, 0.5], 0.25, True, 2),
    ([4.0, 2.0, 1.0, 0.5], 1e-3, True, None),
    ([4.0, 4.0], 1.0, True, 0),
]


@pytest.mark.parametrize(("values", "eps", "relative", "expected"), STEPS_TO_EPS)
def test_steps_to_epsilon(values, eps, relative, expected):
    steps = [0, 10, 20, 30][: len(values)]
    result = steps_to_epsilon(steps, values, eps, relative=relative)
    assert result == (None if expected is None else steps[expected])


def test_steps_to_epsilon_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        steps_to_epsilon([0, 1], [1.0, 0.5], 0.0)
    with pytest.raises(ValueError, match=r"values\[0\]"):
        steps_to_epsilon([0, 1], [np.nan, 0.5], 0.1)


def test_steps_to_epsilon_is_linear_in_log_inverse_eps():
    steps = np.arange(2000)
    values = 0.99**steps
    eps = np.array([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    hits = [steps_to_epsilon(steps, values, e) for e in eps]
    assert None not in hits
    fit = slope_fit(np.log(1 / eps), np.array(hits, dtype=float))
    assert fit.r2 > 0.999
    assert_close(fit.slope, -1 / math.log(0.99), rtol=1e-2)


# --- power laws ------------------------------------------------------------------------------

POWER_LAWS = [(-0.5, 3.0), (1.0, 0.2), (0.0, 5.0), (-1.0, 1.0)]


@pytest.mark.parametrize(("exponent", "prefactor"), POWER_LAWS)
def test_loglog_fit_exact_power_law(exponent, prefactor):
    x = 2.0 ** np.arange(6, 13)
    fit = loglog_fit(x, prefactor * x**exponent)
    assert_close(fit.exponent, exponent, rtol=1e-12, atol=1e-12)
    assert_close(fit.prefactor, prefactor, rtol=1e-10)
    assert fit.n_points == 7
    assert_close(fit.decades, 6 * math.log10(2), rtol=1e-9)
    assert fit.meets()


def test_loglog_fit_drops_invalid_pairs_and_reports_support():
    fit = loglog_fit([1, 2, 0, 4, 8, np.nan], [1, 0.5, 3, -1, 0.125, 1])
    assert fit.n_points == 3
    assert_close(fit.exponent, -1.0, rtol=1e-12)
    assert not fit.meets()
    empty = loglog_fit([1.0], [1.0])
    assert math.isnan(empty.exponent)
    assert not empty.meets()


def test_slope_fit_linear_and_constant():
    fit = slope_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert (fit.slope, fit.intercept, fit.r2) == (2.0, 1.0, 1.0)
    flat = slope_fit([0, 1, 2], [4, 4, 4])
    assert flat.slope == 0.0
    assert math.isnan(flat.r2)
    assert math.isnan(slope_fit([1, 1, 1], [0, 1, 2]).slope)


@pytest.mark.parametrize("exponent", [-0.5, -1.0, 0.3])
def test_exponent_over_seeds_ci_covers_truth(exponent):
    rng = np.random.default_rng(3)
    x = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=float)
    Y = 2.0 * x**exponent * np.exp(0.1 * rng.standard_normal((8, x.size)))
    result = exponent_over_seeds(x, Y)
    assert result.n_seeds == 8
    assert len(result.per_seed) == 8
    assert result.lo <= exponent <= result.hi
    assert result.lo <= result.median <= result.hi
    assert result.hi - result.lo < 0.3
    assert result == exponent_over_seeds(x, Y)  # deterministic for a fixed seed


def test_over_seeds_exact_and_undefined_rows():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    Y = np.stack([2 * x + 1, 2 * x - 3, np.full(4, np.nan)])
    result = slope_over_seeds(x, Y)
    assert (result.median, result.lo, result.hi, result.n_seeds) == (2.0, 2.0, 2.0, 2)
    assert math.isnan(result.per_seed[2])
    none = exponent_over_seeds(x, np.full((2, 4), -1.0))
    assert none.n_seeds == 0
    assert math.isnan(none.median)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": [1, 2], "Y": [1, 2]}, "Y must be 2-D"),
        ({"x": [1, 2, 3], "Y": [[1, 2]]}, "x must have shape"),
        ({"x": [1, 2], "Y": [[1, 2]], "ci": 1.5}, "ci"),
        ({"x": [1, 2], "Y": [[1, 2]], "n_boot": 0}, "n_boot"),
    ],
)
def test_over_seeds_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        exponent_over_seeds(**kwargs)


# --- monotone trends and verdicts ------------------------------------------------------------

MONOTONE = [  # (x, y, allowed, rho, inversions, ok_inc, ok_dec)
    ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 0, 1.0, 0, True, False),
    ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], 0, -1.0, 0, False, True),
    ([5, 3, 1, 4, 2], [50, 30, 10, 40, 20], 0, 1.0, 0, True, False),
    ([1, 2, 3, 4, 5], [1, 3, 2, 4, 5], 0, 0.9, 1, False, False),
    ([1, 2, 3, 4, 5], [1, 3, 2, 4, 5], 1, 0.9, 1, True, False),
    ([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6], 1, None, 2, False, False),
    ([1, 2, 3, 4], [0.0, 1.0, 1.0, 1.0], 0, None, 0, True, False),
    ([1, 1, 2, 2], [2, 1, 4, 3], 0, None, 0, True, False),
]


@pytest.mark.parametrize(("x", "y", "allowed", "rho", "inversions", "inc", "dec"), MONOTONE)
def test_spearman_hand_cases(x, y, allowed, rho, inversions, inc, dec):
    fit = spearman(x, y, allowed_inversions=allowed)
    if rho is not None:
        assert_close(fit.rho, rho, rtol=1e-12)
    assert fit.inversions == inversions
    assert (fit.ok_increasing, fit.ok_decreasing) == (inc, dec)
    assert fit.n == len(x)


def test_spearman_degenerate_inputs_do_not_warn_or_crash():
    flat = spearman([1, 2, 3], [7, 7, 7])
    assert math.isnan(flat.rho)
    assert flat.ok_increasing and flat.ok_decreasing
    one = spearman([1.0], [2.0])
    assert math.isnan(one.rho) and one.n == 1
    with_nan = spearman([1, 2, np.nan, 4], [1, 2, 3, 4])
    assert with_nan.n == 3 and with_nan.rho == 1.0
    with pytest.raises(ValueError, match="allowed_inversions"):
        spearman([1, 2], [1, 2], allowed_inversions=-1)


VERDICTS = [
    (-1.05, -0.95, (-1.1, -0.9), "PASS"),
    (-0.6, -0.5, (-1.1, -0.9), "FAIL"),
    (-1.3, -1.2, (-1.1, -0.9), "FAIL"),
    (-1.0, -0.8, (-1.1, -0.9), "INCONCLUSIVE"),
    (-0.5, -0.4, (-math.inf, -0.3), "PASS"),
    (-0.35, -0.2, (-math.inf, -0.3), "INCONCLUSIVE"),
    (math.nan, math.nan, (0.0, 1.0), "INCONCLUSIVE"),
]


@pytest.mark.parametrize(("lo", "hi", "band", "expected"), VERDICTS)
def test_band_status(lo, hi, band, expected):
    assert band_status(lo, hi, band)[0] == expected


def test_band_status_rejects_bad_interval():
    with pytest.raises(ValueError, match="band"):
        band_status(0.0, 1.0, (1.0, 0.0))
    with pytest.raises(ValueError, match="lo must be"):
        band_status(1.0, 0.0, (0.0, 2.0))


@pytest.mark.parametrize("seed", range(5))
def test_every_window_start_at_once_equals_one_fit_per_window(seed):
    """The candidate windows' 1 − R², from suffix sums, equal a least-squares fit of each window."""
    from gdscope.stats.fits import _linfit
    from gdscope.stats.rates import _unexplained_from

    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 4, size=400)).astype(float)
    log_r = -0.01 * steps + np.where(steps < 150, 0.5 * np.sin(steps / 9), 0.0)
    log_r += rng.normal(scale=10.0 ** rng.uniform(-6, -1), size=steps.size)
    starts = np.arange(0, 200, 7)
    fast = _unexplained_from(steps, log_r, starts)
    slow = [1.0 - _linfit(steps[k:], log_r[k:]).r2 for k in starts]
    assert_close(fast, slow, rtol=1e-8, atol=1e-13)
    assert _unexplained_from(steps, np.full(steps.size, 0.3), starts).tolist() == [np.inf] * 29


def test_numpy_scalars_are_numbers_and_bools_are_not():
    """Sweeps hand numpy scalars over; they were refused as "not a number"."""
    assert steps_to_epsilon([0, 1, 2], [1.0, 0.6, 0.4], np.float32(0.5)) == 2
    assert spearman([1, 2, 3], [3, 1, 2], allowed_inversions=np.int64(1)).inversions == 1
    x = [1.0, 10.0, 100.0]
    fit = exponent_over_seeds(x, [[1.0, 0.1, 0.01]] * 2, n_boot=np.int64(10), ci=np.float32(0.9))
    assert abs(fit.median + 1) < 1e-12
    with pytest.raises(ValueError, match="n_boot must be a positive integer, got True"):
        exponent_over_seeds(x, [[1.0, 0.1, 0.01]], n_boot=True)


def test_a_ci_with_an_undefined_end_is_undefined_not_straddling():
    for lo, hi in ((math.nan, 1.0), (0.0, math.nan), (math.nan, math.nan)):
        assert band_status(lo, hi, (-1.0, 1.0)) == ("INCONCLUSIVE", "undefined vs")
