import math

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from cases import NET_CASES, RELU_NETS
from gdscope.functional import apply, clone_params, flatten, params_of
from gdscope.probes._reference import dense_jacobian, dense_ntk
from gdscope.probes.geometry import (
    Sandwich,
    activation_flips,
    activation_pattern,
    distance_from_init,
    gradient_norm,
    loss_and_grad_norm,
    per_neuron_displacement,
    pl_ratio,
    square_loss_sandwich,
)
from gdscope.probes.linearization import linearization_gap, linearized_prediction

F64 = torch.float64

GEOMETRY_NETS = [*RELU_NETS, "mlp_tanh"]


def _perturbed(params, gen, scale):
    return {
        k: v + scale * torch.randn(v.shape, generator=gen, dtype=F64) for k, v in params.items()
    }


# --- gradient norm, PL ratio, sandwich -------------------------------------------------------


@pytest.mark.parametrize("net_case", GEOMETRY_NETS, indirect=True)
def test_gradient_norm_equals_dense_jacobian_formula(net_case):
    model, (x, y) = net_case.net, net_case.batch
    r = (model(x) - y).reshape(-1).detach()
    expected = (dense_jacobian(model, x).T @ r / x.shape[0]).norm()
    params = params_of(model)
    assert_close(gradient_norm(model, params, gs.losses.mse, (x, y)), expected, what="‖∇L‖")
    loss, gnorm = loss_and_grad_norm(model, params, gs.losses.mse, (x, y))
    assert_close(gnorm, expected, what="loss_and_grad_norm ‖∇L‖")
    assert_close(loss, 0.5 * r.pow(2).sum() / x.shape[0], what="loss")


PL_CASES = [  # (loss, grad_norm_sq, loss_star, expected)
    (2.0, 8.0, 0.0, 2.0),
    (3.0, 8.0, 1.0, 2.0),
    (0.5, 0.0, 0.0, 0.0),
    (1.0, 4.0, 1.0, math.nan),
    (0.5, 4.0, 1.0, math.nan),
    (math.nan, 4.0, 0.0, math.nan),
]


@pytest.mark.parametrize(("loss", "g2", "loss_star", "expected"), PL_CASES)
def test_pl_ratio_hand_cases(loss, g2, loss_star, expected):
    value = pl_ratio(loss, g2, loss_star)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


SANDWICH_CASES = [  # (loss, g2, n, lam_min, lam_max, lower, upper, holds)
    (1.0, 2.0, 4, 1.0, 4.0, 1.0, 4.0, True),
    (5.0, 2.0, 4, 1.0, 4.0, 1.0, 4.0, False),
    (0.5, 2.0, 4, 1.0, 4.0, 1.0, 4.0, False),
    (1.0, 2.0, 4, 0.0, 4.0, 1.0, math.inf, True),
]


@pytest.mark.parametrize(
    ("loss", "g2", "n", "lam_min", "lam_max", "lower", "upper", "holds"), SANDWICH_CASES
)
def test_sandwich_hand_cases(loss, g2, n, lam_min, lam_max, lower, upper, holds):
    s = square_loss_sandwich(loss, g2, n, lam_min, lam_max)
    assert (s.lower, s.upper, s.loss) == (lower, upper, loss)
    assert s.holds(1e-4) is holds


def test_sandwich_slack_and_bad_arguments():
    assert Sandwich(lower=1.00005, upper=2.0, loss=1.0).holds(1e-4)
    assert not Sandwich(lower=1.00005, upper=2.0, loss=1.0).holds(0.0)
    with pytest.raises(ValueError, match="n must be"):
        square_loss_sandwich(1.0, 1.0, 0, 1.0, 2.0)
    with pytest.raises(ValueError, match="lambda_max"):
        square_loss_sandwich(1.0, 1.0, 3, 0.0, 0.0)


