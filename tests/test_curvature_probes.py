"""The scheduled probes ``preconditioned_sharpness`` and ``hessian_density`` against dense float64 oracles.

The oracles are built here from first principles: the explicit Hessian (every gradient entry
differentiated), the explicit preconditioner read from the optimizer's state as torch's update
applies it, ``eigvalsh`` of ``P^{-1/2} H P^{-1/2}``; for the density, the exact eigenvalues and
the probe vectors' own ``vᵀ H^k v``.
"""

from __future__ import annotations

import math

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import clone_params, params_of
from gdscope.probes._reference import dense_hessian
from gdscope.training import PROBES, ProbeContext
from gdscope.training.curvature import DENSITY_PROBES, DENSITY_STEPS, density_metric

F64 = torch.float64
LR = 0.02


def _problem(seed: int = 0):
    """A small tanh MLP (float64, 2 outputs, 59 parameters) and a regression batch."""
    g = torch.Generator().manual_seed(seed)
    net = gs.models.mlp(4, 6, depth=3, out_dim=2, activation="tanh", seed=seed, dtype=F64)
    x, y = torch.randn(10, 4, generator=g, dtype=F64), torch.randn(10, 2, generator=g, dtype=F64)
    return net, (x, y)


def _stepped(net, batch, optimizer, steps: int):
    for _ in range(steps):
        optimizer.zero_grad()
        gs.losses.mse(net(batch[0]), batch[1]).backward()
        optimizer.step()
    return optimizer


def _ctx(net, batch, optimizer, memory=None, step=3):
    return ProbeContext(
        net, params_of(net), clone_params(params_of(net)), gs.losses.mse, batch, None, step,
        memory={} if memory is None else memory, optimizer=optimizer,
    )  # fmt: skip


def _explicit_p(net, optimizer, bias_correction: bool = True) -> torch.Tensor:
    """``P`` from the state: Adam's ``(1 − β₁ᵗ)(√(exp_avg_sq/(1 − β₂ᵗ)) + ε)`` (the update is
    ``−η P⁻¹ m``, Cohen et al. 2022 §2), RMSprop's ``√square_avg + ε``."""
    parts = []
    for p in net.parameters():
        state, group = optimizer.state[p], optimizer.param_groups[0]
        if isinstance(optimizer, torch.optim.RMSprop):
            parts.append((state["square_avg"].sqrt() + group["eps"]).reshape(-1))
            continue
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        v = state["exp_avg_sq"] / ((1 - beta2**t) if bias_correction else 1.0)
        first = (1 - beta1**t) if bias_correction else 1.0
        parts.append((first * (v.sqrt() + group["eps"])).reshape(-1))
    return torch.cat(parts).to(F64)


def _dense_top(net, batch, p_diag: torch.Tensor) -> float:
    hessian = dense_hessian(net, gs.losses.mse, batch)
    s = p_diag.rsqrt()
    return float(torch.linalg.eigvalsh(s[:, None] * hessian * s[None, :])[-1])


