"""Probes h_infinity_gap and du_bound against dense float64 oracles and the closed form."""

import math

import numpy as np
import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.probes import _reference as ref


def _two_layer_run(probes, steps=5, lr=2.0, width=64):
    x, y = gs.data.sphere(n=6, d=3, seed=0, dtype=torch.float64)
    net = gs.models.two_layer(3, width, seed=1, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    return gs.train(net, opt, (x, y), steps=steps, probes=probes), net, (x, y)


def test_h_infinity_gap_matches_dense_ntk_and_closed_form():
    trace, net, (x, _) = _two_layer_run({"h_infinity_gap": 100}, steps=3)
    h_inf = ref.arccos_kernel_h_infinity(x)
    gap = torch.linalg.matrix_norm(ref.dense_ntk(net, x) - h_inf, ord=2)
    expected = float(gap / torch.linalg.matrix_norm(h_inf, ord=2))
    assert_close(trace.final("h_infinity_gap"), expected, rtol=1e-10)
    assert_close(trace.final("h_infinity_lambda_min"), torch.linalg.eigvalsh(h_inf)[0], rtol=1e-12)


def test_h_infinity_gap_shrinks_with_width():
    gaps = [
        _two_layer_run({"h_infinity_gap": 1}, steps=0, width=m)[0].final("h_infinity_gap")
        for m in (16, 4096)
    ]
    assert gaps[1] < gaps[0] / 4


def test_du_bound_is_the_closed_form_with_the_step_taken():
    lr, n = 2.0, 6
    trace, _, (x, _y) = _two_layer_run({"du_bound": 1, "loss": 1}, steps=5, lr=lr)
    lam0 = float(torch.linalg.eigvalsh(ref.arccos_kernel_h_infinity(x))[0])
    steps, bound = trace.series("du_bound")
    loss0 = trace.series("loss")[1][0]
    expected = loss0 * (1 - lr * lam0 / (2 * n)) ** steps
    assert_close(bound, expected, rtol=1e-10)
    assert np.all(trace.series("du_step")[1] == lr)  # the loop's own step, from step 0
    assert np.all(trace.series("loss")[1] <= bound * (1 + 1e-12))


@pytest.mark.parametrize(
    ("optimizer", "batch_size"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9), None),
        (lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True), None),
        (lambda p: torch.optim.Adam(p, lr=0.01), None),
        (lambda p: torch.optim.SGD(p, lr=0.5), 2),
    ],
    ids=["heavy_ball", "nesterov", "adam", "mini-batch"],
)
def test_du_bound_is_nan_where_the_run_is_not_full_batch_gd(optimizer, batch_size):
    """The bound is stated for plain full-batch GD: other runs had finite bounds (1.5-1.6)."""
    x, y = gs.data.sphere(n=6, d=3, seed=0, dtype=torch.float64)
    net = gs.models.two_layer(3, 64, seed=1, dtype=torch.float64)
    trace = gs.train(
        net, optimizer(net.parameters()), (x, y), steps=4, probes={"du_bound": 1},
        batch_size=batch_size,
    )  # fmt: skip
    for metric in ("du_bound", "du_step", "du_rate"):
        assert np.isnan(trace.series(metric)[1]).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: gs.models.two_layer(3, 256, seed=1, train_outer=True, dtype=torch.float64),
        lambda: gs.models.two_layer(3, 256, seed=1, activation="tanh", dtype=torch.float64),
        lambda: gs.models.mlp(3, 256, depth=3, seed=1, dtype=torch.float64),
    ],
    ids=["trained-outer", "tanh", "mlp"],
)
def test_the_h_infinity_probes_are_nan_on_another_model(make):
    """H∞ is the limit of Du et al.'s ReLU net with frozen ±1 outer weights only (the gap of
    these stayed at 0.4-1.6 from width 256 to 4096)."""
    x, y = gs.data.sphere(n=6, d=3, seed=0, dtype=torch.float64)
    net = make()
    probes = {"h_infinity_gap": 1, "du_bound": 1}
    trace = gs.train(net, torch.optim.SGD(net.parameters(), lr=0.1), (x, y), 1, probes=probes)
    for metric in ("h_infinity_gap", "du_bound"):
        assert np.isnan(trace.series(metric)[1]).all()


def test_the_gap_is_nan_off_the_sphere():
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    net = gs.models.two_layer(3, 8, seed=0, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, x[:, :1]), steps=1, probes={"h_infinity_gap": 1})
    assert math.isnan(trace.final("h_infinity_gap"))
