"""The NTK probe against the dense float64 oracle, its two fast paths against each other, and theory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _helpers import assert_close
from gdscope.models import cnn, mlp, resnet, two_layer, wrap_output
from gdscope.probes import _ntk_structured as st
from gdscope.probes import _ntk_uses as uses
from gdscope.probes._reference import dense_ntk
from gdscope.probes.ntk import (
    gram_eigs,
    h_infinity,
    kernel_drift,
    kernel_target_alignment,
    ntk_gram,
    ntk_spectrum,
)

# Tolerances are relative to the largest |entry| of the oracle's Gram.
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


class OddNet(nn.Module):
    """Not made of Linear/Conv only: LayerNorm, a free scale, a gated skip and a shared layer."""

    def __init__(self, d: int = 4, width: int = 6, out: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(d, width)
        self.norm = nn.LayerNorm(width)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, width))
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.norm(self.inp(x))) * self.scale
        return self.out(h * torch.sigmoid(h) + h)


class SharedNet(nn.Module):
    """One Linear called twice (shared weights) and a strided, dilated, padded nn.Conv2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 2, dilation=2, padding="same", bias=False)
        self.shared = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv(x)))).mean(dim=(-2, -1))
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(h)))))


def _mlp(**kw):
    return lambda dtype: mlp(**{"d_in": 4, "width": 12, "depth": 3, "dtype": dtype, **kw})


MLP_CASES = {
    f"{p}-{act}-res{res}-bias{bias}-k{k}": _mlp(
        parameterization=p, activation=act, residual=res, bias=bias, out_dim=k, depth=depth
    )
    for p, act, res, bias, k, depth in [
        ("standard", "relu", False, True, 1, 3),
        ("ntk", "tanh", False, True, 3, 3),
        ("mup", "relu", True, False, 3, 4),
        ("meanfield", "tanh", True, True, 1, 4),
        ("standard", "tanh", True, False, 1, 4),
        ("ntk", "relu", False, False, 3, 3),
        ("mup", "tanh", False, True, 1, 3),
        ("meanfield", "relu", False, False, 3, 3),
    ]
}

IMAGE = (2, 5, 5)
CASES = {
    **{f"mlp-{name}": (f, (4,)) for name, f in MLP_CASES.items()},
    "two_layer": (lambda dt: two_layer(4, 24, seed=1, dtype=dt), (4,)),
    "two_layer-train_outer": (
        lambda dt: two_layer(4, 24, seed=2, train_outer=True, dtype=dt),
        (4,),
    ),
    "two_layer-tanh": (lambda dt: two_layer(4, 24, activation="tanh", dtype=dt), (4,)),
    "cnn": (lambda dt: cnn(2, 5, 4, 3, depth=2, dtype=dt), IMAGE),
    "cnn-even-kernel": (lambda dt: cnn(2, 5, 3, 2, depth=1, kernel_size=2, dtype=dt), IMAGE),
    "resnet-skip": (lambda dt: resnet(2, 5, 3, 2, depth=1, skip=True, dtype=dt), IMAGE),
    "resnet-noskip": (lambda dt: resnet(2, 5, 3, 2, depth=1, skip=False, dtype=dt), IMAGE),
    "cnn-flatten-ntk": (
        lambda dt: cnn(2, 5, 4, 3, depth=2, readout="flatten", parameterization="ntk", dtype=dt),
        IMAGE,
    ),
    "resnet-flatten": (
        lambda dt: resnet(2, 5, 3, 2, depth=1, readout="flatten", dtype=dt),
        IMAGE,
    ),
    "resnet-bn-eval": (
        lambda dt: resnet(2, 5, 3, 2, depth=1, batchnorm=True, dtype=dt).eval(),
        IMAGE,
    ),
    "lazy-centred-mlp": (
        lambda dt: wrap_output(_mlp_ntk(dt), scale=3.0, center=True),
        (4,),
    ),
    "lazy-centred-two_layer": (
        lambda dt: wrap_output(two_layer(4, 24, seed=3, dtype=dt), scale=2.0, center=True),
        (4,),
    ),
    "tanh-output-cnn": (
        lambda dt: wrap_output(
            cnn(2, 5, 4, 1, depth=1, readout="flatten", dtype=dt), activation="tanh"
        ),
        IMAGE,
    ),
    "shared-strided-conv": (lambda dt: SharedNet().to(dt), (2, 6, 6)),
    "odd-generic": (lambda dt: OddNet().to(dt), (4,)),
}


