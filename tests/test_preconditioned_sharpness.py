"""Preconditioned sharpness of Adam/RMSprop: the preconditioner torch applies, λ_max(P⁻¹H), and its threshold."""

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from cases import tanh_mlp
from gdscope.probes import _reference_extra as rx
from gdscope.probes.preconditioned import (
    adaptive_stability_threshold,
    preconditioned_sharpness,
    preconditioner_diagonal,
)

F64 = torch.float64

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw-amsgrad": lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.95), amsgrad=True),
    "rmsprop-centered": lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, eps=1e-4),
    "rmsprop-momentum": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),
    "adam-coupled-decay": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.5),
    "rmsprop-decay": lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.3),
}


def _trained(name, net, loss_fn, batch, steps=3):
    opt = OPTIMIZERS[name](net.parameters())
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(batch[0]), batch[1]).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("curvature_case", ["mlp-mse", "cnn-ce"], indirect=True)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_preconditioned_sharpness_matches_the_dense_oracle(name, curvature_case):
    net, loss_fn, batch = curvature_case.net, curvature_case.loss_fn, curvature_case.batch
    opt = _trained(name, net, loss_fn, batch)
    for params in (None, curvature_case.block):
        value = preconditioned_sharpness(net, loss_fn, batch, opt, tol=1e-11, params=params)
        expected = rx.dense_preconditioned_sharpness(net, loss_fn, batch, opt, params)
        assert_close(value, expected, rtol=1e-8, what=f"{name} {curvature_case.name} {params}")


@pytest.mark.parametrize("name", ["adam", "adamw-amsgrad", "rmsprop-centered"])
def test_the_preconditioner_is_the_denominator_of_torchs_own_step(name):
    """One more torch step moves θ by exactly −η·(m or g)/P, with P as we read it after the step
    (Adam's P holds the first moment's bias correction 1 − β₁ᵗ, as Cohen et al. write it)."""
    case = tanh_mlp(seed=1)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    opt = _trained(name, net, loss_fn, batch, steps=4)
    before = torch.cat([p.detach().reshape(-1).clone() for p in net.parameters()])
    opt.zero_grad()
    loss_fn(net(batch[0]), batch[1]).backward()
    grad = torch.cat([torch.as_tensor(p.grad).reshape(-1) for p in net.parameters()])
    opt.step()
    after = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    if name.startswith("adam"):
        direction = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in net.parameters()])
    else:
        direction = grad
    decay = 1 - 0.01 * opt.param_groups[0]["weight_decay"] if name.startswith("adamw") else 1.0
    expected = decay * before - 0.01 * direction / preconditioner_diagonal(net, opt)
    assert_close(after, expected, rtol=1e-12, atol=1e-15)


def test_lr_scaled_measures_the_step_sizes_of_each_group():
    case = tanh_mlp(seed=2)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    groups = [
        {"params": [p for n, p in net.named_parameters() if n.startswith("layers.0")], "lr": 0.1},
        {"params": [p for n, p in net.named_parameters() if not n.startswith("layers.0")]},
    ]
    opt = torch.optim.Adam(groups, lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        loss_fn(net(batch[0]), batch[1]).backward()
        opt.step()
    lrs = torch.cat(
        [torch.full((p.numel(),), g["lr"], dtype=F64) for g in groups for p in g["params"]]
    )
    scale = (lrs / rx.dense_preconditioner(net, opt)).sqrt()
    hessian = rx.dense_hessian_block(net, loss_fn, batch)
    expected = rx.dense_top_eigenvalue(scale[:, None] * hessian * scale[None, :])
    value = preconditioned_sharpness(net, loss_fn, batch, opt, tol=1e-11, lr_scaled=True)
    assert_close(value, expected, rtol=1e-8)
    assert_close(adaptive_stability_threshold(opt, lr_scaled=True), 38.0, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="lr_scaled=True"):
        adaptive_stability_threshold(opt)


def test_thresholds_are_those_of_the_paper():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = torch.optim.Adam(params, lr=0.1)  # β₁ = 0.9: 38/η (Cohen et al. 2022)
    assert_close(adaptive_stability_threshold(adam), 380.0, rtol=1e-12, atol=1e-12)
    assert_close(
        adaptive_stability_threshold(torch.optim.RMSprop(params, lr=0.1)),
        20.0,
        rtol=1e-6,
        atol=1e-12,
    )
    rms = torch.optim.RMSprop(params, lr=0.1, momentum=0.5)
    assert_close(adaptive_stability_threshold(rms), 30.0, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["adam", "rmsprop-momentum", "adam-coupled-decay"])
def test_frozen_preconditioner_iteration_is_stable_exactly_below_the_threshold(name):
    """On the quadratic of a linear model, the frozen-P method converges at 0.95x the threshold
    and diverges at 1.05x: the threshold and λ_max(P⁻¹H) are the right pair. With a coupled
    weight decay λ the method descends L + λ‖θ‖²/2, whose Hessian is H + λI."""
    net = gs.models.mlp(5, 1, depth=1, out_dim=1, seed=0, dtype=F64)  # linear: H is constant
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 5, generator=g, dtype=F64), torch.randn(12, 1, generator=g, dtype=F64)
    opt = _trained(name, net, gs.losses.mse, (x, y), steps=5)
    sharp = preconditioned_sharpness(net, gs.losses.mse, (x, y), opt, tol=1e-12)
    edge = adaptive_stability_threshold(opt) * 0.01  # the threshold times η: lr-free
    p_inv = 1 / preconditioner_diagonal(net, opt)
    decay = opt.param_groups[0]["weight_decay"]
    hessian = rx.dense_hessian_block(net, gs.losses.mse, (x, y)) + decay * torch.eye(6, dtype=F64)
    adam = name.startswith("adam")
    beta = opt.param_groups[0]["betas"][0] if adam else 0.5
    damp = (1 - beta) if adam else 1.0  # EMA momentum vs heavy ball
    for factor, stable in ((0.95, True), (1.05, False)):
        eta = factor * edge / sharp
        e, m = torch.ones(6, dtype=F64), torch.zeros(6, dtype=F64)
        for _ in range(3000):
            m = beta * m + damp * (hessian @ e)
            e = e - eta * p_inv * m
        assert (float(e.norm()) < 1e-3) == stable, (factor, float(e.norm()))


