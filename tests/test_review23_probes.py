"""Review 23 (instruments): a gradient norm over the trainable parameters, probes inside a
caller's ``torch.inference_mode()``, and a refusal that names ``model.eval()``.

* A1: ``gradient_norm`` / ``loss_and_grad_norm`` on ``dict(model.named_parameters())`` of a
  model with a frozen layer counted the frozen layer's gradient (1.37027 for 0.97730), so they
  disagreed with the ``grad_norm`` that ``gs.train`` records.
* B1: ``ntk_gram`` / ``ntk_spectrum`` / ``ntk_method`` on a model that is not a plain stack,
  ``gradient_norm``, and ``activation_flips(params=...)`` raised torch's "Inference tensors
  cannot be saved for backward" when only the call was wrapped in ``torch.inference_mode()``.
  The linearization's graphs had the same fault: ``linearized_prediction`` through an op
  without a forward-mode rule (weight_norm) returned ``f(θ₀)`` with ``J v = 0``, and
  ``linearization_gap`` skipped its check for kept reads.
* C1: ``ntk_gram`` on a ``spectral_norm`` net in training mode blamed examples that interact
  (a mean over axis 0); the power iteration's buffer updates are the cause, ``model.eval()``
  the fix.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope import probes as P

F64 = torch.float64


def _frozen_first() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).to(F64)
    net[0].requires_grad_(False)  # a frozen feature layer: the head is fine-tuned
    return net, torch.randn(7, 4, dtype=F64), torch.randn(7, 2, dtype=F64)


def _reference_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``‖∇L‖₂`` over the trainable parameters, by plain autograd on the module, in float64."""
    trainable = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(gs.losses.mse(net(x), y), trainable)
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))


def test_gradient_norm_of_a_model_with_a_frozen_layer_is_over_its_trainable_parameters():
    net, x, y = _frozen_first()
    expected = _reference_norm(net, x, y)
    params = dict(net.named_parameters())  # the call the probe's TypeError suggests
    assert_close(P.gradient_norm(net, params, gs.losses.mse, (x, y)), expected, rtol=1e-12)
    loss, norm = P.loss_and_grad_norm(net, params, gs.losses.mse, (x, y))
    assert_close(norm, expected, rtol=1e-12)
    assert_close(loss, float(gs.losses.mse(net(x), y).detach()), rtol=1e-14)
    copies = {name: p.detach().clone() for name, p in net.named_parameters()}  # detached values
    assert_close(P.gradient_norm(net, copies, gs.losses.mse, (x, y)), expected, rtol=1e-12)


def test_gradient_norm_with_a_frozen_layer_equals_the_grad_norm_train_records():
    net, x, y = _frozen_first()
    probe = P.gradient_norm(net, dict(net.named_parameters()), gs.losses.mse, (x, y))
    trained = copy.deepcopy(net)
    optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.1)
    trace = gs.train(trained, optimizer, (x, y), 0, probes={"grad_norm": 1})
    steps, values = trace.series("grad_norm")
    assert list(steps) == [0]
    assert_close(probe, float(values[0]), rtol=1e-12)


def test_gradient_norm_refuses_params_that_name_no_trainable_parameter():
    net, x, y = _frozen_first()
    frozen = {name: p for name, p in net.named_parameters() if not p.requires_grad}
    with pytest.raises(ValueError, match=r"names no trainable parameter.*'2\.weight'"):
        P.gradient_norm(net, frozen, gs.losses.mse, (x, y))


def _layer_norm() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2)).to(F64)
    return net, torch.randn(5, 6, dtype=F64)


def _conv() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).to(F64)
    return net, torch.randn(4, 1, 6, 3, dtype=F64)


def _relu_stack() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1)).to(F64)
    return net, torch.randn(5, 6, dtype=F64)


def _moved(net: nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(4)
    return {
        name: p.detach() + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
        for name, p in net.named_parameters()
    }


def _flips(net: nn.Module, x: torch.Tensor) -> float:
    start = P.activation_pattern(net, x)  # made outside the caller's inference mode
    return P.activation_flips(net, x, start, params=_moved(net))


def _gradient_norm(net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        shape = net(x).shape
    y = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(5))
    return P.gradient_norm(net, dict(net.named_parameters()), gs.losses.mse, (x, y))


def _weight_normed() -> tuple[nn.Module, torch.Tensor]:
    """torch.func.jvp has no rule for weight_norm: the linearization takes two reverse passes."""
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    nn.utils.parametrizations.weight_norm(net[0])
    return net.to(F64).eval(), torch.randn(3, 3, dtype=F64)


def _start(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in net.named_parameters()}


CALLS: dict[str, tuple[Callable[[], tuple[nn.Module, torch.Tensor]], Callable[..., Any]]] = {
    "ntk_gram_layer_norm": (_layer_norm, P.ntk_gram),  # the Jacobian route
    "ntk_gram_conv": (_conv, P.ntk_gram),  # the structured route
    "ntk_gram_conv_cross_trace": (_conv, lambda m, x: P.ntk_gram(m, x, x[:2], trace=True)),
    "ntk_spectrum_layer_norm": (_layer_norm, lambda m, x: P.ntk_spectrum(m, x).lambda_max),
    "ntk_method_conv": (_conv, P.ntk_method),
    "gradient_norm": (_relu_stack, _gradient_norm),
    "gradient_norm_layer_norm": (_layer_norm, _gradient_norm),
    "activation_flips_params": (_relu_stack, _flips),
    "linearized_prediction_weight_norm": (
        _weight_normed,
        lambda m, x: P.linearized_prediction(m, _start(m), _moved(m), x),
    ),
    "linearization_gap_weight_norm": (
        _weight_normed,
        lambda m, x: P.linearization_gap(m, _start(m), _moved(m), x),
    ),
}


@pytest.mark.parametrize("case", list(CALLS))
def test_a_probe_inside_a_callers_inference_mode_gives_its_result_outside_it(case):
    make, call = CALLS[case]
    net, x = make()
    outside = call(net, x)
    with torch.inference_mode():
        inside = call(net, x)
    if isinstance(outside, torch.Tensor):
        assert torch.equal(inside, outside)
    else:
        assert inside == outside


def test_linearization_gap_refuses_a_kept_read_inside_a_callers_inference_mode():
    """Its graph, searched for kept reads, was not recorded there: a wrong gap of 1e-16."""

    class Kept(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2).to(F64)
            self.w_t = self.lin.weight.t()  # kept from the parameter at construction

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + x[:, :2] @ self.w_t[:2]

    torch.manual_seed(8)
    net, x = Kept(), torch.randn(4, 3, dtype=F64)
    start = _start(net)
    moved = {name: t + 0.1 for name, t in start.items()}
    with torch.inference_mode(), pytest.raises(ValueError, match=r"'lin\.weight' is read other"):
        P.linearization_gap(net, start, moved, x)


def test_spectral_norm_in_training_mode_is_refused_naming_model_eval():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).to(F64)
    net[0] = nn.utils.parametrizations.spectral_norm(net[0])
    x = torch.randn(5, 4, dtype=F64)
    with pytest.raises(ValueError) as refused:
        P.ntk_gram(net, x)
    message = str(refused.value)
    assert "\n" not in message
    assert "spectral_norm" in message and "call model.eval()" in message, message
    assert "mean or cumulative sum" not in message, message
    assert P.ntk_gram(net.eval(), x).shape == (10, 10)
