"""The sharpness on the first layer's data span (gdscope.probes._data_span) against dense Hessians.

On ``n < d/2`` examples a plain stack's first-layer weight enters the loss only through the
inputs' row span, so ``sharpness`` works on ``r = n`` input coordinates. The value and the
eigenvector returned must be those of the full float64 Hessian; the path must be taken exactly
where the identity holds and nowhere else.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdscope as gs
from gdscope.probes import _data_span
from gdscope.probes._data_span import data_span
from gdscope.probes._hessian_build import span_operator
from gdscope.probes._reference import dense_hessian, dense_ntk
from gdscope.probes._reference_extra import dense_ggn
from gdscope.probes._subset import select_params


def _flatten_tanh(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(24, 7), nn.Tanh(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(7 - 2, 3)
    ).double()


def _relu_stack(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 9), nn.ReLU(), nn.Linear(9, 3)).double()


def _mup_mlp(seed: int) -> nn.Module:
    return gs.models.mlp(24, 8, depth=3, out_dim=3, parameterization="mup", seed=seed).double()


MODELS = {"flatten-tanh": _flatten_tanh, "relu": _relu_stack, "mlp-mup": _mup_mlp}


def _batch(model_name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 2, 3, 4) if model_name == "flatten-tanh" else (n, 24)
    return torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(
        n, 3, generator=gen, dtype=torch.float64
    )


def _full_dim(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_sharpness_on_the_span_is_the_full_hessians_top_pair(name, seed):
    model = MODELS[name](seed)
    batch = _batch(name, 7, seed)
    assert data_span(model, batch[0], select_params(model, None), tol=1e-10) is not None
    dense = dense_hessian(model, gs.losses.mse, batch)
    top = float(torch.linalg.eigvalsh(dense)[-1])
    value, vector = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10, return_vector=True)
    assert vector.shape == (_full_dim(model),)
    assert abs(value - top) <= 1e-9 * top
    assert abs(float(torch.linalg.vector_norm(vector)) - 1.0) <= 1e-12
    residual = dense @ vector.cpu() - value * vector.cpu()
    assert float(torch.linalg.vector_norm(residual)) <= 1e-8 * top


def test_warm_start_from_the_full_vector_of_a_previous_call():
    model = _flatten_tanh(3)
    batch = _batch("flatten-tanh", 6, 3)
    _, vector = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10, return_vector=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    top = float(torch.linalg.eigvalsh(dense_hessian(model, gs.losses.mse, batch))[-1])
    value = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10, v0=vector)
    assert abs(value - top) <= 1e-9 * top


def test_a_concave_loss_has_sharpness_zero_on_the_null_space():
    """``-MSE`` of one linear layer without bias: the reduced Hessian ``−x̃ᵀx̃/n ⊗ I`` is negative
    definite, the full one has ``(d − n)·m`` zero eigenvalues: ``λ_max = 0``, on the null space."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3, bias=False)).double()
    batch = _batch("flatten-tanh", 5, 0)

    def concave(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -gs.losses.mse(out, y)

    dense = dense_hessian(model, concave, batch)
    assert abs(float(torch.linalg.eigvalsh(dense)[-1])) <= 1e-12
    value, vector = gs.probes.sharpness(model, concave, batch, return_vector=True)
    assert value == 0.0
    assert float(torch.linalg.vector_norm(dense @ vector)) <= 1e-12
    assert abs(float(torch.linalg.vector_norm(vector)) - 1.0) <= 1e-12


class _ReadsInputTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(24, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.first(x))) + x[:, :3]


def _span_or_none(model, x, params=None, tol=1e-3):
    return data_span(model, x, select_params(model, params), tol)