def _mlp_ntk(dtype):
    return mlp(4, 12, depth=3, out_dim=2, parameterization="ntk", activation="tanh", dtype=dtype)


def test_lazy_output_keeps_the_structured_path_and_scales_the_gram_by_alpha_squared():
    net = _mlp_ntk(torch.float64)
    lazy = wrap_output(net, scale=3.0, center=True)
    assert uses.unsupported_modules(lazy) == []  # the frozen copy holds no trainable parameter
    x = _inputs((4,), 6, 0, torch.float64)
    _close(ntk_gram(lazy, x), 9.0 * ntk_gram(net, x), torch.float64, "K_α = α² K")


def _inputs(shape, n, seed, dtype):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _close(actual, expected, dtype, what):
    scale = expected.abs().max().item()
    assert_close(actual, expected, rtol=0.0, atol=TOL[dtype] * scale, what=what)


# the model itself warns that "same" padding with an even kernel copies its input
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("trace", [False, True], ids=["full", "trace"])
@pytest.mark.parametrize("name", list(CASES))
def test_gram_matches_dense_oracle(name, trace, dtype):
    torch.manual_seed(0)  # OddNet / SharedNet use torch's default init
    factory, shape = CASES[name]
    model = factory(dtype)
    x1, x2 = _inputs(shape, 5, 1, dtype), _inputs(shape, 3, 2, dtype)
    for x_b in (None, x2):
        expected = dense_ntk(model, x1, x_b, trace=trace)
        got = ntk_gram(model, x1, x_b, trace=trace)
        assert got.dtype == torch.float64
        _close(got, expected, dtype, f"{name} auto x2={x_b is not None}")
    if not uses.unsupported_modules(model) and dtype == torch.float64 and not trace:
        got = ntk_gram(model, x1, x2, trace=trace, method="jacobian")
        _close(got, dense_ntk(model, x1, x2, trace=trace), dtype, f"{name} jacobian")


@pytest.mark.parametrize("method", ["structured", "jacobian"])
@pytest.mark.parametrize("name", ["mlp-ntk-tanh-resFalse-biasTrue-k3", "cnn", "resnet-skip"])
def test_tiny_memory_budget_tiles_give_the_same_gram(name, method):
    factory, shape = CASES[name]
    model = factory(torch.float64)
    x1, x2 = _inputs(shape, 7, 3, torch.float64), _inputs(shape, 4, 4, torch.float64)
    for x_b in (None, x2):
        for trace in (False, True):
            whole = ntk_gram(model, x1, x_b, trace=trace, method=method)
            tiled = ntk_gram(model, x1, x_b, trace=trace, method=method, memory_budget=1)
            assert_close(tiled, whole, rtol=1e-12, atol=1e-14, what=f"{name} tiled")


def test_structured_and_jacobian_paths_agree_in_float32_at_width():
    model = mlp(d_in=10, width=256, depth=3, out_dim=2, parameterization="ntk", seed=3)
    x = _inputs((10,), 16, 5, torch.float32)
    fast = ntk_gram(model, x, method="structured")
    generic = ntk_gram(model, x, method="jacobian")
    assert_close(fast, generic, rtol=0.0, atol=1e-5 * generic.abs().max().item(), what="paths")


@pytest.mark.parametrize("trace", [False, True])
def test_conv_gram_and_jacobian_routes_agree(trace):
    model = cnn(3, 4, 5, 2, depth=2, dtype=torch.float64)
    x = _inputs((3, 4, 4), 4, 6, torch.float64)
    _, features = st.module_features(model, x)
    for f in features:
        by_gram = st.layer_gram(f, f, trace, 2**20, route="gram")
        by_jac = st.layer_gram(f, f, trace, 2**20, route="jacobian")
        assert_close(by_gram, by_jac, rtol=1e-12, atol=1e-14, what="conv routes")
    _close(ntk_gram(model, x, trace=trace), dense_ntk(model, x, trace=trace), torch.float64, "cnn")


def test_frozen_parameters_and_buffers_are_excluded():
    model = mlp(d_in=4, width=8, depth=3, dtype=torch.float64)
    model.layers[0].weight.requires_grad_(False)
    model.layers[2].bias.requires_grad_(False)
    x = _inputs((4,), 5, 7, torch.float64)
    for method in ("structured", "jacobian"):
        _close(ntk_gram(model, x, method=method), dense_ntk(model, x), torch.float64, method)


