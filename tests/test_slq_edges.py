"""Edges of the spectral density and trace probes: numerically zero eigenvalues, an outlier far
above the bulk, chunking a loss that is not a mean, blocks given by name or by tensor, and a
batch-level (0-d) target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close
from gdscope.probes._reference import dense_hessian
from gdscope.probes._reference_extra import dense_hessian_block
from gdscope.probes.spectral_density import hessian_spectral_density, spectral_density

F64 = torch.float64


class _Wrapped(nn.Module):
    """The same function as ``net``, hidden from the data-span detection (not a plain stack)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _low_rank_problem(dtype: torch.dtype = F64):
    """4 inputs in 16 dimensions: 91 parameters, most Hessian eigenvalues exactly zero."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 16, generator=g), torch.randn(4, 1, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 5), nn.Tanh(), nn.Linear(5, 1))
    return net.to(dtype), (x.to(dtype), y.to(dtype))


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
def test_zero_eigenvalues_are_counted_at_zero_on_both_paths(dtype):
    """cdf(0) is the fraction of eigenvalues ≤ 0 (the null space included) whether or not the
    data span applies; rounding used to scatter the zeros to either side (0.81 vs 0.45)."""
    net, batch = _low_rank_problem(dtype)
    hessian = dense_hessian(net.double(), gs.losses.mse, tuple(t.double() for t in batch))
    net.to(dtype)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    scale = float(eigenvalues.abs().max())
    nonpositive = float((eigenvalues <= 1e-9 * scale).double().mean())
    negative = float((eigenvalues < -1e-9 * scale).double().mean())
    assert nonpositive - negative > 0.5  # most of the spectrum is the null space
    p = hessian.shape[0]
    rtol = 1e-12 if dtype == F64 else 1e-6  # a float32 span's null mass: 1 − ‖u‖² in float32
    for model in (net, _Wrapped(net)):
        slq = hessian_spectral_density(
            model, gs.losses.mse, batch, steps=p, vectors=torch.eye(p, dtype=F64)
        )
        assert_close(float(slq.cdf(0.0)), nonpositive, rtol=rtol)
        assert_close(float(slq.cdf(-1e-6 * scale)), negative, rtol=rtol)


def test_a_bulk_far_below_an_outlier_is_still_resolved():
    """diag(1e13, 199 values evenly in [0, 1]): the bulk's β ≈ 0.5 is 5e-14 of the scale, far
    above one product's rounding; stopping there put the whole bulk on one node (cdf 0.995)."""
    values = torch.cat([torch.tensor([1e13], dtype=F64), torch.linspace(0, 1, 199, dtype=F64)])
    slq = spectral_density(lambda v: values * v, 200, steps=40, probes=16)
    assert abs(float(slq.cdf(0.5)) - 0.5) < 0.05
    assert_close(slq.moment(1)[0], float(values.mean()), rtol=1e-12)


def test_chunking_a_sum_loss_is_refused_and_a_mean_loss_is_not():
    net, (x, y) = _low_rank_problem()
    x, y = x.repeat(5, 1), y.repeat(5, 1)  # 20 examples

    def summed(out, target):
        return ((out - target) ** 2).sum()

    with pytest.raises(ValueError, match=r"^hessian_trace_hutchpp: chunk_size needs a loss that"):
        gs.probes.hessian_trace_hutchpp(net, summed, (x, y), chunk_size=5)
    with pytest.raises(ValueError, match="chunk_size needs a loss that is a mean"):
        gs.probes.sharpness(_Wrapped(net), summed, (x, y), chunk_size=7)
    exact = float(torch.linalg.eigvalsh(dense_hessian(net, gs.losses.mse, (x, y)))[-1])
    chunked = gs.probes.sharpness(_Wrapped(net), gs.losses.mse, (x, y), chunk_size=7, tol=1e-10)
    assert_close(chunked, exact, rtol=1e-8)


@pytest.mark.parametrize(
    "loss",
    [
        lambda out, y: torch.nn.functional.cross_entropy(out, y, weight=_CLASS_WEIGHTS),
        lambda out, y: torch.nn.functional.cross_entropy(out, y, ignore_index=2),
    ],
    ids=["class_weights", "ignore_index"],
)
def test_chunking_a_weighted_mean_is_refused_even_with_sorted_classes(loss):
    """Class-sorted labels put only class 0 in the first two chunks, where a weighted mean is the
    plain mean: a check there passed, and sharpness came out 26 % low (review)."""
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    ).double()
    x = torch.randn(18, 4, generator=gen, dtype=F64)
    y = torch.arange(3).repeat_interleave(6)  # 0 × 6, 1 × 6, 2 × 6: chunks of 3 are pure
    with pytest.raises(
        ValueError,
        match=r"^sharpness: chunk_size needs a loss that is a mean .* on examples \d+\.\.\d+ ",
    ):
        gs.probes.sharpness(net, loss, (x, y), chunk_size=3)
    exact = float(torch.linalg.eigvalsh(dense_hessian(net, loss, (x, y)))[-1])
    assert_close(gs.probes.sharpness(net, loss, (x, y), tol=1e-10), exact, rtol=1e-8)


