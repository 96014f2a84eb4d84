"""Hessian probes against the dense Hessian: products, top eigenvalues, traces, output Hessians."""

import functools
import math

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import flatten, hvp, params_of
from gdscope.probes._reference import dense_hessian, dense_output_hessian
from gdscope.probes.hessian import (
    hessian_operator,
    hessian_topk,
    hessian_trace,
    power_iteration,
    sharpness,
)
from gdscope.probes.output_hessian import output_hessian_norm

F64 = torch.float64

# name -> (factory(dtype), input shape of one example, number of outputs)
MODELS = {
    "mlp_tanh": (
        lambda dt: gs.models.mlp(3, 6, depth=3, activation="tanh", seed=1, dtype=dt),
        (3,),
        1,
    ),
    "mlp_ntk_softplus_2out": (
        lambda dt: gs.models.mlp(
            3,
            5,
            depth=2,
            out_dim=2,
            parameterization="ntk",
            activation="softplus",
            seed=2,
            dtype=dt,
        ),
        (3,),
        2,
    ),
    "mlp_mup_tanh_3out": (
        lambda dt: gs.models.mlp(
            4, 6, depth=3, out_dim=3, parameterization="mup", activation="tanh", seed=3, dtype=dt
        ),
        (4,),
        3,
    ),
    "mlp_meanfield_gelu": (
        lambda dt: gs.models.mlp(
            3, 6, depth=2, parameterization="meanfield", activation="gelu", seed=4, dtype=dt
        ),
        (3,),
        1,
    ),
    "two_layer_softplus": (
        lambda dt: gs.models.two_layer(3, 8, activation="softplus", seed=5, dtype=dt),
        (3,),
        1,
    ),
    "cnn_tanh": (
        lambda dt: gs.models.cnn(1, 4, 2, 2, depth=1, activation="tanh", seed=6, dtype=dt),
        (1, 4, 4),
        2,
    ),
    "lazy_centred_two_layer": (  # α(f − f₀): a frozen copy the probes must not differentiate
        lambda dt: gs.models.wrap_output(
            gs.models.two_layer(3, 8, activation="softplus", seed=7, dtype=dt),
            scale=3.0,
            center=True,
        ),
        (3,),
        1,
    ),
    "mlp_tanh_output_layer": (
        lambda dt: gs.models.wrap_output(
            gs.models.mlp(3, 6, depth=2, parameterization="ntk", seed=8, dtype=dt),
            activation="tanh",
        ),
        (3,),
        1,
    ),
}
LOSSES = ["mse", "cross_entropy"]
CASES = [(m, loss) for m in MODELS for loss in LOSSES]


def _problem(name: str, loss: str, dtype=F64, n: int = 7, seed: int = 0):
    factory, shape, k = MODELS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    if loss == "mse":
        y = torch.randn(n, k, generator=g, dtype=dtype)
    elif k == 1:
        y = torch.randint(0, 2, (n,), generator=g).to(dtype) * 2 - 1
    else:
        y = torch.randint(0, k, (n,), generator=g)
    return factory(dtype), gs.losses.get_loss(loss), (x, y)


@functools.cache
def _dense(name: str, loss: str) -> torch.Tensor:
    """The float64 Hessian of ``_problem(name, loss)``, computed once per session."""
    return dense_hessian(*_problem(name, loss))


def _random_vector(dim: int, seed: int = 1, dtype=F64):
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(("name", "loss"), CASES)
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_hvp_matches_dense_hessian(name, loss, dtype, rtol):
    model, loss_fn, batch = _problem(name, loss, dtype)
    op = hessian_operator(model, loss_fn, batch)
    assert (op.dtype, op.device) == (dtype, torch.device("cpu"))
    dense = _dense(name, loss) if dtype == F64 else dense_hessian(model, loss_fn, batch)
    v = _random_vector(op.dim)
    expected = dense @ v
    scale = float(expected.abs().max())
    assert_close(op.matvec(v), expected, rtol=rtol, atol=rtol * scale, what=f"{name}/{loss} Hv")


@pytest.mark.parametrize(("name", "loss"), CASES[:6])
@pytest.mark.parametrize("cache_chunks", [False, True])
def test_chunked_equals_full_batch(name, loss, cache_chunks):
    model, loss_fn, batch = _problem(name, loss, n=11)
    v = _random_vector(sum(p.numel() for p in params_of(model).values()))
    full = hessian_operator(model, loss_fn, batch).matvec(v)
    chunked = hessian_operator(model, loss_fn, batch, chunk_size=4, cache_chunks=cache_chunks)
    assert_close(chunked.matvec(v), full, rtol=1e-12, atol=1e-14, what="chunked Hv")


