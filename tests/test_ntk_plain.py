"""The written-out forward and backward of a plain stack (``probes/_ntk_plain.py``) yields the
features autograd's hooks do, on every activation it knows, every placement of activations,
frozen parts and multipliers, and ``ntk_gram`` takes it for plain stacks only."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _helpers import assert_close
from gdscope.models import mlp
from gdscope.probes import _ntk_structured as st
from gdscope.probes import _ntk_uses as uses
from gdscope.probes import ntk as ntk_module
from gdscope.probes._gram import SYRK_MIN_ROWS
from gdscope.probes._ntk_plain import plain_features, plain_gram
from gdscope.probes._ntk_uses import plain_structure
from gdscope.probes.ntk import ntk_gram
from test_ntk_plain_stack import per_example_ntk

ACTIVATIONS = [
    nn.ReLU(),
    nn.ReLU(inplace=True),
    nn.Tanh(),
    nn.Sigmoid(),
    nn.GELU(),
    nn.GELU(approximate="tanh"),
    nn.Softplus(beta=2.0, threshold=1.0),
    nn.SiLU(),
    nn.SiLU(inplace=True),
    nn.Identity(),
]


def _stack(act: nn.Module, k: int, gen: torch.Generator) -> nn.Sequential:
    """Activations before the first layer, after the last, two in a row, nested: each in a
    place where the model itself is differentiable (an in-place one only after a layer)."""
    d, w1, w2 = (int(v) for v in torch.randint(2, 8, (3,), generator=gen))
    fresh = lambda: copy.deepcopy(act)  # noqa: E731
    return nn.Sequential(
        nn.Tanh(),
        nn.Linear(d, w1),
        fresh(),
        nn.Sequential(nn.Linear(w1, w2), fresh(), nn.Sigmoid()),
        nn.Linear(w2, k),
        fresh(),
    ).double()


def _assert_same_features(model: nn.Module, x: torch.Tensor) -> None:
    steps = plain_structure(model).steps
    assert steps is not None
    ours = plain_features(steps, x)
    theirs = st.module_features(model, x, plain=False)[1]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.weight_scale, a.bias_scale) == (b.weight_scale, b.bias_scale)
        assert (a.inputs is None) == (b.inputs is None)
        if a.inputs is not None:
            assert_close(a.inputs, b.inputs, rtol=1e-13, what="inputs")
        assert a.deltas.shape == b.deltas.shape
        scale = float(b.deltas.abs().max())  # entries far below it carry its rounding
        assert_close(a.deltas, b.deltas, rtol=1e-12, atol=1e-14 * scale, what="deltas")


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("k", [1, 3])
def test_written_out_features_equal_autograds_and_the_gram_is_exact(act, k):
    gen = torch.Generator().manual_seed(k)
    model = _stack(act, k, gen)
    x = torch.randn(6, model[1].in_features, dtype=torch.float64, generator=gen)
    before = x.clone()
    _assert_same_features(model, x)
    assert torch.equal(x, before)  # nothing in place on the caller's inputs
    assert_close(ntk_gram(model, x), per_example_ntk(model, x), rtol=1e-10, what=repr(act))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frozen_parts_missing_biases_and_multipliers(seed):
    gen = torch.Generator().manual_seed(seed)
    frozen_first = nn.Sequential(
        nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)
    )
    frozen_first[0].requires_grad_(False)  # the pass stops at the second layer
    weight_only = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3))
    weight_only[2].bias.requires_grad_(False)
    bias_only = nn.Sequential(nn.Linear(4, 6), nn.SiLU(), nn.Linear(6, 1))
    bias_only[0].weight.requires_grad_(False)
    frozen_middle = nn.Sequential(
        nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2)
    )
    frozen_middle[2].requires_grad_(False)
    back_to_back = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
    models = [
        m.double() for m in (frozen_first, weight_only, bias_only, frozen_middle, back_to_back)
    ]
    models += [
        mlp(4, 7, depth=4, out_dim=3, seed=seed, parameterization=p, dtype=torch.float64)
        for p in ("ntk", "mup", "standard")
    ]
    for model in models:
        x = torch.randn(5, 4, dtype=torch.float64, generator=gen)
        _assert_same_features(model, x)
        assert_close(ntk_gram(model, x), per_example_ntk(model, x), rtol=1e-10, what=str(model))
        full = per_example_ntk(model, x)
        k = full.shape[0] // 5
        class_trace = full.reshape(5, k, 5, k).diagonal(dim1=1, dim2=3).sum(-1)
        assert_close(ntk_gram(model, x, trace=True), class_trace, rtol=1e-10, what="trace")


def test_ntk_gram_takes_the_written_out_pass_for_plain_stacks_only(monkeypatch):
    calls = []
    real = st.module_features
    monkeypatch.setattr(st, "module_features", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    x = torch.randn(5, 4, dtype=torch.float64)
    plain = mlp(4, 6, depth=3, out_dim=2, seed=0, dtype=torch.float64)
    ntk_gram(plain, x)
    assert calls == []
    residual = mlp(4, 6, depth=4, out_dim=2, seed=0, residual=True, dtype=torch.float64)
    assert (
        plain_structure(residual).steps is None
    )  # its skips are not written out: autograd's hooks
    assert_close(ntk_gram(residual, x), per_example_ntk(residual, x), rtol=1e-10, what="residual")
    assert calls


def test_float32_features_match_autograds_to_rounding():
    model = mlp(784, 256, depth=4, out_dim=1, seed=0)
    x = torch.randn(64, 784, generator=torch.Generator().manual_seed(0))
    steps = plain_structure(model).steps
    assert steps is not None
    ours = plain_features(steps, x)
    theirs = st.module_features(model, x, plain=True)[1]
    for a, b in zip(ours, theirs, strict=True):
        assert_close(a.deltas, b.deltas, rtol=1e-6, what="float32 deltas")


def test_the_gram_holds_no_graph_and_reads_no_inference_tensor_in_place():
    """A linear layer right below the last one gets ``Δ = W``'s rows: a view of a parameter
    would require grad and drag a graph into the Gram."""
    x = torch.randn(5, 3, dtype=torch.float64)
    back_to_back = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).double()
    for model in (back_to_back, mlp(3, 6, depth=3, out_dim=2, seed=0, activation="identity")):
        model = model.double()
        for trace in (False, True):
            gram = ntk_gram(model, x, trace=trace)
            assert not gram.requires_grad and gram.grad_fn is None
    with torch.inference_mode():
        frozen_x = torch.randn(4, 3, dtype=torch.float64)
    gelu_first = nn.Sequential(nn.GELU(), nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 1)).double()
    assert_close(
        ntk_gram(gelu_first, frozen_x),
        per_example_ntk(gelu_first, frozen_x.clone()),
        rtol=1e-10,
        what="inference-tensor inputs",
    )


def test_only_gdscopes_scaled_layers_have_multipliers_and_only_parameters_train():
    x = torch.randn(5, 3, dtype=torch.float64)
    stray = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    stray[0].multiplier = 3.0  # an attribute nn.Linear's forward never reads
    assert_close(ntk_gram(stray, x), per_example_ntk(stray, x), rtol=1e-10, what="stray")
    buffered = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    weight = buffered[0].weight.detach().clone().requires_grad_(True)
    del buffered[0]._parameters["weight"]
    buffered[0].register_buffer("weight", weight)  # requires grad, but no parameter
    buffered[0].bias.requires_grad_(False)
    assert uses.plain_stack(buffered, x) is None  # traced instead
    assert_close(ntk_gram(buffered, x), per_example_ntk(buffered, x), rtol=1e-10, what="buffer")


@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("k", [1, 3])
def test_the_one_pass_gram_equals_the_features_gram_traced_and_full(act, k):
    """``plain_gram`` (the Gram summed as the signals go) against ``features_gram`` of the
    written-out features, on stacks with an activation after the last layer (``Δ`` no longer
    ``I`` there) and before the first."""
    gen = torch.Generator().manual_seed(10 + k)
    model = _stack(act, k, gen)
    x = torch.randn(7, model[1].in_features, dtype=torch.float64, generator=gen)
    steps = plain_structure(model).steps
    assert steps is not None
    features = plain_features(steps, x)
    for trace in (False, True):
        slow = st.features_gram(features, features, trace, 2**30, torch.float64)
        slow = slow if trace else slow.reshape(7 * k, 7 * k)
        fast = plain_gram(steps, x, trace, torch.float64)
        scale = float(slow.abs().max())  # an entry near 0 is a difference of O(scale) terms
        assert_close(fast, slow, rtol=1e-12, atol=1e-14 * scale, what=f"trace={trace}")


def test_ntk_gram_sums_in_one_pass_below_the_syrk_size_and_tile_by_tile_above(monkeypatch):
    calls = []
    monkeypatch.setattr(ntk_module, "plain_gram", lambda *a: calls.append(1) or plain_gram(*a))
    model = mlp(5, 8, depth=3, out_dim=2, seed=0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for n, one_pass in ((SYRK_MIN_ROWS // 2 - 1, True), (SYRK_MIN_ROWS // 2, False)):
        calls.clear()
        x = torch.randn(n, 5, dtype=torch.float64, generator=gen)
        assert_close(ntk_gram(model, x), per_example_ntk(model, x), rtol=1e-10, what=str(n))
        assert bool(calls) is one_pass
    calls.clear()
    x = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    ntk_gram(model, x, x)  # a cross-Gram: tiles
    assert calls == []


def test_every_path_returns_an_exactly_symmetric_gram():
    """Full ``mm`` products need not round symmetrically; the one-pass sum and the Jacobian
    route symmetrize, the tiled structured path mirrors upper triangles."""
    gen = torch.Generator().manual_seed(4)
    model = nn.Sequential(nn.Linear(30, 200), nn.Tanh(), nn.Linear(200, 2)).double()
    for n in (20, SYRK_MIN_ROWS):  # one pass; tiles
        x = torch.randn(n, 30, dtype=torch.float64, generator=gen)
        for trace in (False, True):
            for method in ("auto", "jacobian"):
                gram = ntk_gram(model, x, trace=trace, method=method)
                assert torch.equal(gram, gram.T), (n, trace, method)


def test_an_unread_trainable_parameter_on_a_frozen_layer_adds_nothing():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    model[2].requires_grad_(False)
    model[2].register_parameter("extra", nn.Parameter(torch.ones(3, dtype=torch.float64)))
    x = torch.randn(3, 4, dtype=torch.float64)
    assert_close(ntk_gram(model, x), ntk_gram(model, x, method="jacobian"), rtol=1e-12)
    model[0].requires_grad_(False)  # only the unread parameter trains: K = 0
    assert torch.equal(ntk_gram(model, x), torch.zeros(3, 3, dtype=torch.float64))


def _unread_only(where: str) -> nn.Module:
    """A model whose one trainable parameter its forward never reads, held by ``where``."""
    if where == "mlp":
        model = mlp(3, 4, depth=3, out_dim=2, seed=0, dtype=torch.float64).requires_grad_(False)
        owner = model
    else:
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        model.requires_grad_(False)
        owner = {"layer": model[2], "activation": model[1], "root": model}[where]
    owner.register_parameter("extra", nn.Parameter(torch.ones(2, dtype=torch.float64)))
    return model


@pytest.mark.parametrize("where", ["layer", "activation", "root", "mlp"])
def test_when_no_trainable_parameter_is_read_every_route_gives_zeros(where):
    """One pass, tiles (``n·k ≥ 96``), a cross-Gram, a trace and ``method="structured"``: K = 0,
    as the Jacobian route says (the tiled routes asserted on an empty feature list)."""
    model = _unread_only(where)
    gen = torch.Generator().manual_seed(0)
    for n, cross, trace in (
        (10, False, False),
        (60, False, False),
        (10, True, False),
        (60, False, True),
    ):
        x = torch.randn(n, 3, dtype=torch.float64, generator=gen)
        x2 = torch.randn(4, 3, dtype=torch.float64, generator=gen) if cross else None
        for method in ("auto", "structured", "jacobian"):
            gram = ntk_gram(model, x, x2, trace=trace, method=method)
            rows = n * (1 if trace else 2)
            cols = (4 if cross else n) * (1 if trace else 2)
            assert gram.shape == (rows, cols), (n, cross, trace, method)
            assert torch.equal(gram, torch.zeros_like(gram)), (n, cross, trace, method)


def test_a_global_module_hook_sends_every_model_to_the_jacobian_route():
    """A global forward hook runs inside each layer's call; the structured identity assumes the
    stock forward alone (a doubling hook left it 0.75 off)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    plain = ntk_gram(model, x)
    handle = nn.modules.module.register_module_forward_hook(
        lambda m, a, out: out * 2.0 if isinstance(m, nn.Linear) else None
    )
    try:
        assert ntk_module.ntk_method(model, x) == "jacobian"
        hooked = ntk_gram(model, x)
        assert_close(hooked, per_example_ntk(model, x), rtol=1e-12, what="hooked")
        assert not torch.allclose(hooked, plain)
        with pytest.raises(ValueError, match="global module hooks"):
            ntk_gram(model, x, method="structured")
    finally:
        handle.remove()


