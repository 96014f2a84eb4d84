"""Stochastic Lanczos quadrature of the Hessian spectrum against the dense float64 Hessian."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope.losses import mse
from gdscope.models import mlp
from gdscope.probes._reference import dense_hessian
from gdscope.probes.spectral_density import hessian_spectral_density, spectral_density


@functools.cache
def _problem(width: int, depth: int):
    """A small tanh net (float64) with random targets, so the Hessian is indefinite."""
    gen = torch.Generator().manual_seed(0)
    net = mlp(d_in=3, width=width, depth=depth, activation="tanh", seed=0, dtype=torch.float64)
    x = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(12, 1, generator=gen, dtype=torch.float64)
    hessian = dense_hessian(net, mse, (x, y))
    return net, (x, y), hessian, torch.linalg.eigvalsh(hessian)


def _smoothed(
    lam: torch.Tensor, t: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``(density, cdf)`` of the eigenvalues ``lam`` smoothed by ``N(0, σ²)``, at ``t``."""
    z = (t[:, None] - lam) / sigma
    density = (torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))).mean(1)
    return density, (0.5 * torch.erfc(-z / math.sqrt(2))).mean(1)


def test_each_probe_is_a_gauss_rule_exact_to_degree_2m_minus_1():
    net, batch, hessian, lam = _problem(10, 3)
    steps = 8
    v = torch.randn(
        3, hessian.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    slq = hessian_spectral_density(net, mse, batch, steps=steps, vectors=v)
    v = v / v.norm(dim=1, keepdim=True)
    assert_close(slq.weights.sum(1), torch.ones(3, dtype=torch.float64), rtol=1e-5, atol=1e-13)
    scale = lam.abs().max().item()
    power_v, errors = v.T.clone(), []  # columns A^k v
    for k in range(2 * steps + 1):
        exact = (v * power_v.T).sum(1)  # vᵀ A^k v per probe
        quad = (slq.weights * slq.nodes**k).sum(1)
        errors.append((quad - exact).abs().max().item() / scale**k)
        power_v = hessian @ power_v
    assert max(errors[: 2 * steps]) <= 1e-12, errors
    assert errors[2 * steps] >= 1e3 * max(errors[: 2 * steps]), errors  # degree 2m is beyond it


def test_all_coordinate_probes_and_full_lanczos_give_the_exact_smoothed_spectrum():
    _, _, hessian, lam = _problem(6, 2)
    p = hessian.shape[0]
    slq = spectral_density(
        lambda v: hessian @ v, p, steps=p, vectors=torch.eye(p, dtype=torch.float64)
    )
    sigma = 0.05 * (lam[-1] - lam[0]).item()
    t = torch.linspace(lam[0].item() - 3 * sigma, lam[-1].item() + 3 * sigma, 50)
    density, cdf = _smoothed(lam, t, sigma)
    assert_close(slq.density(t, sigma), density, rtol=0, atol=1e-10 * density.max().item())
    assert_close(slq.cdf(t, sigma), cdf, rtol=0, atol=1e-10)
    steps = (lam[:, None] <= t).to(torch.float64).mean(0)
    assert_close(slq.cdf(t), steps, rtol=0, atol=1e-10)
    for k in (1, 2, 3):
        assert_close(slq.moment(k)[0], (lam**k).mean().item(), rtol=1e-10, atol=1e-12)


def test_rademacher_slq_density_matches_the_dense_spectrum():
    net, batch, _, lam = _problem(10, 3)
    slq = hessian_spectral_density(net, mse, batch, steps=30, probes=32)
    sigma = 0.02 * (lam[-1] - lam[0]).item()
    t = torch.linspace(lam[0].item() - 4 * sigma, lam[-1].item() + 4 * sigma, 400)
    density, cdf = _smoothed(lam, t, sigma)
    l1 = float((slq.density(t, sigma) - density).abs().sum() * (t[1] - t[0]))
    assert l1 <= 0.08, l1  # measured 0.03 (stochastic: about 1/√(P·n_v) per point)
    assert float((slq.cdf(t, sigma) - cdf).abs().max()) <= 0.03
    for k in (1, 2):
        estimate, se = slq.moment(k)
        assert abs(estimate - (lam**k).mean().item()) <= 4 * se, (k, estimate, se)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        spectral_density(lambda v: v, 4, steps=0)
    with pytest.raises(ValueError, match="steps must be a positive integer, got True"):
        spectral_density(lambda v: v, 4, steps=True)
    with pytest.raises(ValueError, match="dim must be a positive integer, got 0"):
        spectral_density(lambda v: v, 0)
    with pytest.raises(ValueError, match=r"vectors must be \(n_v, 4\)"):
        spectral_density(lambda v: v, 4, vectors=torch.ones(2, 3))
    with pytest.raises(ValueError, match="nonzero"):
        spectral_density(lambda v: v, 4, vectors=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="nan or inf"):
        spectral_density(lambda v: v, 4, vectors=torch.full((1, 4), math.nan))
    slq = spectral_density(lambda v: 2 * v, 4, steps=np.int64(2), probes=np.int64(3))
    assert slq.nodes.shape == (3, 2)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0, got 0"):
        slq.density(torch.zeros(1), 0)
    with pytest.raises(ValueError, match=r"sigma must be a finite number ≥ 0, got -0\.1"):
        slq.cdf(torch.zeros(1), -0.1)


@functools.cache
def _span_problem():
    """5 inputs in 16 dimensions: the first layer's data span applies (n ≤ d/2)."""
    gen = torch.Generator().manual_seed(2)
    net = mlp(d_in=16, width=6, depth=3, activation="tanh", seed=1, dtype=torch.float64)
    x = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 1, generator=gen, dtype=torch.float64)
    hessian = dense_hessian(net, mse, (x, y))
    return net, (x, y), hessian, torch.linalg.eigvalsh(hessian)


