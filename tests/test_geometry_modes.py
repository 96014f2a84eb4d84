"""Geometry probes on models in training mode and on bad inputs: refused with the fix, buffers
and inputs left as they were, and the loss required to be a scalar by every probe."""

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import params_of
from gdscope.probes.geometry import (
    activation_flips,
    activation_pattern,
    distance_from_init,
    gradient_norm,
    loss_and_grad_norm,
    per_neuron_displacement,
    pl_ratio,
    square_loss_sandwich,
)
from gdscope.probes.linearization import linearization_gap

F64 = torch.float64


def _bn_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1)).double()


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(10, 3, generator=g, dtype=F64), torch.randn(10, 1, generator=g, dtype=F64)


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def test_training_mode_batch_norm_is_refused_with_the_fix_and_moves_no_buffer():
    net, (x, y) = _bn_net(), _batch()
    before = _buffers(net)
    params = params_of(net)
    calls = {
        "gradient_norm": lambda: gradient_norm(net, params, gs.losses.mse, (x, y)),
        "activation_pattern": lambda: activation_pattern(net, x),
        "linearized_prediction": lambda: linearization_gap(net, params, params, x),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{what} needs a deterministic .*model\.eval\(\)"):
            call()
    for name, value in _buffers(net).items():
        assert torch.equal(value, before[name]), name


def test_batch_statistics_opted_in_give_the_autograd_gradient_and_restore_buffers():
    net, (x, y) = _bn_net(1), _batch(1)
    before = _buffers(net)
    with gs.probes.allow_batch_statistics(net):
        loss, norm = loss_and_grad_norm(net, params_of(net), gs.losses.mse, (x, y))
        pattern = activation_pattern(net, x)
        with pytest.raises(ValueError, match=r"forward mode.*model\.eval"):
            linearization_gap(net, params_of(net), params_of(net), x)
    for name, value in _buffers(net).items():
        assert torch.equal(value, before[name]), name
    expected_loss = gs.losses.mse(net(x), y)  # training mode: the batch's own statistics
    grads = torch.autograd.grad(expected_loss, list(net.parameters()))
    assert_close(loss, float(expected_loss.detach()), rtol=1e-14)
    assert_close(norm, float(torch.cat([g.reshape(-1) for g in grads]).norm()), rtol=1e-13)
    hidden = net[1](net[0](x))
    assert torch.equal(pattern[0], hidden > 0)


def test_dropout_in_training_mode_is_refused_rather_than_a_random_norm():
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 1)).double()
    x, y = _batch()
    with pytest.raises(ValueError, match=r"'1' \(Dropout\).*random masks"):
        gradient_norm(net, params_of(net), gs.losses.mse, (x, y))
    with pytest.raises(ValueError, match="random masks"):
        activation_flips(net, x, [torch.zeros(10, 8, dtype=torch.bool)])
    net.eval()
    assert gradient_norm(net, params_of(net), gs.losses.mse, (x, y)) > 0


@pytest.mark.parametrize("probe", ["gradient_norm", "sharpness", "ggn_sharpness"])
def test_a_loss_that_is_not_a_scalar_is_refused_by_name(probe):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x, y = _batch()

    def per_example(out, target):
        return ((out - target) ** 2).reshape(-1)

    calls = {
        "gradient_norm": lambda: gradient_norm(net, params_of(net), per_example, (x, y)),
        "sharpness": lambda: gs.probes.sharpness(net, per_example, (x, y)),
        "ggn_sharpness": lambda: gs.probes.ggn_sharpness(net, per_example, (x, y)),
    }
    with pytest.raises(ValueError, match=r"^loss_fn returned a tensor of shape \(10,\), not a"):
        calls[probe]()


def test_movement_needs_matching_shapes_and_names():
    params = {"w": torch.ones(3, 4, dtype=F64)}
    with pytest.raises(ValueError, match=r"init\['w'\] has shape \(4,\), params\['w'\] \(3, 4\)"):
        distance_from_init(params, {"w": torch.zeros(4, dtype=F64)})
    with pytest.raises(ValueError, match=r"init\['w'\] has shape \(4,\)"):
        per_neuron_displacement(params, {"w": torch.zeros(4, dtype=F64)}, "w")
    with pytest.raises(KeyError, match=r"'w' is not in init; it has \['v'\]"):
        distance_from_init(params, {"v": torch.zeros(3, 4, dtype=F64)})
    moved = distance_from_init(params, {"w": torch.zeros(3, 4, dtype=F64)})
    assert_close(moved["dist_from_init"], 12**0.5, rtol=1e-15)


def test_squared_norms_and_eigenvalue_order_are_checked():
    with pytest.raises(ValueError, match=r"grad_norm_sq must be the squared .* got -1"):
        pl_ratio(1.0, -1)
    with pytest.raises(ValueError, match="grad_norm_sq must be the squared"):
        square_loss_sandwich(1.0, -1.0, 4, 0.5, 2.0)
    with pytest.raises(ValueError, match=r"lambda_min = 5 exceeds lambda_max = 1"):
        square_loss_sandwich(1.0, 1.0, 4, 5, 1)
    assert pl_ratio(2.0, 8.0, 1.0) == 4.0
