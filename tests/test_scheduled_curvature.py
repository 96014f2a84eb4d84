"""The scheduled curvature probes: the value at a checkpoint does not depend on what ran before."""

import torch

import gdscope as gs
from gdscope.probes._reference import dense_hessian
from gdscope.probes.hessian import sharpness


def test_the_scheduled_sharpness_is_the_top_eigenvalue_at_the_edge_of_stability():
    """The edge-of-stability study's setting. Warm-started at tol 1e-3, the probe stopped at λ₂
    at step 1550 (3.7161 against λ₁ = 3.8857); a cold start on the same weights finds λ₁."""
    x, y = gs.data.chebyshev(k=5, n=20)
    x = x.reshape(20, -1)
    model = gs.models.mlp(1, 100, depth=2, activation="tanh", init_scale=0.2, seed=0)

    def cold(ctx):
        return {"sharpness_cold": sharpness(ctx.model, ctx.loss_fn, ctx.data, tol=1e-8)}

    opt = gs.optim.make_optimizer("gd", model, lr=0.5)
    probes = {"sharpness": 25, "cold": 25}
    trace = gs.train(model, opt, (x, y), 1600, probes=probes, extra_probes={"cold": cold})
    _, warm = trace.series("sharpness")
    _, reference = trace.series("sharpness_cold")
    assert float(reference.max()) > 3.8  # the run reaches the edge, 2/η = 4
    assert float(abs(warm - reference).max() / reference.max()) < 1e-4
    exact = float(torch.linalg.eigvalsh(dense_hessian(model, gs.losses.mse, (x, y)))[-1])
    assert abs(float(warm[-1]) - exact) / exact < 1e-4  # the last checkpoint: the final weights


def test_the_hessian_trace_at_a_step_does_not_depend_on_the_schedule():
    """Its Hutchinson draws were one stream over the checkpoints: 7.72, 7.21, 4.88 at step 8."""
    x, y = gs.data.sphere(n=10, d=4, seed=0, dtype=torch.float64)
    at_step_8 = set()
    for every in (1, 2, 4):
        net = gs.models.mlp(4, 16, depth=2, seed=0, dtype=torch.float64)
        opt = gs.optim.make_optimizer("gd", net, lr=0.3)
        trace = gs.train(net, opt, (x, y), 8, probes={"hessian_trace": every})
        steps, values = trace.series("hessian_trace")
        at_step_8.add(float(values[list(steps).index(8)]))
    assert len(at_step_8) == 1
