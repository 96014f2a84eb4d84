"""``plain_stack``: the stacks whose code says what a traced forward would find are not traced,
and every other model is (a hook, an own ``forward``, a shared module, a subclass, a
parametrization or a global hook each send it to the trace)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from _helpers import assert_close
from gdscope.models import mlp
from gdscope.probes import _ntk_structured as st
from gdscope.probes import _ntk_uses as uses
from gdscope.probes.ntk import ntk_gram, ntk_method


def _plain_models(seed: int) -> list[nn.Module]:
    gen = torch.Generator().manual_seed(seed)
    d, w = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
    frozen = nn.Sequential(nn.Linear(d, w), nn.Tanh(), nn.Linear(w, 3, bias=False))
    frozen[0].weight.requires_grad_(False)  # a frozen weight with a trained bias
    return [
        nn.Sequential(
            nn.Linear(d, w), nn.ReLU(), nn.Sequential(nn.Linear(w, w), nn.GELU()), nn.Linear(w, 2)
        ).double(),
        frozen.double(),
        mlp(d_in=d, width=w, depth=4, out_dim=3, seed=seed, dtype=torch.float64),
        mlp(d_in=d, width=w, depth=5, out_dim=1, seed=seed, residual=True, dtype=torch.float64),
        mlp(
            d_in=d,
            width=w,
            depth=3,
            out_dim=2,
            seed=seed,
            parameterization="mup",
            activation="softplus",
            dtype=torch.float64,
        ),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_plain_stack_is_what_its_traced_forward_finds_and_its_gram_is_exact(seed):
    for model in _plain_models(seed):
        x = torch.randn(5, model_width(model), dtype=torch.float64)
        plain = uses.plain_stack(model, x)
        assert plain is not None, model
        traced = uses.traced_forward(model, x[:1])
        assert (plain.problems, plain.input_numel, plain.output_numel) == (
            traced.problems,
            traced.input_numel,
            traced.output_numel,
        )
        assert plain.outputs == model(x[:1]).shape[1]
        assert_close(ntk_gram(model, x), per_example_ntk(model, x), rtol=1e-10, what=str(model))


def per_example_ntk(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J Jᵀ`` from one backward per example and output on the model itself (no copy, so an
    instance ``forward`` closing over its module is differentiated as it runs)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        for a in range(out.numel()):
            grads = torch.autograd.grad(out[a], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for g, p in zip(grads, params, strict=True)
                    ]
                )
            )
    jac = torch.stack(rows)
    return jac @ jac.T


def model_width(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, uses.LINEAR_TYPES)).in_features


class OwnForward(nn.Linear):
    """A subclass whose forward reads its weight twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) + F.linear(x, self.weight)


class _Positive(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.exp()


def _hooked() -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    net[2].register_forward_hook(lambda m, i, o: o + m.weight.sum())  # reads the weight again
    return net


def _instance_forward() -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    lin = net[0]
    lin.forward = lambda x: F.linear(x, lin.weight) * lin.weight.sum()  # type: ignore[method-assign]
    return net


def _shared_module() -> nn.Module:
    lin = nn.Linear(4, 4)
    return nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(4, 1)).double()


def _parametrized() -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    parametrize.register_parametrization(net[0], "weight", _Positive())
    return net


def _mlp_inside_a_sequential() -> nn.Module:
    """An MLP called by a Sequential: its layers are not the Sequential's steps."""
    inner = mlp(6, 5, depth=3, out_dim=3, seed=0, dtype=torch.float64)
    return nn.Sequential(nn.Linear(4, 6).double(), nn.Tanh(), inner, nn.Linear(3, 1).double())


def _linear_with_a_child() -> nn.Module:
    """A module under a layer is not called by the layer's stock forward, nor by the stack."""
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    net[0].add_module("extra", nn.Linear(6, 6).double())
    return net


@pytest.mark.parametrize(
    "make",
    [
        _hooked,
        _instance_forward,
        _shared_module,
        _parametrized,
        lambda: nn.Sequential(OwnForward(4, 6), nn.Tanh(), nn.Linear(6, 1)).double(),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Hardtanh(), nn.Linear(6, 1)).double(),
        _mlp_inside_a_sequential,
        _linear_with_a_child,
    ],
    ids=[
        "hook",
        "instance-forward",
        "shared-module",
        "parametrized",
        "subclass",
        "hardtanh",
        "nested-mlp",
        "child-of-a-layer",
    ],
)
def test_anything_else_is_traced_and_its_gram_stays_exact(make):
    model = make()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert uses.plain_stack(model, x) is None
    assert_close(ntk_gram(model, x), per_example_ntk(model, x), rtol=1e-10, what=make.__name__)


def test_a_global_hook_or_other_inputs_send_a_plain_stack_to_the_trace():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert uses.plain_stack(model, x) is not None
    assert uses.plain_stack(model, x.unsqueeze(1)) is None  # 3-D inputs
    assert uses.plain_stack(model, torch.randn(5, 3, dtype=torch.float64)) is None  # wrong width
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert uses.plain_stack(model, x) is None
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="rejected inputs"):  # the trace's error, as before
        ntk_gram(model, torch.randn(5, 3, dtype=torch.float64))
    assert ntk_method(model, x) == "structured"
    assert ntk_method(model, x, method="jacobian") == "jacobian"


@pytest.mark.parametrize("middle", [[nn.ReLU()], []], ids=["relu", "none"])
def test_layers_whose_widths_do_not_chain_are_the_models_error_not_a_gram(middle):
    """The written-out pass skips the readout's forward; a readout wider than its input must
    still be refused (else ``H Hᵀ`` of the wrong width would give a Gram)."""
    model = nn.Sequential(nn.Linear(3, 5), *middle, nn.Linear(4, 1)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    assert uses.plain_stack(model, x) is None
    with pytest.raises(ValueError, match="rejected inputs"):
        ntk_gram(model, x)


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_features_taken_at_the_outputs_equal_the_zero_leaf_ones(seed):
    """``module_features(plain=True)`` takes ``Δ`` at each layer's output (no zero leaf): the
    same bits as the zero-leaf route, and in-place activations keep the zero leaf (an in-place
    ReLU overwrites the output that ``Δ`` would be taken at), so their Gram stays exact."""
    for model in _plain_models(seed):
        x = torch.randn(6, model_width(model), dtype=torch.float64)
        out_direct, direct = st.module_features(model, x, plain=True)
        out_leaf, leaf = st.module_features(model, x, plain=False)
        assert torch.equal(out_direct, out_leaf)
        for a, b in zip(direct, leaf, strict=True):
            assert torch.equal(a.deltas, b.deltas)
            assert (a.inputs is None and b.inputs is None) or torch.equal(a.inputs, b.inputs)
    in_place = nn.Sequential(
        nn.Linear(4, 6),
        nn.ReLU(inplace=True),
        nn.Linear(6, 5),
        nn.SiLU(inplace=True),
        nn.Linear(5, 2),
    ).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    assert uses.plain_stack(in_place, x) is not None
    assert_close(ntk_gram(in_place, x), per_example_ntk(in_place, x), rtol=1e-10, what="in place")