def test_the_span_is_taken_only_where_the_identity_holds():
    x = torch.randn(5, 24, dtype=torch.float64)
    assert _span_or_none(_relu_stack(0), x) is not None
    assert (
        _span_or_none(_relu_stack(0), torch.randn(13, 24, dtype=torch.float64)) is None
    )  # n > d/2
    assert _span_or_none(_relu_stack(0), x, params="2") is None  # the first layer not selected
    assert _span_or_none(_ReadsInputTwice().double(), x) is None  # not a plain stack
    frozen = _relu_stack(0)
    frozen[0].weight.requires_grad_(False)
    assert _span_or_none(frozen, x) is None
    later_flatten = nn.Sequential(nn.Flatten(2), nn.Flatten(), nn.Linear(24, 3)).double()
    assert _span_or_none(later_flatten, x.reshape(5, 2, 12)) is None  # Flatten(2) not stock
    hooked = _relu_stack(0)
    hooked[0].register_forward_hook(lambda m, a, out: F.relu(out))
    assert _span_or_none(hooked, x) is None
    model32 = _relu_stack(0).float()
    assert _span_or_none(model32, x.float(), tol=1e-3) is not None
    assert _span_or_none(model32, x.float(), tol=1e-6) is None  # float32 Q too coarse for it


def test_the_basis_is_reused_for_the_same_inputs_and_redone_when_they_change(monkeypatch):
    model = _relu_stack(1)
    x, y = _batch("relu", 6, 1)
    calls = []
    real_qr = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda *a, **k: calls.append(1) or real_qr(*a, **k))
    gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    assert len(calls) == 1
    x.mul_(2.0)  # in place: the old basis still spans, but the cache must not trust it
    value = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    assert len(calls) == 2
    top = float(torch.linalg.eigvalsh(dense_hessian(model, gs.losses.mse, (x, y)))[-1])
    assert abs(value - top) <= 1e-9 * top
    assert torch.equal(_data_span._LAST[0][0], x)  # a copy of the inputs, not the tensor


def test_float32_sharpness_on_the_span_meets_tol_against_the_float64_hessian():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(10, 3, 4, 4)
    y = torch.randn(10, 3)
    assert _span_or_none(model, x) is not None
    top = float(torch.linalg.eigvalsh(dense_hessian(model, gs.losses.mse, (x, y)))[-1])
    value, vector = gs.probes.sharpness(model, gs.losses.mse, (x, y), return_vector=True)
    assert abs(value - top) <= 1e-3 * top
    assert vector.dtype == torch.float64 and vector.shape == (_full_dim(model),)


def _dense_top(model, loss_fn, batch) -> float:
    return float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, batch))[-1])


