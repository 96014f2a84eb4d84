import math
import struct
import subprocess
import sys

import pytest
import torch

import gdscope as gs
from _helpers import assert_close

TRIAL_SCRIPT = """
import struct, sys
import gdscope as gs
cfg = gs.TrialConfig.model_validate_json(sys.argv[1])
trace = gs.run_trial(cfg)
print(trace.status, trace.steps)
for step, metric, value in trace.rows():
    print(step, metric, struct.pack('<d', value).hex())
"""


def _fit_two_layer(lr: float, steps: int = 300, width: int = 2048):
    x, y = gs.data.sphere(n=24, d=8, seed=1, dtype=torch.float64)
    net = gs.models.two_layer(d_in=8, width=width, seed=2, dtype=torch.float64)
    opt = gs.optim.make_optimizer("gd", net, lr=lr)
    return gs.train(net, opt, (x, y), steps=steps)


def test_two_layer_relu_fits_sphere_points():
    trace = _fit_two_layer(lr=2.0)
    assert trace.status == "completed"
    _, loss = trace.series("loss")
    assert loss[0] / loss[-1] >= 1000, f"loss fell only {loss[0] / loss[-1]:.1f}x"


def test_huge_learning_rate_is_recorded_as_diverged():
    trace = _fit_two_layer(lr=1e4, steps=50)
    assert trace.status == "diverged"
    assert trace.steps < 50
    last = trace.final("loss")
    assert not math.isfinite(last) or last > 1e6 * trace.series("loss")[1][0]


def _trace_bytes(trace: gs.Trace) -> list[tuple[int, str, str]]:
    return [(s, m, struct.pack("<d", v).hex()) for s, m, v in trace.rows()]


CONFIGS = {
    "full_batch_nesterov": gs.TrialConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 32, "depth": 3, "parameterization": "ntk"},
            "data": {"name": "sphere", "n": 16, "d": 5},
            "optimizer": {"name": "nesterov", "lr": 0.2, "momentum": 0.9},
            "steps": 15,
            "probes": {"loss": 1, "grad_norm": 3, "dist_from_init": 5},
        }
    ),
    "minibatch_adam_digits": gs.TrialConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 16, "depth": 2},
            "data": {"name": "digits", "n": 60},
            "optimizer": {"name": "adam", "lr": 1e-2},
            "steps": 12,
            "batch_size": 8,
            "probes": {"loss": 4, "accuracy": 4, "test": 6},
        }
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_config_gives_bitwise_identical_trace_in_process(name):
    first, second = gs.run_trial(CONFIGS[name]), gs.run_trial(CONFIGS[name])
    assert _trace_bytes(first) == _trace_bytes(second)
    assert (first.status, first.steps) == (second.status, second.steps)


def test_same_config_gives_bitwise_identical_trace_across_processes():
    cfg = CONFIGS["full_batch_nesterov"]
    outs = [
        subprocess.run(
            [sys.executable, "-c", TRIAL_SCRIPT, cfg.model_dump_json()],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    here = gs.run_trial(cfg)
    expected = f"{here.status} {here.steps}\n" + "".join(
        f"{s} {m} {h}\n" for s, m, h in _trace_bytes(here)
    )
    assert outs[0] == outs[1] == expected


def test_different_seeds_differ():
    a = gs.run_trial(CONFIGS["full_batch_nesterov"])
    b = gs.run_trial(CONFIGS["full_batch_nesterov"].model_copy(update={"seed": 1}))
    assert _trace_bytes(a) != _trace_bytes(b)


def _linear_problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(20, 1, generator=gen, dtype=torch.float64)
    net = torch.nn.Linear(4, 1, dtype=torch.float64)
    return net, (x, y)


def test_recorded_loss_and_grad_norm_match_direct_computation():
    net, (x, y) = _linear_problem()
    w0 = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=3, probes={"loss": 1, "grad_norm": 1})
    # replay by hand: θ_{t+1} = θ_t − η ∇L(θ_t), L = (1/2n)‖Xw + b − y‖²
    w, b = w0["weight"].clone(), w0["bias"].clone()
    for t in range(4):
        r = x @ w.T + b - y
        loss = 0.5 * (r**2).sum() / 20
        gw, gb = r.T @ x / 20, r.sum(0) / 20
        assert_close(trace.series("loss")[1][t], loss, rtol=1e-13, what=f"loss at {t}")
        gnorm = torch.sqrt((gw**2).sum() + (gb**2).sum())
        assert_close(trace.series("grad_norm")[1][t], gnorm, rtol=1e-13, what=f"grad at {t}")
        w, b = w - 0.1 * gw, b - 0.1 * gb


def test_dist_from_init_matches_parameter_difference():
    net, data = _linear_problem()
    w0 = net.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, data, steps=5, probes={"dist_from_init": 5})
    steps, dist = trace.series("dist_from_init/weight")
    assert steps.tolist() == [0, 5]
    assert dist[0] == 0.0
    assert_close(dist[-1], torch.linalg.norm(net.weight.detach() - w0), rtol=1e-12)
    assert "rel_dist_from_init" in trace.metrics


