"""gdscope's top-k Hessian eigenvalues against curvlinops + scipy ``eigsh``, hessian-eigenthings,
PyHessian, and its Hessian-vector product against finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import _peers as peers
import gdscope as gs
from _peer_nets import F64, NormNet, _randn
from gdscope.models import mlp
from gdscope.probes import hessian_operator, hessian_topk

curvlinops = pytest.importorskip("curvlinops")


pytestmark = pytest.mark.usefixtures("one_thread")


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


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_sharpness_equals_curvlinops_ggn_eigsh(loss):
    """The Gauss–Newton top eigenvalue had no peer test (only gdscope's own dense oracle)."""
    from scipy.sparse.linalg import eigsh

    model, batch, gs_loss, torch_loss, factor = _hessian_case(loss)
    op = curvlinops.GGNLinearOperator(
        model, torch_loss, list(model.parameters()), [batch], progressbar=False
    ).to_scipy()
    v0 = np.random.default_rng(1).standard_normal(op.shape[0])
    tol = 1e-13
    top = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)  # pyright: ignore[reportArgumentType]
    theirs = factor * float(top[0])
    ours = gs.probes.ggn_sharpness(model, gs_loss, batch, tol=1e-11)
    assert abs(ours - theirs) <= HESSIAN_RTOL * theirs, (ours, theirs)
    hessian_top = gs.probes.sharpness(model, gs_loss, batch, tol=1e-11)
    assert abs(hessian_top - ours) > 1e2 * HESSIAN_RTOL * theirs  # not the Hessian's by accident
