"""Probe output_hessian_norm against the dense float64 output Hessian."""

import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.probes import _reference as ref
from gdscope.training.output_hessian import OUTPUT_HESSIAN_EXAMPLES


def test_output_hessian_norm_probe_matches_dense_oracle():
    x, y = gs.data.sphere(n=7, d=3, seed=0, dtype=torch.float64)
    net = gs.models.mlp(3, 8, depth=3, activation="tanh", seed=2, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=2, probes={"output_hessian_norm": 1})
    hessians = ref.dense_output_hessian(net, x[:OUTPUT_HESSIAN_EXAMPLES])
    expected = max(float(torch.linalg.eigvalsh(h).abs().max()) for h in hessians)
    assert_close(trace.final("output_hessian_norm"), expected, rtol=1e-6)
