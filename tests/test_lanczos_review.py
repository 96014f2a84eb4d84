"""Lanczos on operators that defeated its stopping rules (review of 2026-12-06): the far end
overtaking a largest-magnitude value, the gap estimate stopping a Gram's λ_min after two
products, a near-breakdown dropping a coupling the tolerance needed; and its arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope.probes import gram_eigs, lanczos_topk, ntk_spectrum

F64 = torch.float64


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_the_far_end_cannot_overtake_a_largest_magnitude_value(seed, tol):
    """−9.2, a continuum on [−8.9, 0] and +9: +9 converged first and was returned as 'LM'."""
    values = torch.cat(
        [torch.tensor([-9.2, 9.0], dtype=F64), torch.linspace(-8.9, 0.0, 3998, dtype=F64)]
    )
    res = lanczos_topk(
        lambda v: values * v, values.numel(), 1, which="LM", tol=tol,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    assert res.converged
    assert abs(res.values[0].item() + 9.2) <= tol * 9.2


@pytest.mark.parametrize("kappa", [1e7, 1e8])
def test_gram_eigs_keeps_its_accuracy_with_one_dominant_eigenvalue(kappa):
    """{1, a continuum on [2, 3], κ}: the gap estimate stopped after 2 products at 2.49."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=F64))
    spectrum = torch.cat(
        [torch.tensor([1.0, kappa], dtype=F64), torch.linspace(2.0, 3.0, 298, dtype=F64)]
    )
    gram = (q * spectrum) @ q.T
    gram = (gram + gram.T) / 2
    low, high = gram_eigs(gram, 1).tolist()
    assert_close(low, 1.0, rtol=1e-8)
    assert_close(high, kappa, rtol=1e-8)
    spec = ntk_spectrum(gram, method="lanczos")
    assert_close(spec.kappa, kappa, rtol=1e-7)


@pytest.mark.parametrize("tol", [1e-8, 1e-10])
def test_a_small_coupling_beside_a_large_eigenvalue_is_kept(tol):
    """−1e6, 1 and a continuum on [0, 0.5], started near the top two: β = 1.06e-8 fell under
    the breakdown threshold 1e-12·1e6, was set to 0, and the run reported residual 0 while the
    true residual was 75 × tol."""
    values = torch.cat(
        [torch.tensor([-1e6, 1.0], dtype=F64), torch.linspace(0, 0.5, 98, dtype=F64)]
    )
    v0 = torch.zeros(100, dtype=F64)
    v0[:2] = 1.0
    v0[2:] = 1e-9 * torch.randn(98, generator=torch.Generator().manual_seed(0), dtype=F64)
    res = lanczos_topk(lambda v: values * v, 100, 1, tol=tol, v0=v0)
    y = res.vectors[:, 0]
    true_residual = torch.linalg.vector_norm(values * y - res.values[0] * y).item()
    assert res.converged
    assert true_residual <= tol * abs(res.values[0].item()) * 1.01
    rounding = 2 * 2.0**-53 * 1e6  # of the product A y itself, which no bound includes
    assert true_residual <= res.residual_norms[0].item() + rounding


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": True}, "k must be a positive integer, got True"),
        ({"k": 2.0}, "k must be a positive integer, got 2.0"),
        ({"tol": True}, "tol must be a finite number > 0, got True"),
        ({"tol": 0}, "tol must be a finite number > 0, got 0"),
        ({"max_iter": 0}, "max_iter must be a positive integer, got 0"),
        ({"v0": torch.full((50,), float("nan"))}, "v0 holds nan or inf"),
    ],
)
def test_arguments_are_checked_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lanczos_topk(lambda v: v, 50, **{"k": 1, **kwargs})


def test_numpy_counts_and_extreme_start_vectors_are_accepted():
    a = torch.arange(1.0, 51.0, dtype=F64)
    for v0 in (1e-200 * torch.ones(50, dtype=F64), 1e200 * torch.ones(50, dtype=F64)):
        res = lanczos_topk(lambda v: a * v, 50, np.int64(1), tol=1e-10, v0=v0)
        assert res.converged and abs(res.values[0].item() - 50.0) < 1e-8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iters": 0}, "iters must be a positive integer, got 0"),
        ({"tol": float("nan")}, "tol must be a finite number > 0, got nan"),
        ({"v0": "zeros"}, "v0 must be a nonzero vector"),
        ({"v0": "short"}, "v0 must have 11 entries"),
    ],
)
def test_power_iteration_refuses_what_would_return_nan(kwargs, match):
    """iters = 0 returned (nan, 0), a zero v0 (nan, 100), tol = nan ran every iteration."""
    import gdscope as gs

    net = torch.nn.Sequential(
        torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1)
    ).double()
    x, y = torch.randn(5, 3, dtype=F64), torch.randn(5, 1, dtype=F64)
    starts = {"zeros": torch.zeros(11, dtype=F64), "short": torch.ones(4, dtype=F64)}
    if "v0" in kwargs:
        kwargs = {"v0": starts[kwargs["v0"]]}
    with pytest.raises(ValueError, match=match):
        gs.probes.power_iteration(net, gs.losses.mse, (x, y), **kwargs)