def _xy(n: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    return x, torch.randn(n, 1, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(
    "before",
    [
        [nn.Tanh()],
        [nn.ReLU()],
        [nn.Flatten(), nn.Softplus()],
        [nn.Sequential(nn.Sequential(nn.SiLU()))],
    ],
    ids=["tanh", "relu", "flatten-softplus", "nested-silu"],
)
def test_an_activation_before_the_first_layer_keeps_every_coordinate(before):
    """``tanh(x)`` is not in the row span of ``x``: such a stack must not be reduced."""
    torch.manual_seed(1)
    model = nn.Sequential(*before, nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    batch = _xy(4, 12)
    assert _span_or_none(model, batch[0], tol=1e-10) is None
    value = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10)
    top = _dense_top(model, gs.losses.mse, batch)
    assert abs(value - top) <= 1e-9 * top


def test_a_leading_identity_is_still_reduced():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Identity(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    assert _span_or_none(model, _xy(4, 12)[0]) is not None


def test_inputs_that_are_not_2d_need_a_leading_flatten():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    x, y = _xy(4, 1, 12)  # the model keeps the middle axis: outputs (4, 1, 1)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out.reshape(target.shape) - target).square().mean()

    assert _span_or_none(model, x) is None
    mlp = gs.models.mlp(12, 6, depth=2, out_dim=1, seed=0).double()
    assert _span_or_none(mlp, x) is None
    value = gs.probes.sharpness(model, loss, (x, y), tol=1e-10)
    top = _dense_top(model, loss, (x, y))
    assert abs(value - top) <= 1e-9 * top


def test_hooks_on_the_root_of_a_flatten_first_stack_are_seen():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    batch = _xy(4, 3, 4)
    assert _span_or_none(model, batch[0]) is not None
    model.register_forward_pre_hook(lambda module, args: (args[0] + 1.0,))
    assert _span_or_none(model, batch[0]) is None
    value = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10)
    top = _dense_top(model, gs.losses.mse, batch)
    assert abs(value - top) <= 1e-9 * top


def test_a_first_weight_tied_to_a_later_layer_is_not_a_plain_stack():
    """Tied weights add cross terms no layer sees alone: sharpness and NTK take the general path."""
    torch.manual_seed(4)
    first, later = nn.Linear(12, 12), nn.Linear(12, 12)
    later.weight = first.weight
    model = nn.Sequential(first, nn.Tanh(), later, nn.Tanh(), nn.Linear(12, 1)).double()
    batch = _xy(4, 12)
    assert _span_or_none(model, batch[0]) is None
    value = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10)
    top = _dense_top(model, gs.losses.mse, batch)
    assert abs(value - top) <= 1e-9 * top
    assert gs.probes.ntk_method(model, batch[0]) == "jacobian"
    gram = gs.probes.ntk_gram(model, batch[0])
    assert torch.allclose(gram, dense_ntk(model, batch[0]), rtol=0, atol=1e-12)


def test_inputs_changed_behind_autograd_s_back_are_not_served_a_stale_basis():
    model = _relu_stack(5)
    x, y = _batch("relu", 6, 5)
    gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    x.data.mul_(2.0)  # no version bump
    x.numpy()[:, :3] = 0.5  # nor here
    value = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    top = _dense_top(model, gs.losses.mse, (x, y))
    assert abs(value - top) <= 1e-9 * top
    gs.probes.release_spare()
    assert not _data_span._LAST


def test_a_warm_start_in_the_null_space_starts_afresh():
    """A dead input coordinate: ``Q``'s row is zero, so ``v0 = e_j`` reduces to nothing."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3, bias=False)).double()
    x, y = _batch("flatten-tanh", 5, 6)
    x[:, -1] = 0.0
    batch = (x, y)
    v0 = torch.zeros(_full_dim(model), dtype=torch.float64)
    v0[23] = 1.0
    value = gs.probes.sharpness(model, gs.losses.mse, batch, tol=1e-10, v0=v0)
    top = _dense_top(model, gs.losses.mse, batch)
    assert abs(value - top) <= 1e-9 * top


def test_a_warm_start_of_the_wrong_size_names_the_full_size():
    model = _relu_stack(7)
    batch = _batch("relu", 5, 7)
    full = _full_dim(model)
    for size in (full - 1, full + 1):
        with pytest.raises(ValueError, match=f"v0 must have {full} entries"):
            gs.probes.sharpness(model, gs.losses.mse, batch, v0=torch.ones(size))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_ggn_sharpness_on_the_span_is_the_full_gauss_newton_s(name, loss):
    model = MODELS[name](2)
    x, y = _batch(name, 7, 2)
    if loss == "cross_entropy":
        y = torch.arange(7) % 3
    loss_fn = getattr(gs.losses, loss)
    assert _span_or_none(model, x, tol=1e-10) is not None
    dense = dense_ggn(model, loss_fn, (x, y))
    top = float(torch.linalg.eigvalsh(dense)[-1])
    value, vector = gs.probes.ggn_sharpness(model, loss_fn, (x, y), tol=1e-10, return_vector=True)
    assert vector.shape == (_full_dim(model),)
    assert abs(value - top) <= 1e-9 * top
    residual = dense @ vector.cpu() - value * vector.cpu()
    assert float(torch.linalg.vector_norm(residual)) <= 1e-8 * top
    warm = gs.probes.ggn_sharpness(model, loss_fn, (x, y), tol=1e-10, v0=vector)
    assert abs(warm - top) <= 1e-9 * top


def test_trace_estimators_on_the_span_estimate_the_full_trace():
    """``tr ∇²L = tr ∇²L̃``: Hutch++ with a sketch as large as the reduced Hessian is exact, and
    Hutchinson's estimate lies within four standard errors."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x, y = _xy(4, 2, 12)
    dense = dense_hessian(model, gs.losses.mse, (x, y))
    exact = float(dense.trace())
    op = span_operator(model, gs.losses.mse, (x, y), None, None, "test")[0]
    assert op.dim == 3 * 4 + 3 + 3 + 1 < _full_dim(model)  # W₁ has n = 4 columns, not 24
    sketched = gs.probes.hessian_trace_hutchpp(model, gs.losses.mse, (x, y), probes=3 * op.dim)
    assert abs(sketched - exact) <= 1e-10 * abs(exact)
    estimate, error = gs.probes.hessian_trace(model, gs.losses.mse, (x, y), samples=400)
    assert abs(estimate - exact) <= 4 * error
    block = gs.probes.hessian_trace_hutchpp(model, gs.losses.mse, (x, y), probes=3 * 15, params="1")
    first_layer = float(dense[:75, :75].trace())  # 1.weight (72) and 1.bias (3) come first
    assert abs(block - first_layer) <= 1e-10 * abs(first_layer)


def test_params_given_as_a_generator_are_read_once():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(20, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    dense = dense_hessian(model, gs.losses.mse, (x, y))
    later = float(dense[-21:, -21:].trace())  # 2.weight (18) and 2.bias (3) come last
    sketched = gs.probes.hessian_trace_hutchpp(
        model, gs.losses.mse, (x, y), probes=63, params=(p for p in ["2"])
    )
    assert abs(sketched - later) <= 1e-10 * abs(later)
    first = float(torch.linalg.eigvalsh(dense[:126, :126])[-1])  # 0.weight and 0.bias
    value = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10, params=(p for p in ["0"]))
    assert abs(value - first) <= 1e-9 * first


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(24, 3), nn.Linear(24, 3)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.a(x[0])) + self.b(x[1])


