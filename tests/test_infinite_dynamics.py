"""``infinite_width_gd``: the infinite-width linear model trained by GD in closed form, its
conditions (``plain_gd_lr``), and the ``linearization_infinite_gap`` metric (R2's reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope import losses
from gdscope.models import mlp
from gdscope.optim import make_optimizer
from gdscope.probes import infinite_width_gd, ntk_infinite
from gdscope.probes.infinite_dynamics import InfiniteWidthGD, plain_gd_lr
from gdscope.training import train


def _data(n: int = 9, k: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, 5, generator=gen, dtype=torch.float64), dim=1)
    return x, torch.randn(n, k, generator=gen, dtype=torch.float64)


def test_the_closed_form_is_the_linear_recursion_stepped_out():
    """``r ← r − (η/n) Θ r``, ``t`` times, with Θ from ``ntk_infinite`` (independent of the model)."""
    x, y = _data()
    net = mlp(5, 16, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=torch.float64)
    with torch.no_grad():
        f0 = net(x)
    theta = ntk_infinite(x, depth=3).ntk
    residual = (f0 - y).numpy()
    for t in range(1, 41):
        residual = residual - 0.7 / x.shape[0] * theta @ residual
        if t in (1, 7, 40):
            got = infinite_width_gd(net, x, y, f0, lr=0.7, steps=t)
            assert_close(got, y + torch.from_numpy(residual), rtol=1e-11, what=f"t={t}")


def test_a_wide_network_trained_by_gd_approaches_it_at_rate_one_half():
    x, y = _data(k=1, seed=1)
    held_out = _data(n=6, k=1, seed=4)
    gaps, test_gaps = [], []
    for width in (64, 2048):
        per_seed, per_seed_test = [], []
        for seed in range(3):
            net = mlp(5, width, depth=3, parameterization="ntk", seed=seed, dtype=torch.float64)
            opt = make_optimizer("gd", net, lr=1.0)
            probes = {"linearization_gap": 30}
            trace = train(net, opt, (x, y), 30, probes=probes, eval_data=held_out)
            per_seed.append(trace.final("linearization_infinite_gap"))
            per_seed_test.append(trace.final("test_linearization_infinite_gap"))
            with torch.no_grad():
                f0 = mlp(5, width, depth=3, parameterization="ntk", seed=seed, dtype=torch.float64)(
                    x
                )
                expected = (net(x) - infinite_width_gd(net, x, y, f0, lr=1.0, steps=30)).pow(2)
            assert_close(per_seed[-1], float(expected.mean().sqrt()), rtol=1e-9)
        gaps.append(float(np.mean(per_seed)))
        test_gaps.append(float(np.mean(per_seed_test)))
    for name, pair in (("train", gaps), ("held out", test_gaps)):
        slope = np.log(pair[1] / pair[0]) / np.log(32)
        assert -0.8 < slope < -0.3, (name, pair, slope)


def test_plain_gd_only():
    net = mlp(5, 8, depth=3, parameterization="ntk", seed=0)
    sgd = lambda **kw: torch.optim.SGD(net.parameters(), **{"lr": 0.3, **kw})  # noqa: E731
    assert plain_gd_lr(sgd(), net) == 0.3
    assert plain_gd_lr(sgd(momentum=0.9), net) is None
    assert plain_gd_lr(sgd(weight_decay=1e-4), net) is None
    assert plain_gd_lr(sgd(maximize=True), net) is None
    assert plain_gd_lr(torch.optim.Adam(net.parameters(), lr=0.3), net) is None
    assert plain_gd_lr(None, net) is None
    readout_only = torch.optim.SGD(net.layers[-1].parameters(), lr=0.3)
    assert plain_gd_lr(readout_only, net) is None  # the other layers do not move: not Θ's GD
    mup = mlp(5, 128, depth=3, parameterization="mup", seed=0)
    assert plain_gd_lr(make_optimizer("gd", mup, lr=0.3), mup) is None  # per-layer steps
    scheduled = sgd()
    scheduler = torch.optim.lr_scheduler.StepLR(scheduled, step_size=1, gamma=0.5)
    scheduled.step()
    scheduler.step()
    assert plain_gd_lr(scheduled, net) is None


def test_a_step_changed_during_the_run_turns_the_metric_off():
    x, y = _data(k=1)
    net = mlp(5, 16, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
    opt = make_optimizer("gd", net, lr=0.5)

    def halve(ctx):
        if ctx.step == 2:
            opt.param_groups[0]["lr"] = 0.25
        return {}

    schedule = {"halve": 1, "linearization_gap": 1}
    trace = train(net, opt, (x, y), 4, probes=schedule, extra_probes={"halve": halve})
    steps, _ = trace.series("linearization_infinite_gap")
    assert list(steps) == [0, 1, 2]  # recorded before the change only


def test_a_step_put_back_after_a_change_keeps_the_metric_off():
    """0.5 → 3.0 → 0.5: the reference would assume every step at 0.5 (0.389 for 0.022 at width
    4096); steps taken at another rate are not undone by putting the rate back."""
    x, y = _data(k=1)
    net = mlp(5, 16, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
    opt = make_optimizer("gd", net, lr=0.5)

    def cycle(ctx):
        if ctx.step in (2, 4):
            opt.param_groups[0]["lr"] = 3.0 if ctx.step == 2 else 0.5
        return {}

    schedule = {"cycle": 1, "linearization_gap": 1}
    trace = train(net, opt, (x, y), 7, probes=schedule, extra_probes={"cycle": cycle})
    steps, _ = trace.series("linearization_infinite_gap")
    assert list(steps) == [0, 1, 2]


@pytest.mark.parametrize("case", ["minibatch", "heavy_ball", "cross_entropy", "sequential"])
def test_the_metric_is_absent_where_the_closed_form_does_not_hold(case):
    x, y = _data(k=1)
    net: torch.nn.Module = mlp(5, 16, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
    kwargs = {}
    if case == "sequential":
        net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        net = net.double()
    name = "heavy_ball" if case == "heavy_ball" else "gd"
    opt = make_optimizer(name, net, lr=0.5)
    if case == "minibatch":
        kwargs["batch_size"] = 3
    if case == "cross_entropy":
        net = mlp(5, 16, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=torch.float64)
        opt, y = make_optimizer("gd", net, lr=0.5), (y[:, 0] > 0).long()
        kwargs["loss_fn"] = losses.cross_entropy
    trace = train(net, opt, (x, y), 4, probes={"linearization_gap": 4}, **kwargs)
    assert "linearization_gap" in trace.metrics
    assert "linearization_infinite_gap" not in trace.metrics


def test_predictions_off_the_training_set_are_the_linear_recursion_stepped_out():
    """``f_* ← f_* − (η/n) Θ(x_*, X) r``, ``r ← r − (η/n) Θ r``, with one ``ntk_infinite`` of the
    training and test inputs together (independent of the model); a duplicated training input
    makes ``Θ`` singular, whose flat direction the closed form must step as ``ηt/n``."""
    x, y = _data(n=9, k=2)
    x[8], y[8] = x[3], -y[3]  # a duplicate with another target: Θ has an exact 0 eigenvalue
    x_test = _data(n=5, k=2, seed=7)[0]
    net = mlp(5, 16, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=torch.float64)
    with torch.no_grad():
        f0, f0_test = net(x), net(x_test)
    theta = ntk_infinite(torch.cat([x, x_test]), depth=3).ntk
    train_block, cross = theta[:9, :9], theta[9:, :9]
    reference = InfiniteWidthGD(net, x, y, f0)
    lr, residual, outputs = 0.7, (f0 - y).numpy(), f0_test.numpy()
    for t in range(1, 41):
        outputs = outputs - lr / 9 * cross @ residual
        residual = residual - lr / 9 * train_block @ residual
        if t in (1, 7, 40):
            got = reference.predict(x_test, f0_test, lr=lr, steps=t)
            assert_close(got, torch.from_numpy(outputs), rtol=1e-10, what=f"t={t}")
    assert_close(reference.predict(x_test, f0_test, lr=lr, steps=0), f0_test, rtol=0)
    on_train = reference.predict(x, f0, lr=lr, steps=13)
    assert_close(on_train, reference.outputs(lr=lr, steps=13), rtol=1e-10, what="x_* = X")


def test_predictions_converge_to_kernel_regression_from_f0():
    x, y = _data(n=7, k=1, seed=2)
    x_test = _data(n=4, k=1, seed=3)[0]
    net = mlp(5, 16, depth=2, parameterization="ntk", seed=1, dtype=torch.float64)
    with torch.no_grad():
        f0, f0_test = net(x), net(x_test)
    kernels = ntk_infinite(torch.cat([x, x_test]), depth=2).ntk
    train_block, cross = kernels[:7, :7], kernels[7:, :7]
    regression = f0_test.numpy() + cross @ np.linalg.solve(train_block, (y - f0).numpy())
    got = InfiniteWidthGD(net, x, y, f0).predict(x_test, f0_test[:, 0], lr=1.0, steps=100_000)
    assert_close(got, torch.from_numpy(regression), rtol=1e-9)


def test_predict_refuses_outputs_that_do_not_match_the_inputs():
    x, y = _data(k=2)
    net = mlp(5, 16, depth=3, out_dim=2, parameterization="ntk", seed=0, dtype=torch.float64)
    reference = InfiniteWidthGD(net, x, y, net(x).detach())
    with pytest.raises(ValueError, match=r"^f0_test must be \(4, 2\)"):
        reference.predict(x[:4], torch.zeros(4), lr=0.1, steps=1)
    with pytest.raises(ValueError, match=r"^steps must be an int >= 0"):
        reference.predict(x[:4], torch.zeros(4, 2), lr=0.1, steps=-1)


def test_the_held_out_metric_is_the_network_against_predict():
    x, y = _data(k=1, seed=1)
    x_test, y_test = _data(n=6, k=1, seed=4)
    net = mlp(5, 64, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
    with torch.no_grad():
        f0, f0_test = net(x), net(x_test)
    opt = make_optimizer("gd", net, lr=1.0)
    trace = train(
        net, opt, (x, y), 20, probes={"linearization_gap": 10}, eval_data=(x_test, y_test)
    )
    steps, values = trace.series("test_linearization_infinite_gap")
    assert list(steps) == [0, 10, 20]
    expected = net(x_test).detach() - InfiniteWidthGD(net, x, y, f0).predict(
        x_test, f0_test, lr=1.0, steps=20
    )
    assert_close(values[-1], float(expected.pow(2).mean().sqrt()), rtol=1e-9)
    assert values[0] == 0.0


def test_predict_computes_the_cross_kernel_once_for_the_same_inputs(monkeypatch):
    """The scheduled probe asks at every checkpoint; Θ(x_*, X) by quadrature took 50 s a call."""
    import gdscope.probes.infinite_dynamics as dynamics

    x, y = _data(k=1)
    x_test = _data(n=4, k=1, seed=5)[0]
    net = mlp(5, 16, depth=3, parameterization="ntk", seed=0, dtype=torch.float64)
    with torch.no_grad():
        f0, f0_test = net(x), net(x_test)
    reference = InfiniteWidthGD(net, x, y, f0)
    calls = []
    kernels = dynamics.mlp_kernels
    monkeypatch.setattr(
        dynamics, "mlp_kernels", lambda *a, **k: calls.append(1) or kernels(*a, **k)
    )
    first = reference.predict(x_test, f0_test, lr=0.5, steps=3)
    again = reference.predict(x_test.clone(), f0_test, lr=0.5, steps=9)
    assert len(calls) == 1 and not torch.equal(first, again)
    reference.predict(x_test + 1.0, f0_test, lr=0.5, steps=3)
    assert len(calls) == 2
