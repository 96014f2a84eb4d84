"""Instruments on modules a review found them wrong on: they leave the model as it was, take
integer inputs, and linearize through ops without a forward-mode rule."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import flatten, params_of
from gdscope.probes._reference import dense_jacobian
from gdscope.probes._second_order import weight_norm_second_derivative_ok

F64 = torch.float64


def _normed_conv():
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(3, affine=True, track_running_stats=True)  # per example: accepted
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), norm, nn.Tanh(), nn.Flatten(), nn.Linear(48, 1)
    ).to(F64)


def _buffers(model):
    return {k: v.clone() for k, v in model.named_buffers()}


@pytest.mark.parametrize(
    "measure",
    [
        lambda m, x: gs.probes.ntk_gram(m, x),
        lambda m, x: gs.probes.ntk_spectrum(m, x),
        lambda m, x: gs.probes.linearization_gap(
            m, params_of(m), {k: v + 0.01 for k, v in params_of(m).items()}, x
        ),
    ],
    ids=["ntk_gram", "ntk_spectrum", "linearization_gap"],
)
def test_training_mode_buffers_are_put_back(measure):
    """InstanceNorm's running mean moved by 0.079; a training-mode spectral_norm's ``u`` too."""
    model, x = _normed_conv(), torch.randn(4, 2, 4, 4, dtype=F64)
    before = _buffers(model)
    measure(model, x)
    for name, value in _buffers(model).items():
        assert torch.equal(value, before[name]), name
    spectral = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)).to(F64)
    parametrizations.spectral_norm(spectral[0])
    before = _buffers(spectral)
    measure(spectral, torch.randn(4, 3, dtype=F64))
    for name, value in _buffers(spectral).items():
        assert torch.equal(value, before[name]), name


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.out = nn.MultiheadAttention(4, 2, batch_first=True), nn.Linear(4, 1)

    def forward(self, x):
        return self.out(self.attn(x, x, x)[0].mean(1))


def _weight_normed():
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    parametrizations.weight_norm(net[0])
    return net


@pytest.mark.parametrize(
    ("make", "shape"),
    [(_Attention, (3, 3, 4)), (_weight_normed, (3, 3))],
    ids=["multihead-attention", "weight-norm"],
)
def test_the_linearization_runs_where_forward_mode_has_no_rule(make, shape):
    """torch.func.jvp raised NotImplementedError; the transpose trick is exact."""
    torch.manual_seed(0)
    model = make().to(F64).eval()
    x = torch.randn(*shape, dtype=F64)
    p0 = {k: v.detach().clone() for k, v in params_of(model).items()}
    pt = {k: v + 1e-3 * torch.randn_like(v) for k, v in p0.items()}
    got = gs.probes.linearized_prediction(model, p0, pt, x)
    with torch.no_grad():
        f0 = model(x).reshape(-1)
    step = flatten({k: pt[k] - p0[k] for k in p0})
    expected = f0 + dense_jacobian(model, x) @ step
    assert_close(got.reshape(-1), expected, rtol=1e-10, atol=1e-12)


def test_the_ntk_of_an_embedding_takes_integer_inputs():
    """Token ids were cast to the parameters' dtype, and the model refused them."""

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.out = nn.Embedding(6, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.out(torch.tanh(self.embed(x)).mean(1))

    torch.manual_seed(0)
    model, x = Tokens().to(F64), torch.tensor([[0, 1, 2], [3, 0, 5], [1, 1, 4]])
    rows = []
    for i in range(3):
        model.zero_grad()
        model(x[i : i + 1]).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))  # pyright: ignore[reportOptionalMemberAccess]
    jacobian = torch.stack(rows)
    assert_close(gs.probes.ntk_gram(model, x), jacobian @ jacobian.T, rtol=1e-12)


def test_an_embedding_with_max_norm_is_refused_and_left_as_it_was():
    """Its forward renormalizes rows of the weight in place: sharpness rewrote 4 rows (1.38)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(6, 3, max_norm=0.5), nn.Flatten(), nn.Linear(6, 1))
    weight = model[0].weight.detach().clone()
    x, y = torch.tensor([[0, 1], [2, 3], [4, 5]]), torch.randn(3, 1)
    with pytest.raises(ValueError, match=r"module '0' \(Embedding\) renormalizes rows"):
        gs.probes.sharpness(model, gs.losses.mse, (x, y))
    with pytest.raises(ValueError, match="max_norm=None"):
        gs.probes.ntk_gram(model, x)
    assert torch.equal(model[0].weight, weight)


def test_the_weight_norm_check_leaves_the_global_random_stream_alone():
    weight_norm_second_derivative_ok.cache_clear()
    state = torch.random.get_rng_state()
    weight_norm_second_derivative_ok("cpu")
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize(
    "measure",
    [
        lambda m, x, y: gs.probes.sharpness(m, gs.losses.mse, (x, y)),
        lambda m, x, y: gs.probes.ggn_sharpness(m, gs.losses.mse, (x, y)),
        lambda m, x, y: gs.probes.hessian_trace(m, gs.losses.mse, (x, y)),
        lambda m, x, y: gs.probes.gradient_norm(m, params_of(m), gs.losses.mse, (x, y)),
    ],
    ids=["sharpness", "ggn_sharpness", "hessian_trace", "gradient_norm"],
)
def test_inputs_of_another_dtype_than_the_model_are_one_line(measure):
    """A float64 model on float32 inputs raised torch's 'mat1 and mat2 must have the same dtype'."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(F64)
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    with pytest.raises(ValueError, match=r"^the inputs are torch.float32 but the model's param"):
        measure(model, x, y)


def test_integer_features_are_cast_where_no_embedding_reads_them():
    """Binary features (a long tensor) into Linear layers: cast as before, not kept as indices."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).to(F64)
    x = torch.randint(0, 2, (6, 4), generator=torch.Generator().manual_seed(0))
    for method in ("auto", "jacobian"):
        assert_close(
            gs.probes.ntk_gram(model, x, method=method), gs.probes.ntk_gram(model, x.to(F64))
        )


def test_a_missing_forward_mode_rule_is_not_taken_for_a_dtype_error():
    """A float64 model that casts its float32 inputs itself, with attention in it."""

    class Casting(_Attention):
        def forward(self, x):
            return super().forward(x.to(F64))

    torch.manual_seed(0)
    model = Casting().to(F64).eval()
    p0 = {k: v.detach().clone() for k, v in params_of(model).items()}
    gap = gs.probes.linearization_gap(model, p0, p0, torch.randn(3, 3, 4))
    assert gap < 1e-15  # θ_t = θ₀: the linear model is the network, to rounding