def test_output_shapes_and_model_dtype_accumulation():
    model = mlp(d_in=4, width=8, depth=2, out_dim=3)
    x1, x2 = _inputs((4,), 5, 0, torch.float32), _inputs((4,), 2, 1, torch.float32)
    assert ntk_gram(model, x1, x2).shape == (15, 6)
    assert ntk_gram(model, x1, x2, trace=True).shape == (5, 2)
    assert ntk_gram(model, x1, accumulate=None).dtype == torch.float32


ERRORS = {
    "dropout-train": (
        lambda: nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 1)),
        (4,),
        {},
        "deterministic.*model.eval",
    ),
    "batchnorm-train": (
        lambda: resnet(2, 5, 3, 1, depth=1, batchnorm=True),
        IMAGE,
        {},
        "deterministic",
    ),
    "wrong-features": (lambda: mlp(d_in=5, width=8, depth=2), (4,), {}, r"shape \(3, 4\)"),
    "wrong-channels": (lambda: cnn(3, 5, 4, 2), IMAGE, {}, "shape"),
    "structured-unsupported": (OddNet, (4,), {"method": "structured"}, "LayerNorm"),
    "unknown-method": (lambda: mlp(d_in=4, width=8, depth=2), (4,), {"method": "x"}, "method"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_clear_errors(name):
    factory, shape, kwargs, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        ntk_gram(factory(), _inputs(shape, 3, 0, torch.float32), **kwargs)


def test_nondeterministic_model_is_refused_by_name():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"NTK needs a deterministic model: module '1'"):
        ntk_gram(model, torch.randn(3, 4))
    assert ntk_gram(model.eval(), torch.randn(3, 4)).shape == (3, 3)


def test_cross_gram_rejects_mismatched_inputs():
    model = mlp(d_in=4, width=8, depth=2)
    with pytest.raises(ValueError, match=r"x2 must have shape \(n2, 4\)"):
        ntk_gram(model, torch.randn(3, 4), torch.randn(2, 5))


def _psd_gram(n, p, seed):
    a = torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / p


def _check_lanczos(gram):
    exact = torch.linalg.eigvalsh(gram)
    spec = ntk_spectrum(gram, k=2, method="lanczos")
    assert_close(spec.eigenvalues[[0, 1, -2, -1]], exact[[0, 1, -2, -1]], rtol=1e-6, what="eigs")
    assert_close(spec.lambda_min, exact[0].item(), rtol=1e-6, atol=1e-12)
    assert_close(spec.lambda_max, exact[-1].item(), rtol=1e-6, atol=1e-12)
    assert_close(spec.kappa, (exact[-1] / exact[0]).item(), rtol=2e-6, atol=1e-12)


def test_lanczos_extremes_match_eigvalsh():
    _check_lanczos(_psd_gram(400, 500, 0))  # Marchenko–Pastur: κ ≈ 800, dense spectrum edge
    top = gram_eigs(_psd_gram(200, 50, 1), 3, which="largest")
    assert_close(top, torch.linalg.eigvalsh(_psd_gram(200, 50, 1))[-3:], rtol=1e-6, what="top")


@pytest.mark.slow
def test_lanczos_extremes_match_eigvalsh_at_3000():
    _check_lanczos(_psd_gram(3000, 3500, 2))


def test_spectrum_of_model_and_singular_gram():
    model = mlp(d_in=4, width=16, depth=3, dtype=torch.float64)
    x = _inputs((4,), 6, 0, torch.float64)
    spec = ntk_spectrum(model, x)
    exact = torch.linalg.eigvalsh(dense_ntk(model, x))
    assert spec.n == 6
    assert_close(spec.eigenvalues, exact, rtol=1e-9, atol=1e-12 * exact[-1].item(), what="dense")
    singular = ntk_spectrum(torch.ones(3, 3, dtype=torch.float64))
    assert singular.kappa == math.inf
    with pytest.raises(ValueError, match="x is required"):
        ntk_spectrum(model)


def test_two_layer_ntk_approaches_h_infinity_at_rate_one_over_root_width():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    h_inf = h_infinity(x)
    norm = torch.linalg.matrix_norm(h_inf, 2)
    widths = torch.tensor([2.0**p for p in range(9, 16)], dtype=torch.float64)
    slopes, last = [], []
    for seed in range(3):
        errors = torch.stack(
            [
                torch.linalg.matrix_norm(
                    ntk_gram(two_layer(4, int(m), seed=seed, dtype=torch.float64), x) - h_inf, 2
                )
                / norm
                for m in widths
            ]
        )
        lw, le = widths.log(), errors.log()
        slopes.append(((lw - lw.mean()) * (le - le.mean())).sum() / ((lw - lw.mean()) ** 2).sum())
        last.append(errors[-1].item())
    assert max(last) < 0.02
    assert -0.6 <= torch.stack(slopes).median().item() <= -0.4