def _moment_errors(slq, v: torch.Tensor, hessian: torch.Tensor, degrees: int) -> list[float]:
    v = v / v.norm(dim=1, keepdim=True)
    scale = torch.linalg.eigvalsh(hessian).abs().max().item()
    power_v, errors = v.T.clone(), []
    for k in range(degrees):
        exact = (v * power_v.T).sum(1)  # vᵀ A^k v per probe
        errors.append(((slq.weights * slq.nodes**k).sum(1) - exact).abs().max().item() / scale**k)
        power_v = hessian @ power_v
    return errors


def test_on_a_data_span_each_probe_keeps_its_gauss_rule_plus_an_exact_node_at_zero():
    net, batch, hessian, _ = _span_problem()
    steps = 6
    v = torch.randn(
        4, hessian.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    slq = hessian_spectral_density(net, mse, batch, steps=steps, vectors=v)
    assert slq.nodes.shape == (4, steps + 1) and torch.equal(slq.nodes[:, -1], torch.zeros(4))
    assert max(_moment_errors(slq, v, hessian, 2 * steps)) <= 1e-12
    # the node 0 carries the probe's mass off the span: W₁'s block minus its part in span(xᵀ)
    q, _ = torch.linalg.qr(batch[0].T)
    block = (v / v.norm(dim=1, keepdim=True))[:, : 6 * 16].reshape(4, 6, 16)
    off_span = (block - block @ q @ q.T).square().sum((1, 2))
    assert_close(slq.weights[:, -1], off_span, rtol=1e-12, atol=1e-15)
    assert_close(slq.weights.sum(1), torch.ones(4, dtype=torch.float64), rtol=1e-13)


def test_on_a_data_span_enough_steps_make_every_probe_exact():
    net, batch, hessian, lam = _span_problem()
    reduced = hessian.shape[0] - 6 * (16 - 5)  # W₁ has 5 of its 16 columns left
    v = torch.randn(
        2, hessian.shape[0], generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    slq = hessian_spectral_density(net, mse, batch, steps=10 * reduced, vectors=v)
    assert slq.nodes.shape[1] == reduced + 1
    assert max(_moment_errors(slq, v, hessian, 12)) <= 1e-10
    default = hessian_spectral_density(net, mse, batch, steps=40, probes=64)
    for k in (1, 2):
        estimate, se = default.moment(k)
        assert abs(estimate - (lam**k).mean().item()) <= 4 * se, (k, estimate, se)