@pytest.mark.parametrize(("name", "loss"), CASES[::3])
def test_double_backward_equals_forward_over_reverse(name, loss):
    model, loss_fn, batch = _problem(name, loss)
    params = params_of(model)
    v = {n: torch.randn(p.shape, dtype=F64) for n, p in params.items()}
    expected = flatten(hvp(model, params, loss_fn, batch, v))
    op = hessian_operator(model, loss_fn, batch)
    assert_close(op.matvec(flatten(v)), expected, rtol=1e-11, atol=1e-13, what="Hv")


def test_matvec_keeps_the_callers_dtype_and_checks_size():
    model, loss_fn, batch = _problem("mlp_tanh", "mse", torch.float32)
    op = hessian_operator(model, loss_fn, batch)
    assert op.matvec(_random_vector(op.dim)).dtype == F64
    with pytest.raises(ValueError, match=f"dim = {op.dim}"):
        op.matvec(torch.zeros(op.dim + 1))


# --- Hessian eigenvalues against the dense oracle ------------------------------------------------


@pytest.mark.parametrize(("name", "loss"), [CASES[0], CASES[3], CASES[9], CASES[10]])
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-8])
@pytest.mark.parametrize("k", [1, 3])
def test_hessian_topk_matches_dense_eigvalsh(name, loss, tol, k):
    model, loss_fn, batch = _problem(name, loss)
    eigs = torch.linalg.eigvalsh(_dense(name, loss))
    res = hessian_topk(model, loss_fn, batch, k, tol=tol)
    assert res.converged
    assert_close(res.values, eigs.flip(0)[:k], rtol=tol, what=f"{name}/{loss} top-{k}")
    if k == 1:
        assert_close(sharpness(model, loss_fn, batch, tol=tol), eigs[-1], rtol=tol)
    assert_close(
        hessian_topk(model, loss_fn, batch, k, tol=tol, which="SA").values, eigs[:k], rtol=tol
    )


def test_sharpness_of_a_quadratic_is_lambda_max_exactly():
    # L(w) = ½ mean_i (x_iᵀw)² = ½ wᵀAw with A = XᵀX/n built from a chosen spectrum
    d = 30
    spectrum = torch.linspace(0.1, 4.0, d, dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=F64))
    x = math.sqrt(d) * torch.diag(spectrum.sqrt()) @ q.T
    model = nn.Linear(d, 1, bias=False, dtype=F64)
    s, vec = sharpness(
        model, gs.losses.mse, (x, torch.zeros(d, 1, dtype=F64)), tol=1e-12, return_vector=True
    )
    assert_close(s, 4.0, rtol=1e-10, what="sharpness of ½wᵀAw")
    assert_close(abs(float(vec @ q[:, -1])), 1.0, rtol=1e-10, what="top eigenvector")


def test_warm_start_needs_far_fewer_iterations():
    # tracking along training: the previous top eigenvector starts the next Lanczos run
    g = torch.Generator().manual_seed(0)
    model = gs.models.mlp(8, 24, depth=3, activation="tanh", seed=0, dtype=F64)
    batch = (torch.randn(40, 8, generator=g, dtype=F64), torch.randn(40, 1, generator=g, dtype=F64))
    _, previous = sharpness(model, gs.losses.mse, batch, tol=1e-3, return_vector=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-4 * torch.randn(p.shape, generator=g, dtype=F64))
    cold = hessian_topk(model, gs.losses.mse, batch, 1, tol=1e-3)
    warm = hessian_topk(model, gs.losses.mse, batch, 1, tol=1e-3, v0=previous)
    assert_close(warm.values, cold.values, rtol=1e-3)
    assert warm.iterations <= cold.iterations // 3, (warm.iterations, cold.iterations)


def test_power_iteration_agrees_with_lanczos():
    model, loss_fn, batch = _problem("mlp_tanh", "mse")
    top = sharpness(model, loss_fn, batch, tol=1e-10)
    value, iters = power_iteration(model, loss_fn, batch, iters=2000, tol=1e-10)
    assert iters < 2000
    assert_close(value, top, rtol=1e-6, what="power iteration")
    value, iters = power_iteration(model, loss_fn, batch, iters=3, tol=1e-3)
    assert iters == 3


@pytest.mark.parametrize(("name", "loss"), [CASES[0], CASES[3]])
def test_hutchinson_trace_within_four_standard_errors(name, loss):
    model, loss_fn, batch = _problem(name, loss)
    estimate, std_error = hessian_trace(model, loss_fn, batch, samples=200)
    exact = float(torch.trace(_dense(name, loss)))
    assert std_error > 0 and abs(estimate - exact) <= 4 * std_error, (estimate, exact, std_error)


@pytest.mark.parametrize(
    "name",
    [
        "mlp_tanh",
        "two_layer_softplus",
        "mlp_meanfield_gelu",
        "lazy_centred_two_layer",
        "mlp_tanh_output_layer",
    ],
)
def test_output_hessian_norm_matches_dense(name):
    model, _, (x, _) = _problem(name, "mse", n=4)
    dense = torch.linalg.eigvalsh(dense_output_hessian(model, x)).abs().amax()
    assert_close(output_hessian_norm(model, x, tol=1e-8), dense, rtol=1e-8, what=name)