def test_h_infinity_requires_unit_rows():
    with pytest.raises(ValueError, match="unit-norm"):
        h_infinity(torch.full((3, 2), 2.0))


def test_kernel_drift_by_hand():
    k0 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    kt = torch.tensor([[2.0, 1.0], [1.0, 4.0]])
    assert_close(kernel_drift(kt, k0), 2.0 / math.sqrt(10.0), rtol=1e-15, atol=1e-12)
    assert kernel_drift(k0, k0) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        kernel_drift(k0, torch.eye(3))


def test_kernel_target_alignment_by_hand():
    k = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # ⟨K, yyᵀ⟩ = 2 - 1 - 1 + 3 = 3; ‖K‖_F = √15; ‖y‖² = 2
    assert_close(
        kernel_target_alignment(k, y), 3.0 / (math.sqrt(15.0) * 2.0), rtol=1e-15, atol=1e-12
    )
    assert_close(kernel_target_alignment(torch.outer(y, y), y), 1.0, rtol=1e-15, atol=1e-12)
    big_y = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    # YYᵀ = diag(1, 4): ⟨K, YYᵀ⟩ = 2 + 12 = 14; ‖YYᵀ‖_F = √17
    expected = 14.0 / (math.sqrt(15.0) * math.sqrt(17.0))
    assert_close(kernel_target_alignment(k, big_y), expected, rtol=1e-15, atol=1e-12)
    with pytest.raises(ValueError, match="y must have shape"):
        kernel_target_alignment(k, torch.ones(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gram_on_cuda_with_tf32_matches_float32():
    model = mlp(d_in=32, width=512, depth=3, out_dim=2, device="cuda")
    x = torch.randn(64, 32, device="cuda")
    exact = ntk_gram(model, x)
    fast = ntk_gram(model, x, tf32=True)
    assert fast.device.type == "cuda"
    # TF32 rounds each factor to 10 mantissa bits (u = 2⁻¹¹ ≈ 4.9e-4); on an H200 (2026-12-04)
    # the worst entry was 3.3e-3 of the largest, so the bound is 1e-2 (≈ 20 u) of it
    assert_close(fast, exact, rtol=0.0, atol=1e-2 * exact.abs().max().item(), what="tf32")
    _close(exact.cpu(), dense_ntk(model.cpu(), x.cpu()), torch.float32, "cuda")


class TiedNet(nn.Module):
    """Two Linear modules holding one weight (tied, as in tied embeddings)."""

    def __init__(self, d: int = 4) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))


def _module_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(n·k, P)`` by backward through the module itself, as training differentiates it."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        for j in range(out.numel()):
            grads = torch.autograd.grad(out[j], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("method", ["auto", "jacobian"])
def test_tied_weights_count_every_use(method):
    torch.manual_seed(0)
    model = TiedNet().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert uses.unsupported_modules(model) == ["b (shares a parameter with a)"]
    jac = _module_jacobian(model, x)
    expected = jac @ jac.T  # rows ordered (example, output), as the full Gram
    assert_close(ntk_gram(model, x, method=method), expected, rtol=1e-12)
    assert_close(dense_ntk(model, x), expected, rtol=1e-12)


def test_alignment_takes_the_targets_of_the_full_gram_of_k_outputs():
    """Review: ``kernel_target_alignment(ntk_gram(net, x), y)`` with ``y`` of shape ``(n, k)``
    asked for ``(n·k,)`` or ``(n·k, k)``; the targets are aligned as ``y.reshape(-1)``, the
    order of the Gram's rows ``i·k + a``."""
    net = mlp(d_in=3, width=16, depth=2, out_dim=3, seed=0, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(5, 3, dtype=torch.float64)
    gram = ntk_gram(net, x)
    flat = y.reshape(-1)
    expected = float(flat @ gram @ flat) / float(gram.norm() * flat.norm() ** 2)
    assert abs(kernel_target_alignment(gram, y) - expected) < 1e-12
    with pytest.raises(ValueError, match=r"n·k = 15 for the full Gram of k outputs; got \(4, 3\)"):
        kernel_target_alignment(gram, y[:4])