def test_probe_schedule_includes_last_checkpoint():
    net, data = _linear_problem()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, data, steps=7, probes={"loss": 3})
    assert trace.series("loss")[0].tolist() == [0, 3, 6, 7]


def test_stop_on_loss_threshold():
    net, data = _linear_problem()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    trace = gs.train(net, opt, data, steps=500, stop=gs.Stop(loss_below=0.65))
    assert trace.status == "stopped"
    assert trace.final("loss") <= 0.65
    assert trace.series("loss")[1][-2] > 0.65


def test_a_stop_measures_every_probe_at_the_stopping_step():
    net, data = _linear_problem()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    probes = {"loss": 1, "grad_norm": 1000, "dist_from_init": 1000}
    trace = gs.train(net, opt, data, steps=500, probes=probes, stop=gs.Stop(loss_below=0.65))
    assert trace.status == "stopped" and 0 < trace.steps < 500
    for metric in ("grad_norm", "dist_from_init"):
        assert trace.series(metric)[0].tolist() == [0, trace.steps]
    assert trace.final("dist_from_init") > 0


def test_stop_on_accuracy_goal():
    x, y = gs.data.separated(n=16, d=4, delta=0.5, seed=0, dtype=torch.float64)
    net = gs.models.mlp(4, 256, depth=2, seed=0, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=2000, stop=gs.Stop(accuracy_at_least=1.0))
    assert trace.status == "stopped", trace.reason
    assert trace.final("accuracy") == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": -1}, "steps"),
        ({"steps": 3, "probes": {"sharpnes": 1}}, "unknown probe 'sharpnes'"),
        ({"steps": 3, "probes": {"loss": 0}}, "positive integer"),
        ({"steps": 3, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    net, data = _linear_problem()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=match):
        gs.train(net, opt, data, **kwargs)


def test_nan_from_the_start_is_diverged_not_a_crash():
    net, (x, y) = _linear_problem()
    y = y.clone()
    y[0] = float("nan")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=5)
    assert (trace.status, trace.steps) == ("diverged", 0)


def test_auto_kernel_tuning_matches_the_dense_kernel_and_is_recorded():
    from gdscope.probes import _reference as ref
    from gdscope.trials.trial import build_trial, kernel_tuning

    cfg = gs.TrialConfig.model_validate(
        {
            "model": {"kind": "two_layer", "width": 256},
            "data": {"name": "sphere", "n": 8, "d": 4},
            "optimizer": {"name": "nesterov", "lr": "auto_kernel", "momentum": "auto_kernel"},
            "steps": 5,
            "dtype": "float64",
        }
    )
    trial = build_trial(cfg)
    eig = torch.linalg.eigvalsh(ref.dense_ntk(trial.model, trial.data[0])) / 8
    kappa = float(eig[-1] / eig[0])
    assert_close(trial.tuning["tuned_lr"], 1 / eig[-1], rtol=1e-10)
    assert_close(trial.tuning["tuned_momentum"], (kappa**0.5 - 1) / (kappa**0.5 + 1), rtol=1e-9)
    assert trial.optimizer.param_groups[0]["lr"] == trial.tuning["tuned_lr"]
    hb = kernel_tuning(trial.model, trial.data[0], "heavy_ball", "mse")
    assert_close(hb["tuned_momentum"], trial.tuning["tuned_momentum"] ** 2, rtol=1e-12)
    with pytest.raises(ValueError, match="needs loss 'mse'"):
        kernel_tuning(trial.model, trial.data[0], "gd", "cross_entropy")
    trace = trial.run()
    assert trace.series("kernel_kappa")[0].tolist() == [0]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
def test_every_model_kind_takes_init_scale_and_parameterization_from_its_config(kind):
    data = {"name": "sphere_images", "n": 4} if kind != "mlp" else {"n": 4, "d": 6}

    def weights(**model):
        config = gs.TrialConfig.model_validate(
            {"model": {"kind": kind, "width": 4, "depth": 2, **model}, "data": data, "steps": 0}
        )
        net = gs.build_trial(config).model
        return [p.detach().clone() for p in net.parameters()], net

    (base, _), (scaled, _) = weights(), weights(init_scale=2.0)
    for one, two in zip(base, scaled, strict=True):
        if one.ndim > 1:  # weights scale with init_scale (biases start at zero)
            assert_close(two, 2 * one, rtol=1e-6, what=kind)
    _, ntk = weights(parameterization="ntk")
    assert any(getattr(m, "multiplier", 1.0) != 1.0 for m in ntk.modules()), kind


