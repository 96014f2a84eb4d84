"""The empirical NTK on modules a review found the structured route mishandling: subclasses that
redefine a stock layer's inner methods, a ``TwoLayer`` whose activation trains, a layer run on a
sequence-first view of two tokens, an in-place first module, inference mode, integer inputs to
``ntk_method``, a trained buffer named ``bias``, and repeated eigenvalues in ``gram_eigs``."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.models import mlp
from gdscope.models.layers import ScaledLinear
from gdscope.models.two_layer import TwoLayer
from gdscope.probes import gram_eigs, ntk_gram, ntk_method, ntk_spectrum
from gdscope.probes._reference import dense_ntk

F64 = torch.float64


class _ConvTwice(nn.Conv2d):
    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, 2 * weight, bias)


class _Gained(ScaledLinear):
    def _add_bias(self, y, view):
        return super()._add_bias(3.0 * y, view)


def _conv_net() -> nn.Module:
    return nn.Sequential(_ConvTwice(1, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 9, 1)).double()


def _gained_mlp() -> nn.Module:
    net = mlp(4, 8, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=F64)
    net.layers[1].__class__ = _Gained  # pyright: ignore[reportAttributeAccessIssue]
    return net


@pytest.mark.parametrize(
    ("build", "shape"),
    [(_conv_net, (5, 1, 4, 4)), (_gained_mlp, (5, 4))],
    ids=["conv_forward_override", "add_bias_override"],
)
def test_a_layer_subclass_redefining_its_computation_leaves_the_structured_route(build, shape):
    """Each kept the stock ``forward`` and took the structured route: 0.20 and 0.52 off."""
    torch.manual_seed(0)
    net, x = build(), torch.randn(*shape, dtype=F64)
    assert ntk_method(net, x) == "jacobian"
    assert_close(ntk_gram(net, x), dense_ntk(net, x), rtol=1e-10)


def test_a_subclass_that_only_draws_its_weights_differently_keeps_the_structured_route():
    class Zeroed(nn.Linear):
        def reset_parameters(self):
            super().reset_parameters()
            nn.init.zeros_(self.bias)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), Zeroed(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    x = torch.randn(5, 4, dtype=F64)
    assert ntk_method(net, x) == "structured"
    assert_close(ntk_gram(net, x), dense_ntk(net, x), rtol=1e-10)


def test_a_two_layer_net_whose_activation_trains_is_not_the_closed_form():
    """``TwoLayer(W, a, PReLU())``: the closed form has no term for the PReLU's slope (0.11 off)."""
    torch.manual_seed(0)
    net = TwoLayer(
        torch.randn(8, 3, dtype=F64), torch.randn(8, dtype=F64), nn.PReLU().double(), True
    )
    x = torch.randn(5, 3, dtype=F64)
    assert ntk_method(net, x) == "jacobian"
    assert_close(ntk_gram(net, x), dense_ntk(net, x), rtol=1e-10)


class _SequenceFirst(nn.Module):
    """Runs its layers time-major, as ``nn.MultiheadAttention(batch_first=False)`` expects."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x.transpose(0, 1)))).transpose(0, 1).flatten(1)


@pytest.mark.parametrize("n", [2, 6])
def test_a_sequence_first_view_of_two_tokens_is_not_taken_for_two_examples(n):
    """Two tokens give axis 0 the two rows the trace expects of two copies of one example: the
    structured route read (T, n) as (n, T), 1.66 off at n = 2 (a reshape error at n = 6)."""
    torch.manual_seed(0)
    net, x = _SequenceFirst().double(), torch.randn(n, 2, 4, dtype=F64)
    assert ntk_method(net, x) == "jacobian"
    assert_close(ntk_gram(net, x, memory_budget=4032), dense_ntk(net, x), rtol=1e-10)


def test_an_in_place_first_module_leaves_the_callers_inputs_and_the_gram_right():
    """``LeakyReLU(inplace=True)`` first rewrote the caller's x (by 1.14), and with features
    recomputed per tile pair the Gram came out 2.5 % off."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.LeakyReLU(0.1, inplace=True), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)
    )
    net = net.double()
    x = torch.randn(7, 4, dtype=F64)
    before = x.clone()
    expected = dense_ntk(net, x.clone())  # the reference runs the model on what it is given
    for budget in (None, 1):
        got = ntk_gram(net, x) if budget is None else ntk_gram(net, x, memory_budget=budget)
        assert torch.equal(x, before)
        assert_close(got, expected, rtol=1e-10, what=f"memory_budget={budget}")


@pytest.mark.parametrize("kind", ["residual_mlp", "two_layer"])
def test_the_hooked_and_closed_form_routes_run_in_inference_mode(kind):
    """Both raised ``element 0 of tensors does not require grad`` inside inference mode."""
    torch.manual_seed(0)
    if kind == "residual_mlp":
        net = mlp(4, 8, depth=3, residual=True, seed=0, dtype=F64)
    else:
        net = gs.models.two_layer(4, 16, seed=0, dtype=F64)
    x = torch.randn(5, 4, dtype=F64)
    expected = dense_ntk(net, x)
    with torch.inference_mode():
        inside = ntk_gram(net, x)
        x_inference = x.clone()
    assert_close(inside, expected, rtol=1e-10)
    assert_close(ntk_gram(net, x_inference), expected, rtol=1e-10)


