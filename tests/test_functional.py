import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import apply, flatten, hvp, loss_and_grad, params_of

MODELS = {
    "mlp_tanh": lambda: gs.models.mlp(3, 7, 3, activation="tanh", seed=1, dtype=torch.float64),
    "mlp_ntk_2out": lambda: gs.models.mlp(
        3,
        5,
        2,
        out_dim=2,
        parameterization="ntk",
        activation="softplus",
        seed=2,
        dtype=torch.float64,
    ),
    "two_layer": lambda: gs.models.two_layer(3, 6, seed=3, dtype=torch.float64),
}


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


@pytest.mark.parametrize("name", list(MODELS))
def test_apply_equals_module_call(name):
    model = MODELS[name]()
    x = torch.randn(4, 3, dtype=torch.float64)
    assert_close(apply(model, params_of(model), x), model(x), rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_and_grad_equals_autograd(name):
    model = MODELS[name]()
    x, y = torch.randn(5, 3, dtype=torch.float64), None
    y = torch.randn(5, model(x).shape[1], dtype=torch.float64)
    loss, grads = loss_and_grad(model, params_of(model), gs.losses.mse, (x, y))
    ref = gs.losses.mse(model(x), y)
    ref_grads = torch.autograd.grad(ref, [p for p in model.parameters() if p.requires_grad])
    assert_close(loss, ref, rtol=1e-14)
    assert_close(flatten(grads), torch.cat([g.reshape(-1) for g in ref_grads]), rtol=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_hvp_equals_dense_hessian_product(name):
    model = MODELS[name]()
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, model(x).shape[1], generator=gen, dtype=torch.float64)
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
