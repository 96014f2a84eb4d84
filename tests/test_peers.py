"""gdscope's empirical NTK against neural-tangents' ``empirical_ntk_fn``, in float64 on the
same weights (the same network built in stax with the torch weights copied; compatibility layer
for current JAX in tests/_peers.py).

The peers are the ``peers`` extra, which scripts/bootstrap.sh installs; ``importorskip`` only
guards running this file elsewhere. Each comparison is paired with a check that it can fail: a
perturbed weight moves the compared Gram far past the tolerance. The Hessian and μP comparisons
are in tests/test_peers_hessian.py and tests/test_peers_mup.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import _peers as peers
import gdscope as gs
from _peer_nets import F64, NormNet, _randn
from gdscope.models import cnn, mlp, two_layer
from gdscope.probes import ntk_gram

pytest.importorskip("jax")
if importlib.util.find_spec("neural_tangents") is None:  # imported patched, in _peers
    pytest.skip("neural-tangents is not installed (gdscope[peers])", allow_module_level=True)

NTK_RTOL = 1e-10  # relative Frobenius error of a Gram
FUNCTION_RTOL = 1e-12  # the stax network computes the torch one: max |Δf| / max |f|


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the empirical NTK against neural-tangents --------------------------------------------


def _stax_mlp(model: gs.models.MLP, activation: str) -> peers.Stax:
    """gdscope's MLP in stax: σ(L₁x), then σ(L h) or h + β L σ(h) blocks, then the readout."""
    *body, readout = model.layers
    act = peers.elementwise(activation)
    layers = [peers.serial(peers.dense(body[0]), act)]
    for layer in body[1:]:
        if model.residual:
            layers.append(peers.residual(peers.serial(act, peers.dense(layer, model.branch_scale))))
        else:
            layers.append(peers.serial(peers.dense(layer), act))
    return peers.serial(*layers, peers.dense(readout))


def _stax_two_layer(model: gs.models.TwoLayer, train_outer: bool) -> peers.Stax:
    """``m^{-1/2} a·σ(W x)``: ``Dense(m)`` (no bias), ReLU, ``Dense(1)`` in NTK form holding ``a``.

    With the outer layer frozen (a buffer in torch) the stax function closes over ``a``, so that
    the NTK is over ``W`` alone.
    """
    stax = peers.neural_tangents().stax
    inner = stax.Dense(model.width, b_std=None, parameterization="standard")  # x ↦ x Wᵀ
    outer = stax.Dense(1, W_std=1.0, b_std=None, parameterization="ntk")  # h ↦ m^{-1/2} h a
    (_, apply_fn, _), params = peers.serial(
        (inner, (peers.to_jax(model.weight.T), None)),
        peers.elementwise("relu"),
        (outer, (peers.to_jax(model.outer)[:, None], None)),
    )
    if train_outer:
        return (None, apply_fn, None), params
    w, _, a = params

    def frozen_outer(p: Any, x: Any, **kwargs: Any) -> Any:
        return apply_fn((p, (), a), x, **kwargs)

    return (None, frozen_outer, None), w


def _stax_cnn(model: gs.models.CNN, activation: str) -> peers.Stax:
    stax = peers.neural_tangents().stax
    act = peers.elementwise(activation)
    layers = [peers.serial(peers.conv(c), act) for c in model.convs]
    read = (
        (stax.GlobalAvgPool(channel_axis=1), ())
        if model.pooling == "pool"
        else (stax.Flatten(), ())
    )
    return peers.serial(*layers, read, peers.dense(model.readout))


def _stax_norm_net(model: NormNet) -> peers.Stax:
    tanh = peers.elementwise("tanh")
    return peers.serial(
        peers.dense(model.inp),
        peers.layer_norm(model.norm1),
        tanh,
        peers.dense(model.hidden),
        peers.layer_norm(model.norm2),
        tanh,
        peers.dense(model.out),
    )


def _mlp_case(parameterization: str, activation: str, residual: bool) -> Callable[[], tuple]:
    def build():
        model = mlp(
            d_in=5, width=16, depth=4, out_dim=3, activation=activation, seed=1, dtype=F64,
            parameterization=parameterization, residual=residual,
        )  # fmt: skip
        return model, _stax_mlp(model, activation), _randn(6, 5, seed=2)

    return build


