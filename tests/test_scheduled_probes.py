"""Scheduled probes inside ``gs.train``: values against dense oracles, shared work, warm starts."""

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope._checks import records
from gdscope.probes import _reference as ref
from gdscope.training import context, scheduled
from gdscope.training.scheduled import scheduled_metrics


def _run(probes, steps=6, lr=0.5, model=None):
    x, y = gs.data.sphere(n=10, d=4, seed=0, dtype=torch.float64)
    net = model or gs.models.mlp(4, 12, depth=3, activation="tanh", seed=1, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    trace = gs.train(net, opt, (x, y), steps=steps, probes=probes)
    return trace, net, (x, y)


def test_ntk_spectrum_probe_matches_dense_oracle_at_the_last_checkpoint():
    trace, net, (x, _) = _run({"ntk_spectrum": 3})
    assert trace.series("ntk_lambda_min")[0].tolist() == [0, 3, 6]
    eig = torch.linalg.eigvalsh(ref.dense_ntk(net, x))
    assert_close(trace.final("ntk_lambda_min"), eig[0], rtol=1e-9)
    assert_close(trace.final("ntk_lambda_max"), eig[-1], rtol=1e-10)
    assert_close(trace.final("ntk_kappa"), eig[-1] / eig[0], rtol=1e-9)
    assert trace.series("ntk_drift")[1][0] == 0.0
    assert trace.final("ntk_drift") > 0.0


def test_gram_is_built_once_per_checkpoint_for_spectrum_and_sandwich(monkeypatch):
    calls = []
    real = context.ntk_gram

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(context, "ntk_gram", counting)
    trace, _, _ = _run({"ntk_spectrum": 2, "sandwich": 2}, steps=4)
    assert len(calls) == 3  # checkpoints 0, 2, 4
    assert "sandwich_lower" in trace.metrics


def test_square_loss_sandwich_holds_at_every_checkpoint():
    trace, _, _ = _run({"loss": 1, "sandwich": 1}, steps=8)
    _, loss = trace.series("loss")
    _, lower = trace.series("sandwich_lower")
    _, upper = trace.series("sandwich_upper")
    assert (lower <= loss * (1 + 1e-10)).all() and (loss <= upper * (1 + 1e-10)).all()


def test_sharpness_probe_matches_dense_hessian_and_warm_starts(monkeypatch):
    seen = []
    real = scheduled.sharpness

    def spying(*args, **kwargs):
        seen.append(kwargs.get("v0"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduled, "sharpness", spying)
    trace, net, batch = _run({"sharpness": 2}, steps=4)
    top = torch.linalg.eigvalsh(ref.dense_hessian(net, gs.losses.mse, batch))[-1]
    assert abs(trace.final("sharpness") - float(top)) <= 1e-3 * float(top)
    assert seen[0] is None and all(v is not None for v in seen[1:])


def test_hessian_trace_probe_is_near_the_dense_trace():
    trace, net, batch = _run({"hessian_trace": 100}, steps=0)
    dense = torch.trace(ref.dense_hessian(net, gs.losses.mse, batch))
    estimate, se = trace.final("hessian_trace"), trace.final("hessian_trace_se")
    assert abs(estimate - float(dense)) <= 5 * se + 1e-12


def test_geometry_probes_start_at_zero_and_move():
    relu = gs.models.mlp(4, 16, depth=2, seed=3, dtype=torch.float64)
    trace, _, _ = _run(
        {"activation_flips": 5, "linearization_gap": 5, "pl_ratio": 5, "neuron_displacement": 5},
        steps=10,
        lr=1.0,
        model=relu,
    )
    assert trace.series("activation_flips")[1][0] == 0.0
    assert trace.series("linearization_gap")[1][0] == 0.0
    assert trace.final("linearization_gap") > 0.0
    assert trace.series("max_neuron_displacement/layers.0.weight")[1][0] == 0.0
    assert trace.final("pl_ratio") > 0.0


def test_every_registered_probe_runs_in_train():
    x, y = gs.data.digits(n=40, classes=(0, 1, 2), seed=0, dtype=torch.float64)
    xt, yt = gs.data.digits(n=20, split="test", classes=(0, 1, 2), seed=0, dtype=torch.float64)
    net = gs.models.mlp(64, 16, depth=2, out_dim=3, seed=0, dtype=torch.float64)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)  # preconditioned_sharpness needs Adam's v̂
    probes = {name: 2 for name, probe in gs.PROBES.items() if not probe.square_loss_only}
    trace = gs.train(
        net, opt, (x, y), 2, loss_fn=gs.losses.cross_entropy, probes=probes, eval_data=(xt, yt)
    )
    assert trace.status == "completed"
    assert {"test_accuracy", "ntk_kappa", "sharpness", "activation_flips"} <= set(trace.metrics)
    declared = scheduled_metrics(gs.PROBES)
    assert [m for m in trace.metrics if not records(declared, m)] == []  # each metric declared
    # plain full-batch GD on the square loss: the infinite-width linear model's reference too
    targets = torch.nn.functional.one_hot(y, 3).double()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    held_out = (xt, torch.nn.functional.one_hot(yt, 3).double())
    square = {"linearization_gap": 2, "sandwich": 2}  # and the square loss's own probes
    gd = gs.train(net, sgd, (x, targets), 2, probes=square, eval_data=held_out)
    assert "linearization_infinite_gap" not in trace.metrics  # Adam: not Θ's GD
    recorded = set(trace.metrics) | set(gd.metrics)
    # and each declared name (each family) is recorded: a probe's declaration cannot go stale
    assert [d for d in declared if not any(records([d], m) for m in recorded)] == []


@pytest.mark.parametrize("name", ["ntk_spectrum", "sharpness"])
def test_heavy_probes_are_schedulable_from_a_trial_config(name):
    cfg = gs.TrialConfig.model_validate(
        {
            "model": {"width": 8, "depth": 2},
            "data": {"n": 8, "d": 3},
            "steps": 2,
            "probes": {name: 1},
        }
    )
    trace = gs.run_trial(cfg)
    assert len(trace.series(trace.metrics[0])[0]) == 3
