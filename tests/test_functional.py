import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import apply, flatten, hvp, loss_and_grad, params_of
from gdscope.probes._reference import dense_hessian

# a smooth net, a smooth two-output NTK-parameterized net, a ReLU net whose outer layer is frozen
FUNCTIONAL_NETS = ["mlp_tanh", "mlp_softplus_2out", "two_layer"]


def _dense_hessian(model, loss_fn, batch):
    params = params_of(model)
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def loss_of_flat(theta):
        chunks = torch.split(theta, sizes)
        p = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return loss_fn(apply(model, p, batch[0]), batch[1])

    theta = flatten(params).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of_flat(theta), theta, create_graph=True)
    rows = [torch.autograd.grad(g[i], theta, retain_graph=True)[0] for i in range(theta.numel())]
    return torch.stack(rows)


@pytest.mark.parametrize("net_case", FUNCTIONAL_NETS, indirect=True)
def test_apply_equals_module_call(net_case):
    model, x = net_case.net, net_case.batch[0]
    assert_close(apply(model, params_of(model), x), model(x), rtol=0)


@pytest.mark.parametrize("net_case", FUNCTIONAL_NETS, indirect=True)
def test_loss_and_grad_equals_autograd(net_case):
    model, (x, y) = net_case.net, net_case.batch
    loss, grads = loss_and_grad(model, params_of(model), gs.losses.mse, (x, y))
    ref = gs.losses.mse(model(x), y)
    ref_grads = torch.autograd.grad(ref, [p for p in model.parameters() if p.requires_grad])
    assert_close(loss, ref, rtol=1e-14)
    assert_close(flatten(grads), torch.cat([g.reshape(-1) for g in ref_grads]), rtol=1e-12)


@pytest.mark.parametrize("net_case", FUNCTIONAL_NETS, indirect=True)
def test_hvp_equals_dense_hessian_product(net_case):
    model, (x, y), gen = net_case.net, net_case.batch, net_case.gen
    params = params_of(model)
    v = {k: torch.randn(t.shape, generator=gen, dtype=torch.float64) for k, t in params.items()}
    H = _dense_hessian(model, gs.losses.mse, (x, y))
    assert_close(
        flatten(hvp(model, params, gs.losses.mse, (x, y), v)),
        H @ flatten(v),
        rtol=1e-10,
        atol=1e-13,
    )


def test_params_of_skips_frozen_outer_layer():
    net = gs.models.two_layer(3, 6, seed=0)
    assert list(params_of(net)) == ["weight"]


def test_a_layer_applied_twice_keeps_its_parameters_and_gets_the_values_passed():
    """torch 2.13's ``functional_call(tie_weights=True)`` left such a layer holding the tensors
    passed (plain tensors, no longer trainable); every later probe then saw a frozen layer."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 6)
    model = nn.Sequential(layer, nn.Tanh(), layer, nn.Tanh(), nn.Linear(6, 1)).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    params = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    out = apply(model, params, x)
    assert isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad
    by_hand = torch.tanh(x @ params["0.weight"].T + params["0.bias"])
    by_hand = torch.tanh(by_hand @ params["0.weight"].T + params["0.bias"])
    by_hand = by_hand @ params["4.weight"].T + params["4.bias"]
    assert torch.allclose(out, by_hand, rtol=0, atol=1e-12)
    y = torch.randn(8, 1, dtype=torch.float64)
    first = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    second = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    top = float(torch.linalg.eigvalsh(dense_hessian(model, gs.losses.mse, (x, y)))[-1])
    assert abs(first - top) <= 1e-9 * top and first == second


def test_a_weight_tied_across_modules_takes_the_value_passed_in_both():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5)).double()
    model[2].weight = model[0].weight
    x = torch.randn(4, 5, dtype=torch.float64)
    params = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    assert "2.weight" not in params
    out = apply(model, params, x)
    hidden = torch.tanh(x @ params["0.weight"].T + params["0.bias"])
    assert torch.allclose(out, hidden @ params["0.weight"].T + params["2.bias"], rtol=0, atol=1e-12)
    assert model[0].weight is model[2].weight and isinstance(model[0].weight, nn.Parameter)


def test_apply_passes_buffers_and_alias_names_and_refuses_two_values_for_one_tie():
    x = torch.randn(3, 4, dtype=torch.float64)
    two = gs.models.two_layer(4, 7, seed=0, dtype=torch.float64)
    zero_outer = {"weight": two.weight.detach(), "outer": torch.zeros(7, dtype=torch.float64)}
    assert float(apply(two, zero_outer, x).abs().max()) == 0.0  # the buffer was replaced
    tied = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).double()
    tied[2].weight = tied[0].weight
    zeros = torch.zeros(4, 4, dtype=torch.float64)
    by_alias = apply(tied, {"2.weight": zeros}, x)  # the alias sets both uses
    hidden = torch.tanh(x @ zeros.T + tied[0].bias)
    assert torch.allclose(by_alias, hidden @ zeros.T + tied[2].bias, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"'2\.weight' names a parameter tied"):
        apply(tied, {"0.weight": zeros, "2.weight": torch.ones(4, 4, dtype=torch.float64)}, x)
