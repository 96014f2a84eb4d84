"""Hessian probes refuse ops whose second derivative the installed torch gets wrong.

torch 2.13's ``torch._weight_norm`` fails ``gradgradcheck`` on the CPU, so Hessian products of a
weight-normed net are wrong. The check is made on the installed torch, not assumed: where the op
passes, the probes must run and be right; where it fails, they must refuse with the fix. The
Gauss–Newton sharpness needs only first derivatives of the net and must stay right either way.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrizations

import gdscope as gs
from gdscope.probes import _second_order
from gdscope.probes._second_order import weight_norm_second_derivative_ok


def _normed_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    parametrizations.weight_norm(net[0])
    return net


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return (
        torch.randn(6, 4, generator=gen, dtype=torch.float64),
        torch.randn(6, 1, generator=gen, dtype=torch.float64),
    )


def _composite_hessian(net: nn.Module, batch) -> torch.Tensor:
    """The loss Hessian with the weight rebuilt by hand, ``w = g·v/‖v‖`` per row, in float64."""
    x, y = batch
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    shapes = [p.shape for n, p in net.named_parameters() if p.requires_grad]
    theta = torch.cat(
        [p.detach().reshape(-1) for n, p in net.named_parameters() if p.requires_grad]
    )

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, torch.split(flat, [s.numel() for s in shapes]), strict=True))
        p = {n: parts[n].reshape(s) for n, s in zip(names, shapes, strict=True)}
        g, v = p["0.parametrizations.weight.original0"], p["0.parametrizations.weight.original1"]
        w = g * v / v.norm(dim=1, keepdim=True)
        h = torch.tanh(x @ w.T + p["0.bias"])
        out = functional_call(net[2], {"weight": p["2.weight"], "bias": p["2.bias"]}, (h,))
        return gs.losses.mse(out, y)

    return torch.autograd.functional.hessian(loss, theta)


def test_the_check_is_torch_s_own_gradgradcheck():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    g = (torch.rand(3, 1, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    expected = torch.autograd.gradgradcheck(
        lambda v, g: torch._weight_norm(v, g, 0), (v, g), raise_exception=False
    )
    assert weight_norm_second_derivative_ok("cpu") == expected


@pytest.mark.parametrize("probe", ["sharpness", "hessian_trace", "density", "output"])
def test_hessian_probes_refuse_weight_norm_where_torch_gets_it_wrong(probe):
    if weight_norm_second_derivative_ok("cpu"):
        pytest.skip("this torch's weight norm has a right second derivative")
    net, batch = _normed_net(), _batch()
    calls = {
        "sharpness": lambda: gs.probes.sharpness(net, gs.losses.mse, batch),
        "hessian_trace": lambda: gs.probes.hessian_trace(net, gs.losses.mse, batch),
        "density": lambda: gs.probes.hessian_spectral_density(net, gs.losses.mse, batch),
        "output": lambda: gs.probes.output_hessian_norm(net, batch[0]),
    }
    with pytest.raises(ValueError, match=r"module '0' uses weight normalization.*remove it"):
        calls[probe]()


def test_where_the_check_passes_the_sharpness_is_the_composite_hessian_s(monkeypatch):
    net, batch = _normed_net(), _batch()
    top = float(torch.linalg.eigvalsh(_composite_hessian(net, batch))[-1])
    if weight_norm_second_derivative_ok("cpu"):
        value = gs.probes.sharpness(net, gs.losses.mse, batch, tol=1e-10)
        assert abs(value - top) <= 1e-9 * top
        return
    monkeypatch.setattr(_second_order, "weight_norm_second_derivative_ok", lambda device: True)
    value = gs.probes.sharpness(net, gs.losses.mse, batch, tol=1e-10)  # now allowed: wrong
    assert abs(value - top) > 1e-6 * top  # what the refusal prevents


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap fallback
def test_the_gauss_newton_sharpness_needs_no_second_derivative_of_the_net():
    net, batch = _normed_net(), _batch()
    gram = gs.probes.ntk_gram(net, batch[0], method="jacobian")
    expected = float(torch.linalg.eigvalsh(gram)[-1]) / batch[0].shape[0]
    value = gs.probes.ggn_sharpness(net, gs.losses.mse, batch, tol=1e-12)
    assert abs(value - expected) <= 1e-9 * expected
