"""Tests of gdscope.models: shapes, seeding, parameterization scales, lr multipliers."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers import assert_close
from _parameterizations import BETA, PARAMS, SQ2, _sphere
from gdscope.models import (
    cnn,
    get_parameterization,
    lr_multipliers,
    mlp,
    resnet,
    two_layer,
)

# ---------------------------------------------------------------- model cases as data
# name -> (factory(parameterization, seed, dtype), input shape, output shape)
MODELS = {
    "mlp": (
        lambda p, seed, dtype: mlp(
            5, 8, depth=3, out_dim=2, parameterization=p, seed=seed, dtype=dtype
        ),
        (4, 5),
        (4, 2),
    ),
    "mlp_depth1": (
        lambda p, seed, dtype: mlp(5, 8, depth=1, parameterization=p, seed=seed, dtype=dtype),
        (4, 5),
        (4, 1),
    ),
    "mlp_residual_tanh": (
        lambda p, seed, dtype: mlp(
            5,
            8,
            depth=4,
            activation="tanh",
            residual=True,
            parameterization=p,
            seed=seed,
            dtype=dtype,
        ),
        (4, 5),
        (4, 1),
    ),
    "cnn": (
        lambda p, seed, dtype: cnn(3, 6, 4, 10, parameterization=p, seed=seed, dtype=dtype),
        (2, 3, 6, 6),
        (2, 10),
    ),
    "resnet": (
        lambda p, seed, dtype: resnet(
            3, 6, 4, 10, depth=2, parameterization=p, seed=seed, dtype=dtype
        ),
        (2, 3, 6, 6),
        (2, 10),
    ),
    "cnn_flatten": (
        lambda p, seed, dtype: cnn(
            3, 6, 4, 10, parameterization=p, readout="flatten", seed=seed, dtype=dtype
        ),
        (2, 3, 6, 6),
        (2, 10),
    ),
    "resnet_flatten": (
        lambda p, seed, dtype: resnet(
            3, 6, 4, 10, depth=2, parameterization=p, readout="flatten", seed=seed, dtype=dtype
        ),
        (2, 3, 6, 6),
        (2, 10),
    ),
    "resnet_bn_noskip": (
        lambda p, seed, dtype: resnet(
            3,
            6,
            4,
            10,
            depth=2,
            skip=False,
            batchnorm=True,
            parameterization=p,
            seed=seed,
            dtype=dtype,
        ),
        (2, 3, 6, 6),
        (2, 10),
    ),
    "two_layer": (
        lambda p, seed, dtype: two_layer(5, 8, seed=seed, dtype=dtype),
        (4, 5),
        (4, 1),
    ),
}
CASES = [
    pytest.param(name, p, id=f"{name}-{p}")
    for name in MODELS
    for p in (["-"] if name == "two_layer" else PARAMS)
]


def _build(name: str, p: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    factory, x_shape, out_shape = MODELS[name]
    return factory(p, seed, dtype), x_shape, out_shape


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize(("name", "p"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_and_dtype(name, p, dtype):
    model, x_shape, out_shape = _build(name, p, dtype=dtype)
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    y = model(x)
    assert y.shape == out_shape
    assert y.dtype == dtype
    assert all(t.dtype == dtype for t in _tensors(model).values())
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "p"), CASES)
def test_same_seed_bitwise_identical_different_seed_differs(name, p):
    a, b, c = (_build(name, p, seed=s)[0] for s in (3, 3, 4))
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys() == tc.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert any(not torch.equal(ta[k], tc[k]) for k in ta)


@pytest.mark.parametrize(("name", "p"), CASES)
def test_float32_parameters_are_rounded_float64_ones(name, p):
    t32 = _tensors(_build(name, p, dtype=torch.float32)[0])
    t64 = _tensors(_build(name, p, dtype=torch.float64)[0])
    assert all(torch.equal(t32[k], t64[k].to(torch.float32)) for k in t32)


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mlp(4, 16, depth=3, parameterization="ntk")
    two_layer(4, 16)
    resnet(1, 4, 2, 2)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- parameterization tables
# p -> role -> (init_std, multiplier, lr_weight, lr_bias, bias_std, bias_multiplier)
# for fan_in n = 100, r = 4, base_width 64, ReLU gain √2, init_scale 1.
LAYER_TABLE = {
    "standard": {
        "input": (SQ2 / 10, 1, 1, 1, 0, 1),
        "hidden": (SQ2 / 10, 1, 1, 1, 0, 1),
        "output": (1 / 10, 1, 1, 1, 0, 1),
    },
    "ntk": {  # the gain in the forward multiplier (revision 2 of the ntk convention)
        "input": (1, SQ2 / 10, 1, 1, 1, BETA),
        "hidden": (1, SQ2 / 10, 1, 1, 1, BETA),
        "output": (1, 1 / 10, 1, 1, 1, BETA),
    },
    "mup": {
        "input": (SQ2 / 10, 1, 4, 4, 0, 1),
        "hidden": (SQ2 / 10, 1, 1, 4, 0, 1),
        "output": (2 / 10, 1 / 4, 4, 1, 0, 1),
    },
    "meanfield": {
        "input": (SQ2, 1 / 10, 256, 256, 0, 1),
        "hidden": (SQ2, 1 / 10, 256, 256, 0, 1),
        "output": (1, 1 / 100, 256, 256, 0, 1),
    },
}


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("role", ["input", "hidden", "output"])
def test_layer_spec_matches_table(p, role):
    spec = get_parameterization(p).layer(role, 100, 4.0, activation_gain=SQ2, base_width=64)
    got = (
        spec.init_std,
        spec.multiplier,
        spec.lr_weight,
        spec.lr_bias,
        spec.bias_std,
        spec.bias_multiplier,
    )
    assert_close(
        torch.tensor(got, dtype=torch.float64),
        torch.tensor(LAYER_TABLE[p][role], dtype=torch.float64),
        rtol=1e-12,
        what=f"{p}/{role}",
    )


def _lr_table(p: str, width: int) -> list[float]:
    """Hand-written lr multipliers of mlp(depth=3): [W0, b0, W1, b1, W2, b2]."""
    r = width / 64
    return {
        "standard": [1, 1, 1, 1, 1, 1],
        "ntk": [1, 1, 1, 1, 1, 1],
        "mup": [r, r, 1, r, r, 1],
        "meanfield": [width] * 6,
    }[p]


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("width", [64, 256])
def test_lr_multipliers_of_mlp(p, width):
    got = lr_multipliers(mlp(7, width, depth=3, parameterization=p))
    names = [f"layers.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
    assert got == dict(zip(names, map(float, _lr_table(p, width)), strict=True))


def test_lr_multipliers_without_bias_and_of_two_layer():
    got = lr_multipliers(mlp(7, 128, depth=2, bias=False, parameterization="mup"))
    assert got == {"layers.0.weight": 2.0, "layers.1.weight": 2.0}
    assert lr_multipliers(two_layer(3, 8)) == {"weight": 1.0}
    assert lr_multipliers(two_layer(3, 8, train_outer=True)) == {"weight": 1.0, "outer": 1.0}


def test_mup_equals_standard_at_base_width():
    x = _sphere(6, 10, dtype=torch.float32)
    sp, mu = (
        mlp(10, 64, depth=3, parameterization="standard"),
        mlp(10, 64, depth=3, parameterization="mup"),
    )
    assert all(torch.equal(a, b) for a, b in zip(sp.parameters(), mu.parameters(), strict=True))
    assert torch.equal(sp(x), mu(x))


@pytest.mark.parametrize("p", PARAMS)
def test_stored_weights_have_the_declared_std(p):
    model = mlp(32, 512, depth=3, parameterization=p, dtype=torch.float64)
    for layer in model.layers:
        w = layer.weight
        # the sample std of n i.i.d. normals has relative s.e. 1/sqrt(2n): allow 5 s.e.
        rtol = 5 / math.sqrt(2 * w.numel())
        assert_close(w.std(), torch.tensor(layer.spec.init_std), rtol=rtol, what=f"{p} std")
        assert layer.multiplier == layer.spec.multiplier


# ---------------------------------------------------------------- output scales at init
D = 16
SEEDS = 400  # per-seed estimates are i.i.d.; 400 of them bring the s.e. to 3-5 percent


def _assert_mean_matches(per_seed: torch.Tensor, expected: float, what: str) -> None:
    """Per-seed estimates are i.i.d.; require |mean - expected| <= 4 standard errors.

    Four s.e. makes a false failure a < 1e-4 event under the CLT (the seeds are fixed, so the
    test is deterministic; this is the justification of the tolerance). Requiring the s.e. to
    be below 6% of the expected value keeps the check sharp: a wrong width scaling is off by
    a factor r = 32 (or 4 at width 256), i.e. hundreds of s.e.
    """
    mean = per_seed.mean().item()
    se = per_seed.std().item() / math.sqrt(per_seed.numel())
    assert se < 0.06 * expected, f"{what}: s.e. {se:.3g} too large vs expected {expected:.3g}"
    assert abs(mean - expected) <= 4 * se, (
        f"{what}: mean {mean:.4g} vs closed form {expected:.4g} (s.e. {se:.2g})"
    )


def _output_variance_depth2(p: str, width: int) -> float:
    """E[f(x)^2] at init of mlp(depth=2, relu) for |x| = 1, from the variance recursion.

    The first-layer preactivation has variance q = 2/d (+ β² for ntk); E[relu(h)²] = q/2.
    """
    r = width / 64
    return {
        "standard": 1 / D,
        "ntk": 1 / D + 1.5 * BETA**2,
        "mup": 1 / (D * r),
        "meanfield": 1 / (D * width),
    }[p]


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("width", [64, 2048])
def test_output_variance_at_init_matches_closed_form(p, width):
    x = _sphere(64, D)
    per_seed = torch.stack(
        [
            mlp(D, width, depth=2, parameterization=p, seed=s, dtype=torch.float64)(x).pow(2).mean()
            for s in range(SEEDS)
        ]
    )
    _assert_mean_matches(per_seed, _output_variance_depth2(p, width), f"{p} width {width}")


@pytest.mark.parametrize("p", ["standard", "ntk"])
def test_output_variance_of_deeper_net_is_width_independent(p):
    # depth 3 relu: standard keeps q = 2/d at every layer, ntk adds β² per layer.
    expected = 1 / D if p == "standard" else (2 / D + 2 * BETA**2) / 2 + BETA**2
    x = _sphere(64, D)
    for width in (64, 256):
        per_seed = torch.stack(
            [
                mlp(D, width, depth=3, parameterization=p, seed=s, dtype=torch.float64)(x)
                .pow(2)
                .mean()
                for s in range(SEEDS)
            ]
        )
        _assert_mean_matches(per_seed, expected, f"{p} depth 3 width {width}")


def test_ntk_hidden_preactivation_variance_matches_closed_form():
    # q1 = g² |x|²/d + β² = 2/d + β²;  q2 = g² E[relu(h1)²] + β² = q1 + β².
    q1 = 2 / D + BETA**2
    q2 = q1 + BETA**2
    x = _sphere(8, D)
    est1, est2 = [], []
    for seed in range(16):
        model = mlp(D, 1024, depth=3, parameterization="ntk", seed=seed, dtype=torch.float64)
        h1 = model.layers[0](x)
        h2 = model.layers[1](torch.relu(h1))
        est1.append(h1.pow(2).mean())
        est2.append(h2.pow(2).mean())
    _assert_mean_matches(torch.stack(est1), q1, "ntk q1")
    _assert_mean_matches(torch.stack(est2), q2, "ntk q2")
