"""The negative mass the spectral density reports: the weight below ``−τ·max|θ|``, not below 0.

With a large null space and small eigenvalues of both signs around it, the Gauss node carrying
the null space sits a little off 0 on a side that changes with the Hessian, so the weight below
0 swings between about 0 and 1 (an independent review: 0.93 → 0.48 → 0.02 along one
``gdscope train`` run). ``negative_mass`` and the ``gdscope train`` column built on it must
follow the dense spectrum's fraction below ``−τ·max|λ|`` on either side of that swing.
"""

from types import SimpleNamespace

import pytest
import torch

import gdscope as gs
from gdscope.cli import trace_table
from gdscope.probes import _reference as ref
from gdscope.probes.spectral_density import NEGATIVE_TAU, spectral_density
from gdscope.training.curvature import DENSITY_PROBES, hessian_density_probe

F64 = torch.float64


def _fraction_below(eigenvalues: torch.Tensor) -> float:
    """The dense spectrum's fraction below ``−τ·max|λ|``."""
    threshold = -NEGATIVE_TAU * float(eigenvalues.abs().max())
    return float((eigenvalues < threshold).to(F64).mean())


@pytest.mark.parametrize("side", [-1.0, 1.0], ids=["small_negative", "small_positive"])
def test_a_negative_block_of_known_mass_is_measured_whichever_side_the_null_node_falls(side):
    """``Q diag(c) Qᵀ``, P = 800: 55 % zeros, 10 % small eigenvalues (``±[1e-3, 1e-2]``) on one
    side of them, a negative block of mass 10 % in ``[−0.3, −0.1]`` and positives up to 1."""
    g = torch.Generator().manual_seed(0)

    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=g, dtype=F64)

    c = torch.cat(
        [
            torch.zeros(440, dtype=F64),
            side * uniform(80, 1e-3, 1e-2),
            -uniform(80, 0.1, 0.3),
            uniform(199, 0.05, 1.0),
            torch.ones(1, dtype=F64),
        ]
    )
    q, _ = torch.linalg.qr(torch.randn(800, 800, generator=g, dtype=F64))
    a = (q * c) @ q.T
    slq = spectral_density(lambda v: a @ v, 800, steps=24, probes=4)
    assert _fraction_below(c) == 0.1
    assert abs(slq.negative_mass() - 0.1) <= 0.02, slq.negative_mass()
    below_zero = float(slq.cdf(-1e-9))  # the null space's node: on the side of the small ones
    assert (below_zero > 0.6) if side < 0 else (below_zero < 0.15), below_zero


def test_the_train_column_follows_the_dense_spectrum_through_a_null_space_swing():
    """The review's ``mlp(20, 32, depth=3)`` on 8 examples (83 % zero eigenvalues): along gradient
    descent the weight of the negative nodes swings 0.05 → 0.51 → 0.07 (the dense fraction
    below 0 stays 0.08); the column stays within 0.03 of the fraction below ``−τ·max|λ|``."""
    x, y = gs.data.sphere(n=8, d=20, seed=0, dtype=F64)
    net = gs.models.mlp(20, 32, depth=3, seed=0, dtype=F64)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    context = SimpleNamespace(model=net, loss_fn=gs.losses.mse, data=(x, y))
    records: dict[str, tuple[list[int], list[float]]] = {}
    dense: dict[int, float] = {}
    below_zero: list[float] = []
    done = 0
    for step in (0, 20, 100):
        for _ in range(step - done):
            optimizer.zero_grad()
            gs.losses.mse(net(x), y).backward()
            optimizer.step()
        done = step
        measured = hessian_density_probe(context)
        for metric, value in measured.items():
            records.setdefault(metric, ([], []))[0].append(step)
            records[metric][1].append(value)
        nodes = torch.tensor([v for m, v in measured.items() if "/node_" in m], dtype=F64)
        weights = torch.tensor([v for m, v in measured.items() if "/weight_" in m], dtype=F64)
        below_zero.append(float(weights[nodes < 0].sum()) / DENSITY_PROBES)
        dense[step] = _fraction_below(
            torch.linalg.eigvalsh(ref.dense_hessian(net, gs.losses.mse, (x, y)))
        )
    assert max(below_zero) - min(below_zero) > 0.4, below_zero  # the swing is there
    column = trace_table._density_summary(records)[trace_table.NEGATIVE_COLUMN.format(NEGATIVE_TAU)]
    for step, expected in dense.items():
        assert abs(column[step] - expected) <= 0.03, (step, column[step], expected)
