"""gdscope's instruments against the public peer libraries, in float64 on the same weights.

* the empirical NTK against neural-tangents' ``empirical_ntk_fn`` (the same network built in
  stax with the torch weights copied; compatibility layer for current JAX in tests/_peers.py),
* the top-k Hessian eigenvalues against curvlinops' ``HessianLinearOperator`` + scipy ``eigsh``
  (and the top ones of hessian-eigenthings' Lanczos and PyHessian's power iteration),
* the μP coordinate check against microsoft mup's ``get_coord_data``,
* and gdscope's Hessian-vector product on a net with trained LayerNorms against finite
  differences of the gradient (there torch.func's forward-over-reverse, which curvlinops uses,
  is off by a few % in torch 2.13).

The peers are the ``peers`` extra, which scripts/bootstrap.sh installs; ``importorskip`` only
guards running this file elsewhere. Each comparison is paired with a check that it can fail: a
perturbed weight, a shifted step or a distinct spectrum moves the compared numbers far past the
tolerance.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import _peers as peers
import gdscope as gs
from gdscope.models import cnn, mlp, two_layer
from gdscope.probes import hessian_operator, hessian_topk, ntk_gram
from gdscope.probes.coord_hooks import coordinate_check

pytest.importorskip("jax")
if importlib.util.find_spec("neural_tangents") is None:  # imported patched, in _peers
    pytest.skip("neural-tangents is not installed (gdscope[peers])", allow_module_level=True)
curvlinops = pytest.importorskip("curvlinops")
mup = pytest.importorskip("mup")
mup_coord = pytest.importorskip("mup.coord_check")
from gdscope.integrations.mup import mup_model, mup_optimizer  # noqa: E402

F64 = torch.float64
NTK_RTOL = 1e-10  # relative Frobenius error of a Gram
FUNCTION_RTOL = 1e-12  # the stax network computes the torch one: max |Δf| / max |f|


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: threads cost more than they give
    yield
    torch.set_num_threads(threads)


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


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


class NormNet(nn.Module):
    """Two LayerNorms with trained (non-default) affine weights between torch Linear layers, tanh."""

    def __init__(self, d: int = 5, width: int = 10, out: int = 3) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # torch's init draws from the global generator
            torch.manual_seed(9)
            self.inp = nn.Linear(d, width, dtype=F64)
            self.hidden = nn.Linear(width, width, dtype=F64)
            self.out = nn.Linear(width, out, dtype=F64)
        self.norm1 = nn.LayerNorm(width, dtype=F64)
        self.norm2 = nn.LayerNorm(width, eps=1e-3, dtype=F64)
        with torch.no_grad():  # as after training: γ ≠ 1, β ≠ 0
            for i, norm in enumerate((self.norm1, self.norm2)):
                norm.weight.copy_(1 + 0.5 * _randn(width, seed=10 + i))
                norm.bias.copy_(0.3 * _randn(width, seed=20 + i))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.norm1(self.inp(x)))
        return self.out(torch.tanh(self.norm2(self.hidden(h))))  # smooth: finite differences


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


# --- top-k Hessian eigenvalues against curvlinops + scipy eigsh ----------------------------

K = 4
HESSIAN_RTOL = 1e-8


def _hessian_case(loss: str):
    model = mlp(d_in=5, width=12, depth=3, out_dim=3, activation="tanh", seed=11, dtype=F64)
    x = _randn(24, 5, seed=12)
    if loss == "cross_entropy":
        y = torch.randint(0, 3, (24,), generator=torch.Generator().manual_seed(13))
        # the same function: the mean over examples of -log softmax
        return model, (x, y), gs.losses.cross_entropy, nn.CrossEntropyLoss(), 1.0
    y = _randn(24, 3, seed=13)
    # gdscope's mse is ½·mean over examples of the sum over k outputs = (k/2)·MSELoss("mean")
    return model, (x, y), gs.losses.mse, nn.MSELoss(), 3 / 2


def _curvlinops_topk(model: nn.Module, batch, torch_loss: nn.Module, k: int) -> np.ndarray:
    from scipy.sparse.linalg import eigsh

    op = curvlinops.HessianLinearOperator(
        model, torch_loss, list(model.parameters()), [batch], progressbar=False
    ).to_scipy()
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    tol = 1e-13  # scipy's stubs type eigsh's tol as int
    values = eigsh(op, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)  # pyright: ignore[reportArgumentType]
    return np.sort(values)[::-1]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_hessian_topk_equals_curvlinops_eigsh(loss):
    model, batch, gs_loss, torch_loss, factor = _hessian_case(loss)
    ours = hessian_topk(model, gs_loss, batch, K, tol=1e-11)
    theirs = factor * _curvlinops_topk(model, batch, torch_loss, K)
    assert ours.converged
    assert peers.rel_max(ours.values.tolist(), theirs) < HESSIAN_RTOL, (ours.values, theirs)
    # distinct, not tiny: equal values could not be matched in the wrong order or scale
    gaps = np.diff(theirs[::-1]) / theirs[0]
    assert theirs[-1] > 1e-3 * theirs[0] and gaps.min() > 1e-4, theirs
    # a 1 % change of one weight moves λ_max by far more than the tolerance
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] *= 1.01
    moved = gs.probes.sharpness(model, gs_loss, batch, tol=1e-11)
    assert abs(moved - theirs[0]) > 1e2 * HESSIAN_RTOL * theirs[0], (moved, theirs[0])


PYHESSIAN_WARNS = (
    "ignore:Using backward\\(\\) with create_graph=True:UserWarning"  # its loss.backward
)


@pytest.mark.filterwarnings(PYHESSIAN_WARNS)
def test_hessian_eigenthings_lanczos_and_pyhessian_agree():
    hessian_eigenthings = pytest.importorskip("hessian_eigenthings")
    pyhessian = pytest.importorskip("pyhessian")
    model, batch, gs_loss, torch_loss, _ = _hessian_case("cross_entropy")
    ours = hessian_topk(model, gs_loss, batch, K, tol=1e-11).values.tolist()

    op = hessian_eigenthings.HessianOperator(
        model, [batch], hessian_eigenthings.supervised_loss(torch_loss)
    )
    found = hessian_eigenthings.lanczos(
        op, k=K, max_iter=120, which="LA", seed=0, reorthogonalize=True
    )
    assert peers.rel_max(found.eigenvalues.tolist(), ours) < HESSIAN_RTOL

    # PyHessian draws its start in the default dtype, and its `normalization` divides by
    # ‖v‖ + 1e-6: the Rayleigh quotient it returns is λ·‖v‖² = λ/(1 + 1e-6)² (to 1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(F64)
        try:
            top, _ = pyhessian.hessian(model, torch_loss, data=batch, cuda=False).eigenvalues(
                maxIter=1000, tol=1e-13, top_n=1
            )
        finally:
            torch.set_default_dtype(default)
            model.zero_grad(set_to_none=True)
    assert peers.rel_max(top, [ours[0] / (1 + 1e-6) ** 2]) < 1e-9, (top[0], ours[0])


def test_hessian_of_a_trained_layernorm_net_equals_finite_differences():
    # curvlinops (and torch.func.hessian) use vmap over forward-over-reverse, which in torch 2.13
    # is off on LayerNorm with trained γ, β (3.9 % on this product, measured); gdscope's double
    # backward is exact, and this keeps it so.
    model, x = NormNet(), _randn(12, 5, seed=30)
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(31))
    batch, loss = (x, y), gs.losses.cross_entropy
    params = list(model.parameters())
    theta = torch.nn.utils.parameters_to_vector(params).detach()
    v = _randn(theta.numel(), seed=32)
    ours = hessian_operator(model, loss, batch).matvec(v)

    def grad_at(t: Tensor) -> Tensor:
        torch.nn.utils.vector_to_parameters(t, params)
        grads = torch.autograd.grad(loss(model(x), y), params)
        return torch.cat([g.reshape(-1) for g in grads])

    def central(h: float) -> Tensor:
        return (grad_at(theta + h * v) - grad_at(theta - h * v)) / (2 * h)

    h = 1e-4  # measured: 3e-12 from gdscope's product (1e-3: 3e-8, the O(h⁴) term)
    richardson = (4 * central(h / 2) - central(h)) / 3  # error O(h⁴)
    torch.nn.utils.vector_to_parameters(theta, params)
    err = float((ours - richardson).norm() / richardson.norm())
    assert err < 5e-9, err


# --- μP coordinates against microsoft mup's get_coord_data --------------------------------

D_IN, OUT = 8, 4


class MuNet(nn.Module):
    """Two hidden ReLU layers (one activation module, called twice) and mup's readout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, width, dtype=F64)
        self.fc2 = nn.Linear(width, width, dtype=F64)
        self.act = nn.ReLU()
        self.out = mup.MuReadout(width, OUT, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.fc2(self.act(self.fc1(x)))))


