"""Tracked sharpness starts from the last eigenvector plus a random direction
(``ProbeContext.warm_start``, for the sharpness, the Gauss–Newton and the preconditioned
sharpness): a start on the second eigenvector, which alone stops
Lanczos' residual rule at ``λ₂`` for good, still finds ``λ_max``."""

from __future__ import annotations

import torch

import gdscope as gs
from gdscope.functional import clone_params, params_of
from gdscope.probes._reference import dense_hessian
from gdscope.training import scheduled
from gdscope.training.context import ProbeContext

F64 = torch.float64


def _problem():
    g = torch.Generator().manual_seed(0)
    net = gs.models.mlp(4, 6, depth=3, out_dim=2, activation="tanh", seed=0, dtype=F64)
    x, y = torch.randn(10, 4, generator=g, dtype=F64), torch.randn(10, 2, generator=g, dtype=F64)
    return net, (x, y)


def _ctx(net, batch, memory):
    return ProbeContext(
        net, params_of(net), clone_params(params_of(net)), gs.losses.mse, batch, None, 3,
        memory=memory,
    )  # fmt: skip


def test_a_warm_start_on_the_second_eigenvector_still_finds_the_top_one():
    net, batch = _problem()
    lam, vectors = torch.linalg.eigh(dense_hessian(net, gs.losses.mse, batch))
    noise = torch.randn(lam.numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    second = vectors[:, -2] + 1e-3 * noise / noise.norm()  # after a crossing: λ₁ all but absent
    alone = gs.probes.sharpness(net, gs.losses.mse, batch, v0=second)
    assert abs(alone - lam[-2].item()) <= 1e-3 * lam[-1].item()  # the lock the mix prevents
    memory = {"sharpness_vector": second.clone()}
    first = scheduled._sharpness(_ctx(net, batch, memory))["sharpness"]
    assert abs(first - lam[-1].item()) <= 1e-3 * lam[-1].item()
    assert abs(torch.dot(memory["sharpness_vector"].to(F64), vectors[:, -1])) > 0.99
    again = scheduled._sharpness(_ctx(net, batch, dict(memory)))["sharpness"]
    assert abs(again - lam[-1].item()) <= 1e-3 * lam[-1].item()


def test_warm_starts_are_reproducible_and_move_off_the_stored_vector():
    net, batch = _problem()
    stored = torch.randn(sum(p.numel() for p in net.parameters()), dtype=F64)
    starts = [_ctx(net, batch, {"v": stored}).warm_start("v") for _ in range(2)]
    assert starts[0] is not None and starts[1] is not None
    assert torch.equal(starts[0], starts[1])  # a fresh memory: the same seeded draw
    unit = stored / stored.norm()
    cos = float(torch.dot(starts[0], unit) / starts[0].norm())
    assert 0.5 < cos < 0.9  # half the start is the stored direction, half a random one
    assert _ctx(net, batch, {}).warm_start("v") is None  # nothing stored: random


def test_every_tracked_eigenvalue_starts_from_the_mixed_warm_start(monkeypatch):
    keys: list[str] = []
    real = ProbeContext.warm_start
    monkeypatch.setattr(
        ProbeContext, "warm_start", lambda self, key: keys.append(key) or real(self, key)
    )
    net, batch = _problem()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    probes = {"sharpness": 2, "ggn_sharpness": 2, "preconditioned_sharpness": 2}
    gs.train(net, optimizer, batch, 4, probes=probes)
    assert {"sharpness_vector", "ggn_vector", "preconditioned_vector"} <= set(keys)