def test_inputs_that_are_not_a_tensor_are_not_a_span():
    model = _TwoInputs().double()
    gen = torch.Generator().manual_seed(10)
    x = tuple(torch.randn(5, 24, generator=gen, dtype=torch.float64) for _ in range(2))
    y = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    assert data_span(model, x, select_params(model, None), 1e-3) is None  # type: ignore[arg-type]
    assert gs.probes.ggn_sharpness(model, gs.losses.mse, (x, y)) > 0


def test_the_cache_is_read_once_per_call(monkeypatch):
    """Another thread may replace the entry between the check and the read: both must be one."""
    x = torch.randn(5, 24, dtype=torch.float64)
    other = torch.randn(5, 24, dtype=torch.float64)
    gs.probes.release_spare()
    q, _ = _data_span._row_basis(x)
    real_equal = _data_span._equal

    def equal_then_replaced(kept, flat):
        same = real_equal(kept, flat)
        _data_span._LAST[:] = [(other.clone(), *torch.linalg.qr(other.T, mode="reduced"))]
        return same

    monkeypatch.setattr(_data_span, "_equal", equal_then_replaced)
    again, _ = _data_span._row_basis(x)
    assert torch.equal(again, q)


@pytest.mark.parametrize(
    ("model_dtype", "x_dtype"), [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
@pytest.mark.parametrize("probe", ["sharpness", "ggn_sharpness"])
def test_inputs_of_another_dtype_get_the_models_refusal_not_the_spans_crash(
    probe, model_dtype, x_dtype
):
    """Review: the span was taken from ``x``'s dtype alone, and its product with a weight of the
    other dtype raised torch's "expected m1 and m2 to have the same dtype" (at tol = 1e-3)."""
    model = nn.Sequential(nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 2)).to(model_dtype)
    x, y = torch.randn(4, 12, dtype=x_dtype), torch.randn(4, 2, dtype=x_dtype)
    fix = rf"pass x\.to\({model_dtype}\)"
    with pytest.raises(ValueError, match=fix):
        getattr(gs.probes, probe)(model, gs.losses.mse, (x, y), tol=1e-3)
