"""Model structure: two_layer, residual blocks, readouts, layers, validation, output wrappers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _helpers import assert_close
from _parameterizations import BETA, PARAMS, SQ2, _sphere
from gdscope.models import (
    PARAMETERIZATIONS,
    LazyOutput,
    OutputActivation,
    ScaledConv2d,
    ScaledLinear,
    cnn,
    get_parameterization,
    lr_multipliers,
    mlp,
    resnet,
    two_layer,
    wrap_output,
)


# ---------------------------------------------------------------- two_layer (Du et al.)
def test_two_layer_outer_frozen_by_default_and_trainable_on_request():
    frozen = two_layer(4, 32)
    assert [n for n, _ in frozen.named_parameters()] == ["weight"]
    assert [n for n, _ in frozen.named_buffers()] == ["outer"]
    assert frozen.weight.shape == (32, 4) and frozen.outer.shape == (32,)
    assert set(frozen.outer.tolist()) == {-1.0, 1.0}
    trained = two_layer(4, 32, train_outer=True)
    assert [n for n, _ in trained.named_parameters()] == ["weight", "outer"]
    assert list(trained.named_buffers()) == []
    assert torch.equal(trained.outer, frozen.outer)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_two_layer_equals_formula(activation):
    net = two_layer(6, 50, seed=2, activation=activation, init_scale=0.7, dtype=torch.float64)
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    W, a, X = net.weight.detach().numpy(), net.outer.numpy(), x.numpy()
    sigma = (lambda z: np.maximum(z, 0.0)) if activation == "relu" else np.tanh
    expected = sigma(X @ W.T) @ a / np.sqrt(50)
    assert_close(net(x), torch.from_numpy(expected[:, None]), rtol=1e-12, what="two_layer")


def test_two_layer_init_scale_scales_inner_weights():
    a, b = two_layer(3, 64, init_scale=1.0), two_layer(3, 64, init_scale=0.25)
    assert_close(b.weight, 0.25 * a.weight, rtol=1e-6, what="init_scale")


# ---------------------------------------------------------------- identical-unit init
def _hidden_states(model, x):
    h, states = x, []
    for layer in model.layers[:-1]:
        h = model.activation(layer(h))
        states.append(h)
    return states


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("depth", [2, 4])
def test_identical_init_units_equal_and_stay_equal(p, depth):
    model = mlp(
        5, 16, depth=depth, parameterization=p, init="identical", seed=1, dtype=torch.float64
    )
    *body, readout = model.layers
    for layer in body:
        assert torch.equal(layer.weight, layer.weight[:1].expand_as(layer.weight))
        assert torch.equal(layer.bias, layer.bias[:1].expand_as(layer.bias))
    assert torch.equal(readout.weight, readout.weight[:, :1].expand_as(readout.weight))
    assert body[0].weight.unique().numel() > 1  # input rows are random vectors, not constants
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randn(12, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        for h in _hidden_states(model, x):
            assert_close(h, h[:, :1].expand_as(h), rtol=1e-12, atol=1e-14, what="units")
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


# ---------------------------------------------------------------- residual structure
def test_mlp_residual_changes_function_and_matches_hand_forward():
    kwargs = {"d_in": 5, "width": 8, "depth": 4, "seed": 3, "dtype": torch.float64}
    plain, res = mlp(**kwargs), mlp(**kwargs, residual=True)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), res.parameters(), strict=True))
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ((plain(x) - res(x)).abs() > 1e-8 + 1e-5 * res(x).abs()).any()
    assert res.branch_scale == 1 / math.sqrt(2)  # 1/sqrt(number of residual blocks)
    L0, L1, L2, L3 = res.layers
    h = torch.relu(L0(x))
    h = h + L1(torch.relu(h)) / math.sqrt(2)  # zero-mean branch: ends in a linear layer
    h = h + L2(torch.relu(h)) / math.sqrt(2)
    assert_close(res(x), L3(h), rtol=1e-12, what="residual mlp")


def test_mlp_residual_is_plain_when_there_are_no_hidden_layers():
    x = _sphere(4, 5)
    kwargs = {"d_in": 5, "width": 8, "depth": 2, "dtype": torch.float64}
    assert torch.equal(mlp(**kwargs)(x), mlp(**kwargs, residual=True)(x))


def _tiny_resnet_by_hand(net, x):
    stem, (block,), readout = net.stem, net.blocks, net.readout

    def conv(c, h):
        return c.multiplier * F.conv2d(h, c.weight, padding=1) + c.bias.view(-1, 1, 1)

    h = conv(stem, x)
    branch = net.blocks[0].branch_scale * conv(
        block.conv2, torch.relu(conv(block.conv1, torch.relu(h)))
    )
    h = h + branch if block.skip else branch
    pooled = torch.relu(h).mean(dim=(2, 3))
    return pooled @ readout.weight.T + readout.bias


@pytest.mark.parametrize("skip", [True, False])
def test_resnet_matches_hand_forward(skip):
    net = resnet(2, 5, 3, 4, depth=1, skip=skip, seed=7, dtype=torch.float64)
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert_close(net(x), _tiny_resnet_by_hand(net, x), rtol=1e-12, what=f"resnet skip={skip}")


@pytest.mark.parametrize("p", PARAMS)
def test_flatten_readout_reads_every_position_with_fan_in_c_h_w(p):
    x = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = cnn(2, (5, 4), 3, 2, depth=1, parameterization=p, readout="flatten", dtype=torch.float64)
    spec = get_parameterization(p).layer("output", 3 * 5 * 4, 3 / 64, base_width=64)
    assert net.readout.weight.shape == (2, 3 * 5 * 4)
    assert_close(net.readout.multiplier, spec.multiplier, rtol=1e-6, atol=1e-12)
    assert_close(net.readout.spec.init_std, spec.init_std, rtol=1e-6, atol=1e-12)
    conv = net.convs[0]
    h = torch.relu(conv.multiplier * F.conv2d(x, conv.weight, padding=1) + _bias(conv))
    expected = net.readout.multiplier * h.flatten(1) @ net.readout.weight.T + _bias(net.readout)
    assert_close(net(x), expected, rtol=1e-12, what=f"cnn flatten readout ({p})")
    pooled = cnn(2, (5, 4), 3, 2, depth=1, parameterization=p, dtype=torch.float64)
    assert pooled.readout.weight.shape == (2, 3)  # the default stays the pooled readout


def _bias(layer):
    view = (-1, 1, 1) if isinstance(layer, ScaledConv2d) else (-1,)
    return layer.bias_multiplier * layer.bias.view(view)


def test_resnet_flatten_readout_matches_hand_forward():
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = resnet(2, 5, 3, 4, depth=1, readout="flatten", seed=7, dtype=torch.float64)
    pooled = resnet(2, 5, 3, 4, depth=1, seed=7, dtype=torch.float64)
    with torch.no_grad():
        features = torch.relu(pooled.blocks[0](pooled.stem(x))).flatten(1)  # same convs, same seed
    expected = net.readout.multiplier * features @ net.readout.weight.T + net.readout.bias
    assert_close(net(x), expected, rtol=1e-12, what="resnet flatten readout")


def test_resnet_without_skip_has_no_identity_path():
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outs = {}
    for skip in (True, False):
        net = resnet(2, 5, 3, 4, depth=2, skip=skip, branch_scale=0.5, dtype=torch.float64)
        with torch.no_grad():
            for block in net.blocks:
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
        outs[skip] = net(x)
    # zero branches: with skips the stem signal reaches the readout, without it nothing does
    assert outs[True].std(dim=0).min() > 0
    assert_close(outs[False], outs[False][:1].expand_as(outs[False]), rtol=0, atol=0, what="const")


# ---------------------------------------------------------------- layers
def test_scaled_layers_compute_their_definition():
    g = torch.Generator().manual_seed(0)
    spec = get_parameterization("ntk").layer("hidden", 6, activation_gain=SQ2)
    lin = ScaledLinear(6, 3, spec, generator=g, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, generator=g)
    expected = spec.multiplier * x @ lin.weight.T + spec.bias_multiplier * lin.bias
    assert_close(lin(x), expected, rtol=1e-12, what="ScaledLinear")
    assert lin.lr_multipliers == {"weight": 1.0, "bias": 1.0}
    cspec = get_parameterization("ntk").layer("hidden", 2 * 9)
    conv = ScaledConv2d(2, 3, 3, cspec, generator=g, dtype=torch.float64)
    z = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=g)
    expected = cspec.multiplier * F.conv2d(z, conv.weight, padding=1) + BETA * conv.bias.view(
        -1, 1, 1
    )
    assert_close(conv(z), expected, rtol=1e-12, what="ScaledConv2d")


# ---------------------------------------------------------------- validation
BAD = [
    (lambda: mlp(4, 0, depth=2), "width", "0"),
    (lambda: mlp(4, 8, depth=0), "depth", "0"),
    (lambda: mlp(-3, 8, depth=2), "d_in", "-3"),
    (lambda: mlp(4, 2.5, depth=2), "width", "2.5"),
    (lambda: mlp(4, True, depth=2), "width", "True"),
    (lambda: mlp(4, 8, depth=2, out_dim=0), "out_dim", "0"),
    (lambda: mlp(4, 8, depth=2, activation="sigmoid"), "activation", "'sigmoid'"),
    (lambda: mlp(4, 8, depth=2, parameterization="sp"), "parameterization", "'sp'"),
    (lambda: mlp(4, 8, depth=2, init="zeros"), "init", "'zeros'"),
    (lambda: mlp(4, 8, depth=2, init_scale=0.0), "init_scale", "0.0"),
    (lambda: mlp(4, 8, depth=2, dtype=torch.int64), "dtype", "torch.int64"),
    (lambda: mlp(4, 8, depth=2, seed=-1), "seed", "-1"),
    (lambda: two_layer(4, 0), "width", "0"),
    (lambda: two_layer(4, 8, activation="elu"), "activation", "'elu'"),
    (lambda: cnn(3, 8, 0, 10), "width", "0"),
    (lambda: cnn(3, 0, 4, 10), "image_size", "0"),
    (lambda: cnn(0, 8, 4, 10), "in_channels", "0"),
    (lambda: cnn(3, 8, 4, 10, parameterization="NTK"), "parameterization", "'NTK'"),
    (lambda: resnet(3, 8, 4, 10, depth=0), "depth", "0"),
    (lambda: resnet(3, 8, 4, 0), "out_dim", "0"),
    (lambda: cnn(3, 8, 4, 10, readout="sum"), "readout", "'sum'"),
    (lambda: resnet(3, 8, 4, 10, readout="max"), "readout", "'max'"),
    (lambda: get_parameterization("foo"), "parameterization", "'foo'"),
]


@pytest.mark.parametrize(("make", "argument", "value"), BAD)
def test_bad_arguments_raise_value_error_naming_them(make, argument, value):
    with pytest.raises(ValueError, match=re.escape(argument)) as info:
        make()
    message = str(info.value)
    assert f"got {value}" in message
    assert "\n" not in message


def test_unknown_parameterization_lists_accepted_names():
    with pytest.raises(ValueError) as info:
        get_parameterization("foo")
    assert all(name in str(info.value) for name in PARAMETERIZATIONS)


def test_cnn_rejects_wrong_input_channels():
    with pytest.raises(ValueError, match=re.escape("(n, 3, H, W)")):
        cnn(3, 6, 4, 10)(torch.zeros(2, 1, 6, 6))


# ---------------------------------------------------------------- output wrappers
def _x(n=5, d=4):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.mark.parametrize("scale", [1.0, 3.0, 40.0])
def test_centred_lazy_output_is_zero_at_init_and_alpha_times_the_change_after(scale):
    net = mlp(4, 16, depth=3, seed=0, dtype=torch.float64)
    before = net(_x()).detach()
    lazy = wrap_output(net, scale=scale, center=True)
    assert isinstance(lazy, LazyOutput) and lazy.net is net
    assert_close(lazy(_x()), torch.zeros(5, 1, dtype=torch.float64), rtol=0, atol=0, what="f_α(0)")
    trainable = [n for n, p in lazy.named_parameters() if p.requires_grad]
    assert trainable == [f"net.{n}" for n, _ in net.named_parameters()]
    assert lr_multipliers(lazy) == {f"net.{n}": v for n, v in lr_multipliers(net).items()}
    torch.optim.SGD(lazy.parameters(), lr=0.1).zero_grad()
    lazy(_x()).pow(2).sum().backward()  # output 0 at init: zero gradient, so move by hand
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    expected = scale * (net(_x()) - before)
    assert_close(lazy(_x()), expected, rtol=1e-12, atol=1e-15, what="α(f − f₀)")
    assert all(p.grad is None for p in lazy.reference.parameters())


def test_uncentred_scale_and_output_activation_compose():
    net = mlp(4, 16, depth=2, seed=1, dtype=torch.float64)
    assert wrap_output(net) is net  # nothing asked, nothing wrapped
    scaled = wrap_output(net, scale=2.5)
    assert isinstance(scaled, LazyOutput) and scaled.reference is None
    assert_close(scaled(_x()), 2.5 * net(_x()), rtol=1e-15, what="α f")
    both = wrap_output(net, activation="tanh", scale=2.0, center=True)
    assert isinstance(both.net, OutputActivation)
    new = _x(5, 4) + 1
    at_init = torch.tanh(net(new)).detach()  # φ(f₀(x))
    with torch.no_grad():
        net.layers[0].weight.mul_(1.5)  # "training" moves the live net only
    expected = 2.0 * (torch.tanh(net(new)) - at_init)
    assert_close(both(new), expected, rtol=1e-12, what="α(φ(f) − φ(f₀))")
    act = wrap_output(net, activation="softplus")
    assert_close(act(_x()), F.softplus(net(_x())), rtol=1e-15, what="φ(f)")


@pytest.mark.parametrize(
    ("kwargs", "argument", "value"),
    [
        ({"scale": 0.0}, "output_scale", "0.0"),
        ({"scale": math.inf}, "output_scale", "inf"),
        ({"scale": math.nan}, "output_scale", "nan"),
        ({"activation": "sigmoid"}, "output_activation", "'sigmoid'"),
        ({"center": 1}, "center_output", "1"),
    ],
)
def test_wrap_output_rejects_bad_options_naming_them(kwargs, argument, value):
    with pytest.raises(ValueError, match=re.escape(argument)) as info:
        wrap_output(mlp(4, 8, depth=2), **kwargs)
    assert f"got {value}" in str(info.value)


def test_factories_take_sizes_then_keywords_named_alike():
    import inspect

    leading = {
        mlp: ["d_in", "width"],
        two_layer: ["d_in", "width"],
        cnn: ["in_channels", "image_size", "width", "out_dim"],
        resnet: ["in_channels", "image_size", "width", "out_dim"],
    }
    for factory, sizes in leading.items():
        params = inspect.signature(factory).parameters.values()
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == sizes, factory.__name__
    shared = {"width", "depth", "out_dim", "activation", "parameterization", "init_scale"}
    shared |= {"base_width", "seed", "dtype", "device"}
    for factory in (mlp, cnn, resnet):
        assert shared <= set(inspect.signature(factory).parameters), factory.__name__
    with pytest.raises(TypeError, match="positional"):
        mlp(4, 8, 2)  # type: ignore[misc]  # depth is a keyword: mlp(4, 8, depth=2)
    with pytest.raises(TypeError, match="positional"):
        two_layer(4, 8, 0)  # type: ignore[misc]
    assert len(mlp(4, 8).layers) == 3  # depth 3 by default, as model.depth of a trial