def test_parameters_of_two_dtypes_are_the_models_error_on_every_route():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1).double())
    model[0].requires_grad_(False)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert plain_structure(model) is None
    for method in ("auto", "jacobian"):
        with pytest.raises(ValueError, match="rejected inputs"):
            ntk_gram(model, x, method=method)


def test_a_saturated_tanh_rounds_as_autograd_does():
    """``σ'`` from the output by autograd's own kernel: ``1 − y·y`` written out rounds twice and
    was 6.7e-10 off where ``1 − y ≈ 1e-8``."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1), nn.Tanh()).double()
    with torch.no_grad():
        model[2].bias.fill_(9.0)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert_close(ntk_gram(model, x), ntk_gram(model, x, method="jacobian"), rtol=1e-14)


def test_inside_inference_mode_activations_without_a_written_slope_still_work():
    model = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 2), nn.Softplus()).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    outside = ntk_gram(model, x)
    with torch.inference_mode():
        inside = ntk_gram(model, x)
    assert torch.equal(inside, outside)


def test_the_jacobian_route_leaves_the_callers_inputs_alone_below_an_in_place_first_module():
    model = nn.Sequential(nn.SiLU(inplace=True), nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    x = torch.randn(3, 5, dtype=torch.float64)
    model = model.double()
    before = x.clone()
    jacobian = ntk_gram(model, x, method="jacobian")
    assert torch.equal(x, before)
    assert_close(jacobian, per_example_ntk(model, x.clone()), rtol=1e-10, what="jacobian")
    assert_close(ntk_gram(model, x), jacobian, rtol=1e-10, what="auto")
    assert torch.equal(x, before)