def test_centred_output_hessian_is_alpha_times_the_network_s():
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    net = gs.models.two_layer(3, 8, activation="softplus", seed=7, dtype=F64)
    lazy = gs.models.wrap_output(net, scale=3.0, center=True)
    assert_close(
        output_hessian_norm(lazy, x, tol=1e-10),
        3.0 * output_hessian_norm(net, x, tol=1e-10),
        rtol=1e-8,
        what="‖∂²(α(f − f₀))‖ = α‖∂²f‖",
    )


def test_output_hessian_norm_needs_a_scalar_output():
    model, _, (x, _) = _problem("mlp_ntk_softplus_2out", "mse")
    with pytest.raises(ValueError, match="one scalar output"):
        output_hessian_norm(model, x)
    with pytest.raises(ValueError, match="0 examples; pass at least one"):
        output_hessian_norm(model, x[:0])


# --- determinism guard ---------------------------------------------------------------------------


class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1, dtype=F64)

    def forward(self, x):
        return self.linear(x) + torch.randn(x.shape[0], 1, dtype=F64)


RANDOM_MODELS = {
    "dropout": lambda: nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)),
    "batchnorm": lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)),
    "noise_in_forward": _Noisy,
}


@pytest.mark.parametrize("name", list(RANDOM_MODELS))
def test_random_loss_is_refused_with_the_fix(name):
    model = RANDOM_MODELS[name]().to(F64)
    batch = (torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"sharpness needs a deterministic loss.*model\.eval\(\)"):
        sharpness(model, gs.losses.mse, batch)
    if name != "noise_in_forward":
        assert sharpness(model.eval(), gs.losses.mse, batch) > 0


def test_the_refusal_names_the_probe_and_catches_batch_norm_without_running_stats():
    model = RANDOM_MODELS["dropout"]().to(F64)
    batch = (torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"hessian_trace needs a deterministic loss.*Dropout"):
        hessian_trace(model, gs.losses.mse, batch)
    stats_free = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ValueError, match="even in eval mode; construct it with track_running"):
        sharpness(stats_free.to(F64).eval(), gs.losses.mse, batch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    model, loss_fn, (x, y) = _problem("mlp_tanh", "mse", dtype)
    cpu = sharpness(model, loss_fn, (x, y), tol=1e-6)
    value, vec = sharpness(
        model.cuda(), loss_fn, (x.cuda(), y.cuda()), tol=1e-6, return_vector=True
    )
    assert vec.device.type == "cuda"
    assert_close(value, cpu, rtol=1e-5 if dtype == torch.float32 else 1e-10)


def test_tied_weights_hessian_and_gradient_count_every_use():
    """Module-level double backward (what training differentiates) is the reference."""
    from test_ntk import TiedNet

    torch.manual_seed(1)
    model = TiedNet().double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(gs.losses.mse(model(x), y), params, create_graph=True)
    g = torch.cat([t.reshape(-1) for t in grads])
    rows = [torch.autograd.grad(g[i], params, retain_graph=True) for i in range(g.numel())]
    hessian = torch.stack([torch.cat([t.reshape(-1) for t in row]) for row in rows])
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    got = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-12)
    assert_close(got, top, rtol=1e-9, atol=1e-12)
    norm = gs.probes.gradient_norm(model, params_of(model), gs.losses.mse, (x, y))
    assert_close(norm, float(g.detach().norm()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "loss"), CASES[:4])
def test_float32_sharpness_with_its_float32_basis_meets_tol_against_the_dense_hessian(name, loss):
    model, loss_fn, batch = _problem(name, loss, torch.float32)
    top = float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, batch).double())[-1])
    for tol in (1e-3, 1e-5):  # both take the float32 basis (tol ≥ 1e-5)
        assert_close(sharpness(model, loss_fn, batch, tol=tol), top, rtol=tol, what=f"{tol}")


class _WithUnused(nn.Module):
    """A trainable parameter the loss never reads: its Hessian rows and columns are 0."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 4), nn.Linear(4, 1)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def test_a_parameter_the_loss_never_reads_gets_zero_curvature_not_an_error():
    torch.manual_seed(0)
    model = _WithUnused().double()
    batch = (torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 1, dtype=torch.float64))
    dense = dense_hessian(model, gs.losses.mse, batch)
    assert torch.equal(dense[:3], torch.zeros(3, dense.shape[0]))  # its own parameters come first
    top = torch.linalg.eigvalsh(dense)[-1].item()
    assert_close(gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10), top, rtol=1e-8)
    v = torch.randn(dense.shape[0], dtype=torch.float64)
    op = gs.probes.hessian_operator(model, gs.losses.mse, batch)
    assert_close(op.matvec(v), dense @ v, rtol=1e-12, atol=1e-14)
