"""A weight put into an existing layer (head surgery) leaves its size attributes stale.

torch's stock forwards read only ``weight`` and ``bias``, so the model runs; ``ntk_gram``'s fast
paths took ``out_features`` / ``kernel_size`` from the attributes and returned a Gram 6% off
(or crashed with a raw shape error). Such a layer is now not theirs: ``"auto"`` takes the
Jacobian route and ``ntk_method`` says so.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdscope.models import cnn, mlp
from gdscope.probes._reference import dense_ntk
from gdscope.probes.ntk import ntk_gram, ntk_method

D = torch.float64


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _exact(model: nn.Module, x: torch.Tensor, x2: torch.Tensor | None = None) -> None:
    """``auto`` (full and trace) equals the Jacobian route to 1e-10 and says it takes it."""
    for trace in (False, True):
        got = ntk_gram(model, x, x2, trace=trace)
        want = ntk_gram(model, x, x2, trace=trace, method="jacobian")
        assert got.shape == want.shape
        assert _rel(got, want) <= 1e-10
    assert ntk_method(model, x) == "jacobian"


def _head_swapped(activation: bool) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Linear(4, 6), *([nn.Tanh()] if activation else []), nn.Linear(6, 2)]
    net = nn.Sequential(*layers).to(D)
    net[-1].weight = nn.Parameter(torch.randn(3, 6, dtype=D))  # a 3-class head; out_features 2
    net[-1].bias = nn.Parameter(torch.randn(3, dtype=D))
    return net


@pytest.mark.parametrize("activation", [False, True])
@pytest.mark.parametrize("n", [5, 100])  # the plain path sums one pass below 96 rows, tiles above
def test_swapped_linear_head_is_exact(activation: bool, n: int) -> None:
    net = _head_swapped(activation)
    x = torch.randn(n, 4, dtype=D)
    assert net(x).shape == (n, 3)
    _exact(net, x)
    assert ntk_gram(net, x).shape == (3 * n, 3 * n)


def test_swapped_linear_head_matches_autograd_and_cross_gram() -> None:
    net = _head_swapped(True)
    x, x2 = torch.randn(7, 4, dtype=D), torch.randn(4, 4, dtype=D)
    assert _rel(ntk_gram(net, x, trace=True), dense_ntk(net, x, trace=True)) <= 1e-10
    _exact(net, x, x2)


def test_swapped_hidden_width_is_exact() -> None:
    """Both layers around a hidden width swapped: the attributes still chain (6 to 6)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).to(D)
    net[0].weight = nn.Parameter(torch.randn(5, 4, dtype=D))
    net[0].bias = nn.Parameter(torch.randn(5, dtype=D))
    net[2].weight = nn.Parameter(torch.randn(2, 5, dtype=D))
    _exact(net, torch.randn(6, 4, dtype=D))


def test_broadcast_bias_is_exact() -> None:
    """``F.linear`` broadcasts a ``(1,)`` bias onto every output: one parameter, not two."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).to(D)
    net[2].bias = nn.Parameter(torch.randn(1, dtype=D))
    _exact(net, torch.randn(5, 4, dtype=D))


def test_swapped_mlp_readout_is_exact() -> None:
    net = mlp(d_in=4, width=8, depth=2, out_dim=2, activation="tanh", seed=0, dtype=D)
    readout = net.layers[-1]
    readout.weight = nn.Parameter(torch.randn(3, 8, dtype=D))
    readout.bias = nn.Parameter(torch.randn(3, dtype=D))
    _exact(net, torch.randn(5, 4, dtype=D))


@pytest.mark.parametrize("padding", ["same", 1])
def test_swapped_conv_kernel_is_exact(padding: str | int) -> None:
    """A 1×1 kernel put into a 3×3 layer; with ``"same"`` the output shape does not change."""
    torch.manual_seed(0)
    side = 6 if padding == "same" else 8
    conv = nn.Conv2d(2, 3, 3, padding=padding)
    net = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * side * side, 2)).to(D)
    net[0].weight = nn.Parameter(torch.randn(3, 2, 1, 1, dtype=D))  # kernel_size still (3, 3)
    x = torch.randn(4, 2, 6, 6, dtype=D)
    assert net(x).shape == (4, 2)
    _exact(net, x)


def test_swapped_scaled_conv_kernel_is_exact() -> None:
    net = cnn(2, 6, width=3, out_dim=2, depth=1, kernel_size=3, seed=0, dtype=D)
    net.convs[0].weight = nn.Parameter(torch.randn(3, 2, 1, 1, dtype=D))
    _exact(net, torch.randn(4, 2, 6, 6, dtype=D))


def test_structured_refuses_a_stale_layer() -> None:
    net = _head_swapped(True)
    with pytest.raises(ValueError, match="stale size attributes"):
        ntk_gram(net, torch.randn(3, 4, dtype=D), method="structured")


def test_ordinary_models_keep_the_fast_route() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(D)
    x = torch.randn(5, 4, dtype=D)
    assert ntk_method(net, x) == "structured"
    assert _rel(ntk_gram(net, x), ntk_gram(net, x, method="jacobian")) <= 1e-10
    conv = nn.Sequential(nn.Conv2d(2, 3, 1, padding="same"), nn.Flatten(), nn.Linear(108, 2))
    assert ntk_method(conv.to(D), torch.randn(2, 2, 6, 6, dtype=D)) == "structured"
    scaled = cnn(2, 6, width=3, out_dim=2, depth=1, seed=0, dtype=D)
    assert ntk_method(scaled, torch.randn(2, 2, 6, 6, dtype=D)) == "structured"
