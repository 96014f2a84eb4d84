"""The Krylov basis's measured orthogonality, its kept storage, and products written into ``out``."""

import pytest
import torch

import gdscope as gs
from gdscope.probes import _krylov
from gdscope.probes._krylov import KrylovBasis, lanczos_step, release_spare


def _symmetric(n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return ((a + a.T) / 2).to(dtype)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_float32_basis_is_orthogonal_within_what_it_measured(seed):
    a = _symmetric(300, seed, torch.float32)
    basis = KrylovBasis(300, "cpu", capacity=8, dtype=torch.float32, max_steps=60)
    start = torch.randn(300, generator=torch.Generator().manual_seed(seed))
    basis.append(start / start.norm())
    beta = 0.0
    for _ in range(59):
        _, beta = lanczos_step(lambda v: a @ v, basis, beta)
        basis.append_divided(basis.work, beta)
    q = basis.matrix().double()
    gram = q.T @ q
    off = (gram - torch.eye(gram.shape[0], dtype=torch.float64)).abs().max().item()
    threshold = (torch.finfo(torch.float32).eps / 2 / 60) ** 0.5
    assert basis.orthogonality <= threshold
    assert off <= basis.orthogonality + 1e-5  # float32 rounding of the removed components
    basis.release()


def test_a_float64_basis_never_skips():
    a = _symmetric(120, 3, torch.float64)
    res = gs.probes.lanczos_topk(lambda v: a @ v, 120, 3, tol=1e-12)
    exact = torch.linalg.eigvalsh(a).flip(0)[:3]
    torch.testing.assert_close(res.values, exact, rtol=1e-10, atol=0)
    assert res.converged


def test_the_basis_storage_is_kept_for_the_next_run_and_can_be_freed():
    release_spare()
    a = _symmetric(50, 4, torch.float64)
    gs.probes.lanczos_topk(lambda v: a @ v, 50, 1)
    kept = _krylov._spare[(torch.device("cpu"), torch.float64)]
    basis = KrylovBasis(50, "cpu", capacity=10)
    assert basis.append_slot().data_ptr() == kept.data_ptr()  # the first row of the kept storage
    basis.release()
    gs.probes.release_spare()
    assert not _krylov._spare


def test_a_product_written_into_out_equals_a_fresh_one():
    x, y = gs.data.sphere(n=12, d=4, seed=0, dtype=torch.float64)
    net = gs.models.mlp(4, 8, depth=2, seed=0, dtype=torch.float64)
    op = gs.probes.hessian_operator(net, gs.losses.mse, (x, y))
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = torch.empty(op.dim, dtype=torch.float64)
    assert op.matvec(v, out=out) is out
    torch.testing.assert_close(out, op.matvec(v), rtol=0, atol=0)
    buffered = op.buffered_matvec()
    torch.testing.assert_close(buffered(v), op.matvec(v), rtol=0, atol=0)
    with pytest.raises(ValueError, match="out must be"):
        op.matvec(v, out=torch.empty(op.dim, dtype=torch.float32))
