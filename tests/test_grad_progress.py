"""Probe grad_norm_drop: running minimum of the full-batch ‖∇L‖² against the grad_norm series."""

import numpy as np
import torch

import gdscope as gs
from _helpers import assert_close


def test_running_min_and_drop_follow_the_full_batch_gradient_norm():
    x, y = gs.data.sphere(n=12, d=4, seed=0, dtype=torch.float64)
    net = gs.models.mlp(4, 16, depth=3, seed=1, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    probes = {"grad_norm": 1, "grad_norm_drop": 1}
    trace = gs.train(net, opt, (x, y), steps=20, probes=probes, batch_size=3, seed=0)
    g2 = trace.series("grad_norm")[1] ** 2
    running = np.minimum.accumulate(g2)
    assert_close(trace.series("grad_norm_sq_running_min")[1], running, rtol=1e-10)
    assert_close(trace.series("grad_norm_sq_drop")[1], g2[0] / running, rtol=1e-10)
    assert np.all(np.diff(trace.series("grad_norm_sq_running_min")[1]) <= 0)
