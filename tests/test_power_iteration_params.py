"""``power_iteration(params=...)``: power iteration on a diagonal block of the Hessian."""

import torch

from _helpers import assert_close
from gdscope.probes import _reference_extra as rx
from gdscope.probes.hessian import power_iteration


def test_power_iteration_on_a_block_finds_the_blocks_largest_magnitude_eigenvalue(curvature_case):
    net, loss_fn, batch = curvature_case.net, curvature_case.loss_fn, curvature_case.batch
    block = rx.dense_hessian_block(net, loss_fn, batch, curvature_case.block)
    eigenvalues = torch.linalg.eigvalsh(block)
    expected = float(eigenvalues[eigenvalues.abs().argmax()])
    whole = float(torch.linalg.eigvalsh(rx.dense_hessian_block(net, loss_fn, batch)).abs().max())
    assert abs(expected) < (1 - 1e-3) * whole, "the block must differ from the whole Hessian"
    value, steps = power_iteration(
        net, loss_fn, batch, iters=20_000, tol=1e-13, params=curvature_case.block
    )
    assert steps < 20_000
    assert_close(value, expected, rtol=1e-6, what=f"{curvature_case.name} {curvature_case.block}")