MODULES = ["fc1", "act", "fc2", "out", ""]  # "" is the whole model


def _mup_weights(widths: list[int]) -> dict[int, dict[str, Tensor]]:
    states = {}
    with torch.random.fork_rng(devices=[]):
        for width in widths:
            torch.manual_seed(100 + width)
            states[width] = {
                k: v.clone()
                for k, v in mup_model(MuNet, width=width, base_width=16).state_dict().items()
            }
    return states


def _mup_coords(frame) -> dict[tuple[int, int, str], float]:
    """mup's rows as ``(width, step, name) -> l2``: its ``t`` is step ``t − 1``; ``act#k`` by order."""
    coords: dict[tuple[int, int, str], float] = {}
    for row in frame.itertuples():
        key = (int(row.width), int(row.t) - 1, row.module)
        if row.module == "act":
            calls = sum(1 for w, s, m in coords if (w, s) == key[:2] and m.startswith("act#"))
            key = (*key[:2], f"act#{calls}")
        coords[key] = float(row.l2)
    return coords


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.02)])
def test_coordinate_check_equals_mups_get_coord_data(optimizer, lr):
    widths, steps = [16, 32, 64], 3
    states = _mup_weights(widths)

    def build(width: int) -> nn.Module:
        model = mup_model(MuNet, width=width, base_width=16)
        model.load_state_dict(states[width])  # the same weights for both, whatever the seed
        return model

    g = torch.Generator().manual_seed(40)
    data = (
        torch.randn(20, D_IN, generator=g, dtype=F64),
        torch.randint(0, OUT, (20,), generator=g),
    )
    ours = coordinate_check(
        build, widths, data, steps=steps, lr=lr, modules=MODULES,
        optimizer=functools.partial(mup_optimizer, optimizer),
    )  # fmt: skip
    frame = mup_coord.get_coord_data(
        {w: functools.partial(build, w) for w in widths}, [data], optimizer=optimizer, lr=lr,
        mup=True, nsteps=steps + 1, nseeds=1, cuda=False, show_progress=False, lossfn="xent",
        output_fdict={"l2": "l2"}, filter_module_by_name=lambda name: name in MODULES,
    )  # fmt: skip
    theirs = _mup_coords(frame)
    mine = {(r.width, r.step, r.module): r.rms for r in ours.rows}
    names = ["fc1", "act#0", "fc2", "act#1", "out", ""]
    assert mine.keys() == theirs.keys() and len(mine) == len(widths) * (steps + 1) * len(names)
    worst = max(abs(mine[k] - theirs[k]) / theirs[k] for k in mine)
    assert worst < 1e-10, worst
    # the runs trained: every coordinate moves by far more than the tolerance from step to step,
    # so matching mup's t to the wrong step (or a different lr) would fail
    shifted = min(
        abs(mine[(w, s + 1, m)] - theirs[(w, s, m)]) / theirs[(w, s, m)]
        for w in widths
        for s in range(steps)
        for m in names
    )
    assert shifted > 1e3 * 1e-10, shifted  # measured: 3.5e-6 (sgd), 3.6e-3 (adam)