_CLASS_WEIGHTS = torch.tensor([1.0, 5.0, 0.2], dtype=F64)


def test_chunk_size_is_a_count():
    """A numpy integer is a chunk size; True (an int to isinstance) and 0 are refused by name."""
    net, (x, y) = _low_rank_problem()
    x, y = x.repeat(5, 1), y.repeat(5, 1)
    exact = float(torch.linalg.eigvalsh(dense_hessian(net, gs.losses.mse, (x, y)))[-1])
    chunked = gs.probes.sharpness(net, gs.losses.mse, (x, y), chunk_size=np.int64(7), tol=1e-10)
    assert_close(chunked, exact, rtol=1e-8)
    for bad in (True, 0, 2.5):
        with pytest.raises(ValueError, match=rf"^chunk_size must be a positive integer, got {bad}"):
            gs.probes.sharpness(net, gs.losses.mse, (x, y), chunk_size=bad)


def test_blocks_by_name_or_by_tensor_in_the_trace_and_the_density():
    net, batch = _low_rank_problem()
    block = dense_hessian_block(net, gs.losses.mse, batch, "2")
    exact = float(block.trace())
    size = block.shape[0]
    by_tensor = [net[2].weight, net[2].bias]
    for params in ("2", by_tensor):
        mean, se = gs.probes.hessian_trace(net, gs.losses.mse, batch, samples=200, params=params)
        assert abs(mean - exact) < 5 * se + 1e-12
        slq = hessian_spectral_density(
            net, gs.losses.mse, batch, steps=size, vectors=torch.eye(size, dtype=F64), params=params
        )
        assert_close(slq.moment(1)[0] * size, exact, rtol=1e-12)
    single = gs.probes.hessian_trace_hutchpp(
        net, gs.losses.mse, batch, probes=3, params=net[2].bias
    )
    assert_close(single, float(block[-1, -1]), rtol=1e-12)
    with pytest.raises(ValueError, match=r"a tensor of shape \(3,\) is not a trainable parameter"):
        gs.probes.hessian_trace(net, gs.losses.mse, batch, params=[torch.zeros(3)])
    with pytest.raises(ValueError, match="params entries must be names or the model's parameters"):
        gs.probes.hessian_trace(net, gs.losses.mse, batch, params=[2])


def test_hessian_topk_of_a_block_is_the_dense_blocks_eigenvalues():
    net, batch = _low_rank_problem()
    block = dense_hessian_block(net, gs.losses.mse, batch, "0.weight")
    expected = torch.linalg.eigvalsh(block)
    both = gs.probes.hessian_topk(
        net, gs.losses.mse, batch, 2, which="BE", tol=1e-10, params=net[0].weight
    )
    assert_close(both.values, torch.cat([expected[:2], expected[-2:]]), rtol=1e-8, atol=1e-12)


def test_a_batch_level_target_is_one_term_and_chunking_it_is_refused():
    """A 0-d target (the loss of the batch's mean output, say) has nothing to split by example."""
    net, (x, _) = _low_rank_problem()
    target = torch.tensor(0.25, dtype=F64)

    def batch_level(out, t):
        return (out.mean() - t) ** 2 + (out**2).mean()

    hessian = dense_hessian(net, batch_level, (x, target))
    exact = torch.linalg.eigvalsh(hessian)
    assert_close(
        gs.probes.sharpness(net, batch_level, (x, target), tol=1e-10), exact[-1], rtol=1e-8
    )
    mean, se = gs.probes.hessian_trace(net, batch_level, (x, target), samples=100)
    assert abs(mean - float(hessian.trace())) < 5 * se + 1e-12
    with pytest.raises(
        ValueError, match=r"^sharpness: chunk_size=2 splits the targets by example, but"
    ):
        gs.probes.sharpness(net, batch_level, (x, target), chunk_size=2)


def test_probes_and_vectors_of_different_counts_are_refused():
    values = torch.linspace(-1, 1, 12, dtype=F64)
    vectors = torch.randn(3, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert spectral_density(lambda v: values * v, 12, steps=4, vectors=vectors).nodes.shape[0] == 3
    assert spectral_density(lambda v: values * v, 12, steps=4).nodes.shape[0] == 8
    with pytest.raises(ValueError, match=r"^probes=8 but vectors holds 3 probe vectors"):
        spectral_density(lambda v: values * v, 12, steps=4, probes=8, vectors=vectors)
    net, batch = _low_rank_problem()
    dim = sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match=r"^probes=2 but vectors holds 3"):
        hessian_spectral_density(
            net, gs.losses.mse, batch, steps=4, probes=2, vectors=torch.ones(3, dim, dtype=F64)
        )