# ---------------------------------------------------------------------------------------------
# the loop skeleton every kind of run shares (gdscope.training.skeleton)


def _scripted(values, *, steps, every=1, stop=None, start=None, metrics=True):
    """Drive a run whose watched value at checkpoint t is ``values[t]``; log the calls."""
    calls: list[tuple[str, int]] = []

    def measure(t):
        calls.append(("measure", t))
        recorded = {"v": values[t]} if metrics else {}
        return gs.training.Reading((values[t],), recorded, start if t == 0 else None)

    def rule(t, reading):
        calls.append(("stop", t))
        return stop(t, reading) if stop else None

    watch = gs.training.Watch("v", "v", "1e6 v0")
    trace = gs.training.drive(
        steps, measure, lambda t: calls.append(("update", t)), watch=watch, every=every, stop=rule
    )
    return trace, calls


def test_drive_records_every_kth_and_the_last_checkpoint_and_never_updates_past_it():
    trace, calls = _scripted([1.0] * 8, steps=7, every=3)
    assert (trace.status, trace.steps, trace.reason) == ("completed", 7, "ran 7 steps")
    assert trace.records["v"][0] == [0, 3, 6, 7]
    assert [c for c in calls if c[0] == "update"] == [("update", t) for t in range(7)]
    assert calls[:4] == [("measure", 0), ("stop", 0), ("update", 0), ("measure", 1)]
    assert trace.wall_time_s > 0


def test_drive_divergence_comes_before_the_stop_rule_and_records_the_watched_value():
    values = [2.0, 3.0, math.inf, 1.0]
    trace, calls = _scripted(values, steps=3, every=5, stop=lambda t, r: "always", metrics=False)
    assert (trace.status, trace.steps) == ("stopped", 0)  # the stop rule applies from t = 0
    trace, calls = _scripted(values, steps=3, every=5, metrics=False)
    assert (trace.status, trace.steps) == ("diverged", 2)
    assert trace.reason == "v inf at step 2 (non-finite or > 1e6 v0)"
    assert trace.records == {"v": ([2], [math.inf])}  # not due, but it ends the run
    assert ("stop", 2) not in calls and ("update", 2) not in calls


def test_drive_limit_is_set_by_the_start_at_the_first_checkpoint():
    big = 1.5e6  # above 1e6 × |1.0|, not above 1e6 × |2.0|
    assert _scripted([1.0, big], steps=1)[0].status == "diverged"
    assert _scripted([1.0, big], steps=1, start=2.0)[0].status == "completed"
    assert _scripted([0.0, 1e-23], steps=1)[0].status == "diverged"  # 1e6 × floor 1e-30


def test_every_kind_ends_a_diverged_run_by_the_same_rule():
    from gdscope import trials

    x, y = gs.data.sphere(n=8, d=4, seed=0, dtype=torch.float64)
    net = gs.models.two_layer(4, 64, seed=0, dtype=torch.float64)
    kinds = {
        "network": (gs.train(net, torch.optim.SGD(net.parameters(), lr=1e4), (x, y), 50), "loss"),
        "objective": (
            trials.run_objective(trials.ObjectiveConfig(lr=3.0, steps=100)),
            "f",
        ),
        "lasso": (
            trials.run_lasso(trials.LassoConfig(lr=100.0, steps=200, record_every=7)),
            "objective",
        ),
        "kernel": (
            trials.run_kernel_dynamics(
                trials.KernelDynamicsConfig(lr=10.0, steps=200, record_every=7)
            ),
            "relative_residual",
        ),
    }
    for kind, (trace, metric) in kinds.items():
        steps, values = trace.series(metric)
        assert trace.status == "diverged" and steps[-1] == trace.steps, kind
        start = values[0] if kind != "kernel" else 1.0
        floor = {"network": 1e-30, "objective": 1.0, "lasso": 1e-12, "kernel": 1.0}[kind]
        bad = values[-1]
        assert not math.isfinite(bad) or bad > 1e6 * max(abs(start), floor), kind
        assert f"{bad:.3e} at step {trace.steps} (non-finite or > " in trace.reason, kind


def test_deferred_metrics_are_measured_only_at_recorded_checkpoints():
    from gdscope.training import Reading, Watch, drive

    calls: list[int] = []

    def measure(t):
        return Reading((1.0,), deferred=lambda: calls.append(t) or {"t": float(t)})

    trace = drive(7, measure, lambda t: None, watch=Watch("f", "f =", "1e6"), every=3)
    assert calls == [0, 3, 6, 7]
    assert trace.records["t"] == ([0, 3, 6, 7], [0.0, 3.0, 6.0, 7.0])