@pytest.mark.parametrize("net_case", GEOMETRY_NETS, indirect=True)
def test_sandwich_against_dense_ntk(net_case):
    model, (x, y), gen = net_case.net, net_case.batch, net_case.gen
    n = x.shape[0]
    u = model(x).detach()
    evals, evecs = torch.linalg.eigh(dense_ntk(model, x))
    lam_min, lam_max = float(evals[0]), float(evals[-1])
    assert lam_min > 0
    params = params_of(model)

    def sandwich(targets):
        loss, gnorm = loss_and_grad_norm(model, params, gs.losses.mse, (x, targets))
        return square_loss_sandwich(loss, gnorm**2, n, lam_min, lam_max)

    assert sandwich(y).holds(slack=0.0)
    for trial in range(3):
        assert sandwich(u + torch.randn(u.shape, generator=gen, dtype=F64)).holds(0.0), trial
    # a residual along an extreme eigenvector makes that side exact
    tight_lower = sandwich(u - 0.7 * evecs[:, -1].reshape(u.shape))
    assert_close(tight_lower.lower, tight_lower.loss, what="lower bound on v_max")
    tight_upper = sandwich(u - 0.7 * evecs[:, 0].reshape(u.shape))
    assert_close(tight_upper.upper, tight_upper.loss, rtol=1e-9, what="upper bound on v_min")


# --- distance from init ----------------------------------------------------------------------


def test_distance_from_init_spectral_hand_case():
    init = {"w": torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=F64), "b": torch.ones(2, dtype=F64)}
    params = {"w": init["w"] + torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=F64), "b": init["b"]}
    plain = distance_from_init(params, init)
    out = distance_from_init(params, init, spectral=True)
    assert {k: out[k] for k in plain} == plain
    assert set(out) - set(plain) == {"spec_dist_from_init/w", "rel_spec_dist_from_init/w"}
    assert_close(out["spec_dist_from_init/w"], 2.0, rtol=1e-14, atol=1e-12)
    assert_close(out["rel_spec_dist_from_init/w"], 2.0 / 3.0, rtol=1e-14, atol=1e-12)
    assert_close(plain["dist_from_init"], 2.0, rtol=1e-14, atol=1e-12)
    assert_close(plain["rel_dist_from_init"], 2.0 / math.sqrt(12.0), rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("net_case", ["mlp_relu", "two_layer"], indirect=True)
def test_spectral_distance_against_singular_values(net_case):
    model, gen = net_case.net, net_case.gen
    init = clone_params(params_of(model))
    params = _perturbed(init, gen, 0.3)
    out = distance_from_init(params, init, spectral=True)
    for key, w0 in init.items():
        if w0.ndim != 2:
            assert f"spec_dist_from_init/{key}" not in out
            continue
        expected = torch.linalg.svdvals(params[key] - w0)[0]
        assert_close(out[f"spec_dist_from_init/{key}"], expected, what=key)
        ratio = expected / torch.linalg.svdvals(w0)[0]
        assert_close(out[f"rel_spec_dist_from_init/{key}"], ratio, what=key)


def test_per_neuron_displacement_hand_case():
    init = {"weight": torch.zeros(3, 2, dtype=F64)}
    params = {"weight": torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -6.0]], dtype=F64)}
    assert per_neuron_displacement(params, init, "weight") == 6.0
    conv = {"weight": torch.zeros(2, 1, 2, 2, dtype=F64)}
    moved = {"weight": torch.zeros(2, 1, 2, 2, dtype=F64)}
    moved["weight"][1] = 1.0
    assert per_neuron_displacement(moved, conv, "weight") == 2.0
    with pytest.raises(KeyError, match="bias"):
        per_neuron_displacement(params, init, "bias")


# --- activation patterns ---------------------------------------------------------------------


def _reference_pattern(model, x):
    """Pre-activation signs by re-running the forward pass by hand."""
    if hasattr(model, "outer"):  # two_layer: σ(x Wᵀ)
        return [x @ model.weight.T > 0]
    signs, h = [], x
    for index, layer in enumerate(model.layers[:-1]):
        if model.residual and index > 0:  # h + β·L σ(h): the ReLU sees the stream h
            signs.append(h > 0)
            h = h + model.branch_scale * layer(h.clamp_min(0))
        else:
            z = layer(h)
            signs.append(z > 0)
            h = z.clamp_min(0)
    return signs


