"""``ntk_gram`` in ``auto`` mode never trusts the structured identity where a parameter is read
outside its own layer (a tied decoder): it falls back to the Jacobian route, and stays structured
on ordinary nets."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gdscope.models import cnn, mlp, resnet, two_layer
from gdscope.probes import _ntk_uses as uses
from gdscope.probes._reference import dense_ntk
from gdscope.probes.ntk import ntk_gram, ntk_method


class Tied(nn.Module):
    """Tied auto-encoder: the decoder reads the encoder's weight, transposed, outside ``enc``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.enc(x)), self.enc.weight.t())


class ParentReads(nn.Module):
    """A skip ``x Wᵀ`` computed in the parent from a layer's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.lin(x)) + x @ self.lin.weight.T)


class Doubled(nn.Linear):
    """A Linear subclass with its own forward: ``y = 2 (x Wᵀ + b)``, an unseen multiplier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


class HookRead(nn.Module):
    """A forward hook on a layer that reads its weight a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(8, 8), nn.Linear(8, 2)
        self.lin.register_forward_hook(lambda m, a, y: y + a[0] @ m.weight.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.lin(x)))


def _rel_err(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


def _x(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kwargs", [{}, {"method": "auto"}], ids=["default", "auto"])
def test_tied_decoder_gram_is_exact_in_auto_mode(kwargs):
    torch.manual_seed(0)
    model = Tied().double()
    x1, x2 = _x(6, 8, 1), _x(3, 8, 2)
    assert uses.unsupported_modules(model) == []  # the module types alone look structured
    for x_b in (None, x2):
        for trace in (False, True):
            got = ntk_gram(model, x1, x_b, trace=trace, **kwargs)
            expected = dense_ntk(model, x1, x_b, trace=trace)
            assert _rel_err(got, expected) <= 1e-10, (x_b is None, trace)


def test_tied_decoder_is_routed_to_jacobian_and_structured_is_refused():
    torch.manual_seed(0)
    model = Tied().double()
    x = _x(4, 8, 3)
    assert ntk_method(model, x) == "jacobian"
    assert ntk_method(model, x, "jacobian") == "jacobian"
    found = uses.uncovered_uses(model, x[:1])
    assert found == ["enc.weight read by t in <root>, outside its own layer"]
    with pytest.raises(ValueError, match=r"enc\.weight read by t"):
        ntk_gram(model, x, method="structured")
    with pytest.raises(ValueError, match="method must be one of"):
        ntk_method(model, x, "fast")


@pytest.mark.parametrize("factory", [ParentReads, lambda: Doubled(8, 2), HookRead])
def test_other_uncovered_reads_fall_back_and_stay_exact(factory):
    torch.manual_seed(0)
    model = factory().double()
    x = _x(5, 8, 4)
    assert ntk_method(model, x) == "jacobian"
    assert _rel_err(ntk_gram(model, x), dense_ntk(model, x)) <= 1e-10


class SequenceFirst(nn.Module):
    """Per-token layers run on a ``(T, n, d)`` view: the examples are on axis 1 inside."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x.transpose(0, 1)))).transpose(0, 1).sum(1)


class FoldedTokens(nn.Module):
    """Tokens folded into the batch: ``(n·T, d)`` rows into the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, d = x.shape
        h = self.b(torch.tanh(self.a(x.reshape(n * tokens, d))))
        return h.reshape(n, tokens).sum(1, keepdim=True)


class ConstantQuery(nn.Module):
    """A layer on a constant ``(1, d)`` query, broadcast onto the batch: it sees no example."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("query", torch.ones(1, 2))
        self.inp, self.q, self.out = nn.Linear(2, 3), nn.Linear(2, 3), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inp(x.mean(1)) + self.q(self.query)))


@pytest.mark.parametrize(
    ("factory", "tokens"),
    [
        (SequenceFirst, 1),
        (SequenceFirst, 3),
        (SequenceFirst, 4),
        (FoldedTokens, 3),
        (FoldedTokens, 4),
        (ConstantQuery, 3),
    ],
)
def test_layers_that_see_the_examples_off_axis_0_take_the_jacobian(factory, tokens):
    """With n = T = 3 the structured Gram was 45 % off (K[0, 0] 15.46 for 11.38), silently;
    with T ≠ n it raised torch's shape error. Traced on one example, a sequence of length 1 and
    a constant broadcast onto the batch looked like the batch (107 % off): two copies do not."""
    torch.manual_seed(0)
    model = factory().double()
    x = torch.randn(3, tokens, 2, dtype=torch.float64)
    assert ntk_method(model, x) == "jacobian"
    assert _rel_err(ntk_gram(model, x), dense_ntk(model, x)) <= 1e-10
    with pytest.raises(ValueError, match="rows on axis 0 for two examples"):
        ntk_gram(model, x, method="structured")


class CalledTwice(nn.Module):
    """One Linear applied twice: each read is inside a call of its own layer (extra positions)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared, self.head = nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


ORDINARY = {
    "mlp-standard-relu": (lambda: mlp(6, 16, depth=3, out_dim=2, dtype=torch.float64), (6,)),
    "mlp-ntk-tanh-residual": (
        lambda: mlp(
            6, 16, depth=4, activation="tanh", parameterization="ntk", residual=True
        ).double(),
        (6,),
    ),
    "mlp-mup-gelu-nobias": (
        lambda: mlp(6, 16, depth=3, activation="gelu", parameterization="mup", bias=False).double(),
        (6,),
    ),
    "sequential": (
        lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double(),
        (6,),
    ),
    "called-twice": (lambda: CalledTwice().double(), (6,)),
    "two_layer": (lambda: two_layer(6, 16, seed=1, dtype=torch.float64), (6,)),
    "cnn": (lambda: cnn(2, 5, 4, 3, depth=2, dtype=torch.float64), (2, 5, 5)),
    "resnet": (lambda: resnet(2, 5, 3, 2, depth=1, skip=True, dtype=torch.float64), (2, 5, 5)),
}


@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_nets_keep_the_structured_path(name):
    torch.manual_seed(0)
    factory, shape = ORDINARY[name]
    model = factory()
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert uses.uncovered_uses(model, x[:1]) == []
    assert ntk_method(model, x) == "structured"
    assert _rel_err(ntk_gram(model, x), dense_ntk(model, x)) <= 1e-10


def test_hook_based_weight_norm_is_not_taken_for_a_plain_linear_layer():
    """``torch.nn.utils.weight_norm`` computes ``weight`` from ``weight_g, weight_v`` in a forward
    pre-hook: the per-layer identity over ``weight`` would be the NTK of the wrong parameters."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates the hook-based form
        normed = torch.nn.utils.weight_norm(nn.Linear(4, 4))
    model = nn.Sequential(normed, nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        normed.weight_g.mul_(2.0)  # away from g = ‖v‖, where both NTKs agree by coincidence
        model(x)
    assert ntk_method(model, x) == "jacobian"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)  # vmap
        gram = ntk_gram(model, x)
    with torch.no_grad():
        model(x)  # a leaf weight again, for the reference's deepcopy
    assert torch.allclose(gram, dense_ntk(model, x), rtol=0, atol=1e-12)