OPTIMIZERS = {
    "adam": (lambda p: torch.optim.Adam(p, lr=LR), (2 + 2 * 0.9) / ((1 - 0.9) * LR)),  # 38/η
    "rmsprop": (lambda p: torch.optim.RMSprop(p, lr=LR), 2 / LR),
    "rmsprop-momentum": (lambda p: torch.optim.RMSprop(p, lr=LR, momentum=0.5), 3 / LR),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_preconditioned_sharpness_probe_matches_the_dense_oracle(name):
    make, threshold = OPTIMIZERS[name]
    net, batch = _problem()
    optimizer = _stepped(net, batch, make(net.parameters()), steps=4)
    out = PROBES["preconditioned_sharpness"](_ctx(net, batch, optimizer))
    expected = _dense_top(net, batch, _explicit_p(net, optimizer))
    assert_close(out["preconditioned_sharpness"], expected, rtol=1e-8, what=name)
    assert_close(out["adaptive_threshold"], threshold, rtol=1e-12, what=name)
    assert_close(out["preconditioned_sharpness_ratio"], expected / threshold, rtol=1e-8, what=name)
    assert set(out) == set(PROBES["preconditioned_sharpness"].metrics)
    if name == "adam":  # the oracle can tell: without Adam's bias corrections P is off
        wrong = _dense_top(net, batch, _explicit_p(net, optimizer, bias_correction=False))
        assert abs(wrong - expected) > 1e-3 * expected


def test_the_probe_warm_starts_and_tracks_along_training():
    net, batch = _problem(seed=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    memory: dict = {}
    for _ in range(3):
        _stepped(net, batch, optimizer, steps=5)
        out = PROBES["preconditioned_sharpness"](_ctx(net, batch, optimizer, memory))
        expected = _dense_top(net, batch, _explicit_p(net, optimizer))
        assert_close(out["preconditioned_sharpness"], expected, rtol=1e-8)
        vector = memory["preconditioned_vector"]  # the unit top eigenvector, for the next run
        assert vector.shape == (sum(p.numel() for p in net.parameters()),)
        assert abs(float(vector.norm()) - 1) < 1e-10


def test_groups_with_different_rates_record_the_lr_free_ratio_only():
    net, batch = _problem(seed=2)
    first = [p for n, p in net.named_parameters() if n.startswith("layers.0")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("layers.0")]
    optimizer = torch.optim.Adam([{"params": first, "lr": 0.05}, {"params": rest}], lr=LR)
    _stepped(net, batch, optimizer, steps=3)
    out = PROBES["preconditioned_sharpness"](_ctx(net, batch, optimizer))
    rates = torch.cat(
        [torch.full((p.numel(),), g["lr"], dtype=F64) for g in optimizer.param_groups
         for p in g["params"]]
    )  # fmt: skip
    expected = _dense_top(net, batch, _explicit_p(net, optimizer) / rates) / 38.0
    assert set(out) == {"preconditioned_sharpness_ratio"}
    assert_close(out["preconditioned_sharpness_ratio"], expected, rtol=1e-8)


def test_nothing_is_recorded_before_the_first_update_and_bad_optimizers_are_named():
    net, batch = _problem()
    fresh = torch.optim.Adam(net.parameters(), lr=LR)
    assert PROBES["preconditioned_sharpness"](_ctx(net, batch, fresh, step=0)) == {}
    with pytest.raises(ValueError, match="no optimizer reached the probe context"):
        PROBES["preconditioned_sharpness"](_ctx(net, batch, None))
    with pytest.raises(ValueError, match=r"adaptive optimizer \(adam or rmsprop\), got SGD"):
        PROBES["preconditioned_sharpness"](_ctx(net, batch, torch.optim.SGD(net.parameters(), 0.1)))


def test_train_passes_its_optimizer_to_the_probe():
    """``gs.train`` records the probe from step 1 on (needs ``ProbeContext(optimizer=...)``)."""
    net, batch = _problem(seed=3)
    optimizer = torch.optim.RMSprop(net.parameters(), lr=LR)
    trace = gs.train(net, optimizer, batch, 4, probes={"preconditioned_sharpness": 2})
    steps, values = trace.series("preconditioned_sharpness")
    assert steps.tolist() == [2, 4]
    assert_close(values[-1], _dense_top(net, batch, _explicit_p(net, optimizer)), rtol=1e-8)


def _rademacher(dim: int) -> torch.Tensor:
    """The probe's vectors: Rademacher ``z/√P`` from a generator seeded with 0."""
    z = torch.randint(0, 2, (DENSITY_PROBES, dim), generator=torch.Generator().manual_seed(0))
    return (2 * z - 1).to(F64) / math.sqrt(dim)


def _quadrature(out: dict[str, float], m: int) -> tuple[torch.Tensor, torch.Tensor]:
    def table(kind: str) -> torch.Tensor:
        return torch.tensor(
            [[out[density_metric(kind, i, k)] for k in range(m)] for i in range(DENSITY_PROBES)],
            dtype=F64,
        )

    return table("node"), table("weight")


def test_hessian_density_probe_matches_the_dense_spectrum():
    net, batch = _problem(seed=4)
    hessian = dense_hessian(net, gs.losses.mse, batch)
    lam = torch.linalg.eigvalsh(hessian)
    dim, m = hessian.shape[0], DENSITY_STEPS
    assert dim > m  # a truncated quadrature: the test is not of a full decomposition
    out = PROBES["hessian_density"](_ctx(net, batch, None))
    assert set(out) == {density_metric(k, i, j) for k in ("node", "weight")
                        for i in range(DENSITY_PROBES) for j in range(m)}  # fmt: skip
    nodes, weights = _quadrature(out, m)
    assert_close(weights.sum(1), torch.ones(DENSITY_PROBES, dtype=F64), atol=1e-12)
    # each probe's Gauss rule integrates vᵀH^k v exactly for k < 2m (here up to k = 6)
    v = _rademacher(dim)
    power = v.T.clone()
    scale = float(lam.abs().max())
    for k in range(7):
        exact = (v * power.T).sum(1)
        assert_close((weights * nodes**k).sum(1) / scale**k, exact / scale**k, atol=1e-11)
        power = hessian @ power
    # the first two moments estimate tr(H)/P and tr(H²)/P (Hutchinson over the probes)
    for k in (1, 2):
        per_probe = (weights * nodes**k).sum(1)
        se = float(per_probe.std()) / math.sqrt(DENSITY_PROBES)
        assert abs(float(per_probe.mean()) - float((lam**k).mean())) <= 4 * se + 1e-12, k
    # mass location: every node lies in the spectrum; the top one is λ_max
    carried = nodes[weights > 1e-14]
    assert float(carried.min()) >= float(lam[0]) - 1e-9 * scale
    assert float(carried.max()) <= float(lam[-1]) + 1e-9 * scale
    assert_close(float(nodes.max()), float(lam[-1]), rtol=1e-8)
    # and the quadrature's mass below each quartile of the spectrum is that quartile's
    for q in (0.25, 0.5, 0.75):
        t = float(torch.quantile(lam, q))
        mass = float(((nodes <= t).to(F64) * weights).sum(1).mean())
        assert abs(mass - q) <= 0.2, (q, mass)


def test_hessian_trace_hutchpp_probe_is_unbiased_and_repeats_its_draws():
    """The scheduled Hutch++ reads the same 30 products at every checkpoint (seed 0) and, over
    generators, averages to the dense trace; with as many products as 3× the dimension it is exact."""
    net, batch = _problem(seed=5)
    exact = float(torch.trace(dense_hessian(net, gs.losses.mse, batch)))
    ctx = _ctx(net, batch, None)
    first = PROBES["hessian_trace_hutchpp"](ctx)
    assert PROBES["hessian_trace_hutchpp"](ctx) == first
    estimate, se = gs.probes.hessian_trace_hutchpp(
        net, gs.losses.mse, batch, probes=30, generator=torch.Generator().manual_seed(0),
        return_error=True,
    )  # fmt: skip
    assert first == {"hessian_trace_hutchpp": estimate, "hessian_trace_hutchpp_se": se}
    assert se > 0
    draws = torch.tensor([
        gs.probes.hessian_trace_hutchpp(
            net, gs.losses.mse, batch, probes=30, generator=torch.Generator().manual_seed(s)
        )
        for s in range(200)
    ], dtype=F64)  # fmt: skip
    se = float(draws.std()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - exact) <= 4 * se + 1e-12
    dim = sum(p.numel() for p in net.parameters())
    full = gs.probes.hessian_trace_hutchpp(net, gs.losses.mse, batch, probes=3 * dim)
    assert_close(full, exact, rtol=1e-9)