@pytest.mark.parametrize("net_case", RELU_NETS, indirect=True)
def test_activation_pattern_matches_hand_forward(net_case):
    model, x = net_case.net, net_case.batch[0]
    pattern = activation_pattern(model, x)
    expected = _reference_pattern(model, x)
    assert len(pattern) == len(expected)
    for got, want in zip(pattern, expected, strict=True):
        assert got.dtype == torch.bool
        assert torch.equal(got, want)


@pytest.mark.parametrize("net_case", RELU_NETS, indirect=True)
def test_activation_pattern_at_given_params(net_case):
    model, x, gen = net_case.net, net_case.batch[0], net_case.gen
    moved = _perturbed(params_of(model), gen, 0.5)
    pattern = activation_pattern(model, x, params=moved)
    with torch.no_grad():
        for key, p in model.named_parameters():
            p.copy_(moved[key])
    for got, want in zip(pattern, _reference_pattern(model, x), strict=True):
        assert torch.equal(got, want)


def test_activation_flips_hand_case():
    case = NET_CASES["two_layer"](16)
    model, x = case.net, case.batch[0]
    init_pattern = activation_pattern(model, x)
    assert activation_flips(model, x, init_pattern) == 0.0
    params = clone_params(params_of(model))
    params["weight"][2] = -params["weight"][2]  # unit 2 flips on every example
    params["weight"][5] = -params["weight"][5]
    width = params["weight"].shape[0]  # one row per hidden unit
    assert activation_flips(model, x, init_pattern, params=params) == 2 / width
    with pytest.raises(ValueError, match="same inputs"):
        activation_flips(model, x[:3], init_pattern)


def test_activation_pattern_needs_relu_modules():
    case = NET_CASES["mlp_tanh"](0)
    model, x = case.net, case.batch[0]
    with pytest.raises(ValueError, match="no ReLU-type module"):
        activation_pattern(model, x)


# --- linearization ---------------------------------------------------------------------------


@pytest.mark.parametrize("net_case", GEOMETRY_NETS, indirect=True)
def test_linearized_prediction_against_dense_jacobian(net_case):
    model, x, gen = net_case.net, net_case.batch[0], net_case.gen
    params0 = params_of(model)
    params_t = _perturbed(params0, gen, 0.2)
    u0 = model(x).detach()
    delta = flatten(params_t) - flatten(params0)
    expected = u0 + (dense_jacobian(model, x) @ delta).reshape(u0.shape)
    assert_close(linearized_prediction(model, params0, params_t, x), expected, what="f_lin")
    gap = (apply(model, params_t, x) - expected).detach().pow(2).mean().sqrt()
    # a ReLU net is piecewise linear in its weights: without sign flips the gap is round-off
    assert_close(linearization_gap(model, params0, params_t, x), gap, atol=1e-14, what="gap")


def test_linearization_gap_zero_for_linear_model_and_quadratic_for_smooth():
    linear = gs.models.mlp(3, 4, depth=1, seed=0, dtype=F64)
    gen = torch.Generator().manual_seed(18)
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    p0 = params_of(linear)
    assert linearization_gap(linear, p0, _perturbed(p0, gen, 1.0), x) < 1e-14
    case = NET_CASES["mlp_tanh"](19)
    model, x, gen = case.net, case.batch[0], case.gen
    p0 = params_of(model)
    direction = _perturbed({k: torch.zeros_like(v) for k, v in p0.items()}, gen, 1.0)
    gaps = [
        linearization_gap(model, p0, {k: p0[k] + h * direction[k] for k in p0}, x)
        for h in (1e-2, 5e-3)
    ]
    assert_close(gaps[0] / gaps[1], 4.0, rtol=0.05, atol=1e-12)


def test_linearized_prediction_rejects_missing_keys():
    case = NET_CASES["mlp_relu"](0)
    model, x = case.net, case.batch[0]
    p0 = params_of(model)
    with pytest.raises(ValueError, match="params_t lacks"):
        linearized_prediction(model, p0, {}, x)