def _two_layer_case(train_outer: bool) -> Callable[[], tuple]:
    def build():
        model = two_layer(d_in=5, width=32, seed=3, train_outer=train_outer, dtype=F64)
        x = _randn(7, 5, seed=4)
        return model, _stax_two_layer(model, train_outer), x / x.norm(dim=1, keepdim=True)

    return build


def _cnn_case(readout: str) -> Callable[[], tuple]:
    def build():
        model = cnn(  # 2 input channels, 5×5 images, 4 channels, 3 outputs (positional)
            2, 5, 4, 3, depth=2, activation="tanh", parameterization="ntk", readout=readout,
            seed=5, dtype=F64,
        )  # fmt: skip
        return model, _stax_cnn(model, "tanh"), _randn(4, 2, 5, 5, seed=6)

    return build


def _norm_case() -> tuple:
    model = NormNet()
    return model, _stax_norm_net(model), _randn(6, 5, seed=7)


NTK_CASES = {
    "mlp-ntk-tanh-residual": (_mlp_case("ntk", "tanh", True), ("structured", "jacobian")),
    "mlp-mup-relu": (_mlp_case("mup", "relu", False), ("structured", "jacobian")),
    "mlp-standard-tanh": (_mlp_case("standard", "tanh", False), ("auto",)),
    "two-layer-du": (_two_layer_case(False), ("structured", "jacobian")),
    "two-layer-outer-trained": (_two_layer_case(True), ("auto",)),
    "cnn-pool": (_cnn_case("pool"), ("structured", "jacobian")),
    "cnn-flatten": (_cnn_case("flatten"), ("auto",)),
    "layernorm": (_norm_case, ("auto",)),
}


def _assert_same_function(model: nn.Module, apply_fn: Callable, params: Any, x: Tensor) -> None:
    import jax

    with torch.no_grad():
        ours = model(x)
    theirs = peers.to_torch(jax.jit(apply_fn)(params, peers.to_jax(x)))
    err = float((ours - theirs).abs().max() / ours.abs().max())
    assert ours.shape == theirs.shape and err < FUNCTION_RTOL, f"stax net differs by {err:.2e}"


@pytest.mark.parametrize("name", list(NTK_CASES))
def test_ntk_gram_equals_neural_tangents(name):
    build, methods = NTK_CASES[name]
    model, ((_, apply_fn, _), params), x = build()
    _assert_same_function(model, apply_fn, params, x)
    theirs = peers.nt_ntk(apply_fn, params, x)
    for method in methods:
        err = peers.rel_fro(ntk_gram(model, x, method=method), theirs)
        assert err < NTK_RTOL, (method, err)
    # non-trivial: the blocks of distinct example pairs carry weight
    k = theirs.shape[0] // x.shape[0]
    off = theirs.clone()
    for i in range(x.shape[0]):
        off[i * k : (i + 1) * k, i * k : (i + 1) * k] = 0
    assert off.norm() > 1e-2 * theirs.norm(), (off.norm(), theirs.norm())
    # and it can fail: a 1e-4 relative change of one entry of each weight tensor (buffers too:
    # the NTK of Du et al.'s net is blind to the scale of W, not to the outer weights)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.view(-1)[0] *= 1 + 1e-4
    err = peers.rel_fro(ntk_gram(model, x, method=methods[0]), theirs)
    assert err > 1e3 * NTK_RTOL, err


def test_class_trace_and_cross_gram_equal_neural_tangents():
    model, ((_, apply_fn, _), params), x = _mlp_case("ntk", "tanh", True)()
    x2 = _randn(3, 5, seed=8)
    for trace in (False, True):
        theirs = peers.nt_ntk(apply_fn, params, x, x2, trace=trace)
        for method in ("structured", "jacobian"):
            ours = ntk_gram(model, x, x2, trace=trace, method=method)
            assert peers.rel_fro(ours, theirs) < NTK_RTOL, (method, trace)


def test_neural_tangents_implementations_agree_through_the_compatibility_layer():
    # NT's Jacobian contraction (used above) and its NTK-vector products share no code past
    # the network function: their agreement checks what tests/_peers.py patched
    _, ((_, apply_fn, _), params), x = _norm_case()
    contraction = peers.nt_ntk(apply_fn, params, x, implementation=1)
    products = peers.nt_ntk(apply_fn, params, x, implementation=2)
    assert peers.rel_fro(products, contraction) < 1e-13
