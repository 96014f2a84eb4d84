"""Gauss–Newton sharpness and parameter blocks against dense float64 oracles."""

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from cases import tanh_mlp
from gdscope.probes import _reference as ref
from gdscope.probes import _reference_extra as rx
from gdscope.probes.gauss_newton import ggn_operator, ggn_sharpness
from gdscope.probes.hessian import hessian_operator, sharpness
from gdscope.training import scheduled

F64 = torch.float64


@pytest.mark.parametrize("block", [False, True], ids=["all", "block"])
def test_ggn_sharpness_and_products_match_the_dense_ggn(curvature_case, block):
    net, loss_fn, batch = curvature_case.net, curvature_case.loss_fn, curvature_case.batch
    params = curvature_case.block if block else None
    dense = rx.dense_ggn(net, loss_fn, batch, params)
    value = ggn_sharpness(net, loss_fn, batch, tol=1e-11, params=params)
    assert_close(value, rx.dense_top_eigenvalue(dense), rtol=1e-8, what=curvature_case.name)
    op = ggn_operator(net, loss_fn, batch, params=params)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert_close(op.matvec(v), dense @ v, rtol=1e-9, atol=1e-12 * float(dense.abs().max()))


def test_mse_ggn_sharpness_is_the_top_ntk_eigenvalue_over_n():
    case = tanh_mlp(seed=2, loss="mse")
    net, (x, y) = case.net, case.batch
    gram = gs.probes.ntk_gram(net, x)  # (n k, n k) = J Jᵀ, a different code path
    expected = float(torch.linalg.eigvalsh(gram)[-1]) / x.shape[0]
    assert_close(ggn_sharpness(net, gs.losses.mse, (x, y), tol=1e-11), expected, rtol=1e-8)


def test_ggn_is_the_hessian_for_a_linear_model_under_mse():
    net = gs.models.mlp(5, 1, depth=1, out_dim=2, seed=0, dtype=F64)  # depth 1: f = W x + b
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    v = torch.randn(12, generator=torch.Generator().manual_seed(2), dtype=F64)
    ggn = ggn_operator(net, gs.losses.mse, (x, y)).matvec(v)
    assert_close(ggn, hessian_operator(net, gs.losses.mse, (x, y)).matvec(v), rtol=1e-12)


def test_cross_entropy_ggn_differs_from_the_hessian_by_the_residual_term():
    case = tanh_mlp(seed=4, loss="ce")
    net, batch = case.net, case.batch
    ggn = rx.dense_ggn(net, gs.losses.cross_entropy, batch)
    hessian = ref.dense_hessian(net, gs.losses.cross_entropy, batch)
    assert float((ggn - hessian).abs().max()) > 1e-4  # so the tests above tell them apart
    assert float(torch.linalg.eigvalsh(ggn)[0]) > -1e-12  # PSD: the loss is convex in F


@pytest.mark.parametrize("curvature_case", ["mlp-ce", "cnn-ce"], indirect=True)
def test_hessian_sharpness_of_a_block_matches_the_dense_block(curvature_case):
    net, batch, prefix = curvature_case.net, curvature_case.batch, curvature_case.block
    assert prefix is not None
    names = [n for n, _ in net.named_parameters() if n.startswith(prefix)][:1]  # a full name
    for params in (prefix, names):
        dense = rx.dense_hessian_block(net, gs.losses.cross_entropy, batch, params)
        value = sharpness(net, gs.losses.cross_entropy, batch, tol=1e-11, params=params)
        assert_close(value, rx.dense_top_eigenvalue(dense), rtol=1e-8, what=str(params))


def test_a_block_that_names_nothing_is_refused_with_a_suggestion():
    case = tanh_mlp(seed=0, loss="mse")
    net, batch = case.net, case.batch
    with pytest.raises(ValueError, match=r"'layer\.0' names no trainable.*did you mean"):
        ggn_sharpness(net, gs.losses.mse, batch, params=["layer.0"])
    with pytest.raises(ValueError, match="at least one"):
        ggn_sharpness(net, gs.losses.mse, batch, params=[])


def test_a_prefix_selects_whole_modules_only():
    net = gs.models.mlp(3, 4, depth=2, seed=0, dtype=F64)
    op = ggn_operator(net, gs.losses.mse, (torch.zeros(2, 3, dtype=F64), torch.zeros(2, 1)))
    block = ggn_operator(
        net, gs.losses.mse, (torch.zeros(2, 3, dtype=F64), torch.zeros(2, 1)), params="layers.1"
    )
    assert (op.dim, block.dim) == (3 * 4 + 4 + 4 + 1, 4 + 1)


def test_ggn_sharpness_probe_in_train_matches_dense_and_warm_starts(monkeypatch):
    seen = []
    real = scheduled.ggn_sharpness

    def spying(*args, **kwargs):
        seen.append(kwargs.get("v0"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduled, "ggn_sharpness", spying)
    case = tanh_mlp(seed=6, loss="ce")
    net, (x, y) = case.net, case.batch
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    trace = gs.train(
        net, opt, (x, y), 4, loss_fn=gs.losses.cross_entropy, probes={"ggn_sharpness": 2}
    )
    assert trace.series("ggn_sharpness")[0].tolist() == [0, 2, 4]
    top = rx.dense_top_eigenvalue(rx.dense_ggn(net, gs.losses.cross_entropy, (x, y)))
    assert abs(trace.final("ggn_sharpness") - top) <= 1e-3 * top
    assert seen[0] is None and all(v is not None for v in seen[1:])