def test_unsupported_or_unstepped_optimizers_are_refused():
    case = tanh_mlp(seed=0)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    with pytest.raises(ValueError, match="SGD"):
        preconditioned_sharpness(net, loss_fn, batch, torch.optim.SGD(net.parameters(), lr=0.1))
    fresh = torch.optim.Adam(net.parameters())
    with pytest.raises(ValueError, match="take at least one optimizer step"):
        preconditioned_sharpness(net, loss_fn, batch, fresh)
    partial = _trained("adam", net, loss_fn, batch, steps=1)
    partial.param_groups[0]["params"] = partial.param_groups[0]["params"][:2]
    with pytest.raises(ValueError, match=r"'layers\.1\.weight' is not updated"):
        preconditioned_sharpness(net, loss_fn, batch, partial)
    assert preconditioned_sharpness(net, loss_fn, batch, partial, params="layers.0") > 0


def test_a_random_loss_is_refused_in_the_probes_own_name():
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(net.parameters())
    x, y = torch.randn(5, 3), torch.randn(5, 1)
    net(x).pow(2).mean().backward()
    optimizer.step()
    with pytest.raises(ValueError, match=r"^preconditioned_sharpness needs a deterministic loss"):
        gs.probes.preconditioned_sharpness(net, gs.losses.mse, (x, y), optimizer)


def test_maximizing_optimizers_and_unusable_states_are_refused_with_the_fix():
    case = tanh_mlp(seed=0)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    ascent = torch.optim.Adam(net.parameters(), lr=0.01, maximize=True)
    loss_fn(net(batch[0]), batch[1]).backward()
    ascent.step()
    with pytest.raises(ValueError, match=r"maximize=True.*loss_fn = −loss"):
        preconditioned_sharpness(net, loss_fn, batch, ascent)
    with pytest.raises(ValueError, match=r"lr = 0\.0 .* lr > 0"):
        adaptive_stability_threshold(torch.optim.Adam(net.parameters(), lr=0.0))


def test_a_parameter_that_received_no_gradient_is_named_with_the_params_fix():
    net = torch.nn.ModuleDict({"used": torch.nn.Linear(3, 1), "unused": torch.nn.Linear(3, 1)})
    x, y = torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64)
    net = net.double()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        gs.losses.mse(net["used"](x), y).backward()
        opt.step()

    class Used(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, inputs):
            return self.net["used"](inputs)

    model = Used()
    with pytest.raises(ValueError, match=r"'net\.unused\.weight'.*no gradient.*params="):
        preconditioned_sharpness(model, gs.losses.mse, (x, y), opt)
    block = preconditioned_sharpness(
        model, gs.losses.mse, (x, y), opt, params="net.used", tol=1e-12
    )
    expected = rx.dense_preconditioned_sharpness(model, gs.losses.mse, (x, y), opt, "net.used")
    assert_close(block, expected, rtol=1e-8)


def test_subclasses_of_the_supported_optimizers_are_refused():
    """A subclass may change the update (and so ``P``): refused, the fix named."""

    class Mine(torch.optim.Adam):
        pass

    case = tanh_mlp(seed=0)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    opt = Mine(net.parameters(), lr=0.01)
    loss_fn(net(batch[0]), batch[1]).backward()
    opt.step()
    with pytest.raises(ValueError, match=r"got Mine \(a subclass, .*pass the torch class itself"):
        preconditioned_sharpness(net, loss_fn, batch, opt)


def test_adamw_decay_is_decoupled_even_without_the_group_key():
    """Before torch 2.7 AdamW's groups had no ``decoupled_weight_decay``: its decay is still not
    added to ``H`` (on dead units, where P ≈ ε, it would read λ/ε)."""
    case = tanh_mlp(seed=3)
    net, loss_fn, batch = case.net, case.loss_fn, case.batch
    opt = torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        loss_fn(net(batch[0]), batch[1]).backward()
        opt.step()
    value = preconditioned_sharpness(net, loss_fn, batch, opt, tol=1e-10)
    for group in opt.param_groups:
        group.pop("decoupled_weight_decay", None)
    assert preconditioned_sharpness(net, loss_fn, batch, opt, tol=1e-10) == value
    assert_close(value, rx.dense_preconditioned_sharpness(net, loss_fn, batch, opt), rtol=1e-8)