def test_ntk_method_takes_the_integer_inputs_ntk_gram_takes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(10, 4).requires_grad_(False), nn.Flatten(), nn.Linear(12, 1))
    tokens = torch.randint(0, 10, (5, 3))
    assert ntk_method(net, tokens) == ntk_method(net, tokens, method="structured") == "structured"
    net = net.double()
    assert_close(ntk_gram(net, tokens), ntk_gram(net, tokens, method="jacobian"), rtol=1e-10)


def test_a_trained_buffer_named_bias_is_held_fixed():
    """The structured route counted it as the layer's bias (0.37 off); buffers are not trained."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    del layer.bias
    layer.register_buffer("bias", torch.randn(3).requires_grad_(True))
    net = nn.Sequential(layer, nn.Tanh(), nn.Linear(3, 1)).double()
    x = torch.randn(6, 4, dtype=F64)
    assert_close(ntk_gram(net, x), ntk_gram(net, x, method="jacobian"), rtol=1e-10)


def test_repeated_eigenvalues_are_counted_as_often_as_they_occur():
    """The full NTK of a 3-output net with one trained layer is ``(XXᵀ + 1) ⊗ I₃``: each
    eigenvalue three times. Lanczos from one start saw each once: [3.41, 5.68, 6.18, 7.85] for
    [3.41, 3.41, 3.41, 5.68]."""
    torch.manual_seed(0)
    net = mlp(60, 16, depth=1, out_dim=3, seed=0, dtype=F64)
    gram = ntk_gram(net, torch.randn(40, 60, dtype=F64))
    exact = torch.linalg.eigvalsh(gram)
    assert_close(gram_eigs(gram, 4, which="smallest"), exact[:4], rtol=1e-12)
    assert_close(gram_eigs(gram, 4, which="largest"), exact[-4:], rtol=1e-12)
    both = ntk_spectrum(gram, k=4, method="lanczos").eigenvalues
    assert_close(both, torch.cat([exact[:4], exact[-4:]]), rtol=1e-12)
    assert_close(gram_eigs(gram, 1), exact[[0, -1]], rtol=1e-8)


@pytest.fixture
def _precision_restored():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    yield
    matmul.fp32_precision, conv.fp32_precision = saved


def test_tf32_flags_are_read_and_set_through_the_api_the_caller_used(_precision_restored):
    """Once ``fp32_precision`` is set, reading the legacy ``allow_tf32`` raises in torch 2.13:
    the coupled-examples check and ``allow_tf32()`` read it."""
    from gdscope.probes._ntk_tf32 import allow_tf32, check_tf32, tf32_matmuls

    torch.backends.cuda.matmul.fp32_precision = "tf32"
    assert tf32_matmuls()
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    assert not tf32_matmuls()
    with allow_tf32():
        assert tf32_matmuls()
    assert not tf32_matmuls()
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # TF32 on globally: the check's
    seen = []  # reference must still be full float32

    def compute(a, b):
        seen.append(tf32_matmuls())
        return a @ (a if b is None else b).T

    x = torch.randn(4, 3)
    check_tf32(x @ x.T, compute, x, None, 1, True)
    assert seen == [False]
    assert tf32_matmuls()


def test_a_backward_hook_is_refused_in_one_line():
    """``torch.func`` cannot run one: its RuntimeError about ``setup_context`` named nothing."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    net[2].register_full_backward_pre_hook(lambda module, grad: None)
    with pytest.raises(ValueError, match=r"^ntk_gram: module '2' has a backward hook"):
        ntk_gram(net, torch.randn(5, 3, dtype=F64))


def test_a_sequence_first_view_is_caught_when_the_traced_examples_tokens_are_equal():
    """Example 0's two tokens equal (padding): the two traced rows agree, and only three copies
    tell the token axis from the batch (structured, 2.67 off)."""
    torch.manual_seed(0)
    net, x = _SequenceFirst().double(), torch.randn(4, 2, 4, dtype=F64)
    x[0, 1] = x[0, 0]
    assert ntk_method(net, x) == "jacobian"
    assert_close(ntk_gram(net, x), dense_ntk(net, x), rtol=1e-10)


def test_a_no_op_legacy_backward_hook_still_gets_the_per_example_fallback():
    """A model vmap cannot batch (it branches on its data) with a no-op backward hook: the
    per-example fallback worked before the hook refusal and must still."""

    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.a(x))
            return self.b(
                2 * h if bool(h.abs().sum() >= 0) else h
            )  # always true; vmap cannot branch

    torch.manual_seed(0)
    net = Branching().double()
    x = torch.randn(5, 3, dtype=F64)
    expected = dense_ntk(net, x)
    net.b.register_backward_hook(lambda module, grad_in, grad_out: None)
    with warnings.catch_warnings():  # torch deprecates non-full hooks on multi-node forwards
        warnings.simplefilter("ignore", FutureWarning)
        got = ntk_gram(net, x, method="jacobian")
    assert_close(got, expected, rtol=1e-10)
