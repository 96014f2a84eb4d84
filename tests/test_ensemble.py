"""The ensemble gives the one-by-one loop's numbers: bitwise, per member, statuses included."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gdscope as gs
import gdscope.ensemble._trials as trials_module
from _helpers import assert_close
from gdscope.ensemble import (
    Ensemble,
    NotBatchableError,
    StackedSGD,
    batch_refusal,
    can_batch,
    group_trials,
    run_trial_group,
    train_ensemble,
)
from gdscope.trials.trial import run_config

DTYPES = [torch.float64, torch.float32]
OPTIMIZERS = [("gd", None), ("heavy_ball", 0.8), ("nesterov", 0.9)]
LRS = [0.05, 0.3, 0.7, 1.1]


def two_layer_sweep(dtype, optimizer="gd", momentum=None, lrs=LRS, width=64):
    nets = [
        gs.models.two_layer(6, width, seed=s, init_scale=1.0 + 0.5 * s, dtype=dtype)
        for s in range(len(lrs))
    ]
    opts = [
        gs.optim.make_optimizer(optimizer, net, lr, momentum=momentum)
        for net, lr in zip(nets, lrs, strict=True)
    ]
    return nets, opts


def sphere(dtype, seed=0, n=12, d=6):
    x, y = gs.data.sphere(n=n, d=d, seed=seed)
    return x.to(dtype), y.to(dtype)


def loop(nets, opts, data, steps, **kwargs):
    per_member = data if isinstance(data, list) else [data] * len(nets)
    return [
        gs.train(net, opt, batch, steps, **kwargs)
        for net, opt, batch in zip(nets, opts, per_member, strict=True)
    ]


def assert_same_traces(got, expected):
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert (a.status, a.steps, a.reason) == (b.status, b.steps, b.reason), f"member {i}"
        assert a.records == b.records, f"member {i}: records differ"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "momentum"), OPTIMIZERS)
def test_matches_loop_bitwise(dtype, name, momentum):
    probes = {"loss": 1, "grad_norm": 4, "dist_from_init": 5}
    data = sphere(dtype)
    expected = loop(*two_layer_sweep(dtype, name, momentum), data, 20, probes=probes)
    got = train_ensemble(*two_layer_sweep(dtype, name, momentum), data, 20, probes=probes)
    assert_same_traces(got, expected)


def test_mlp_param_groups_per_member_data_cross_entropy():
    """μP lr multipliers (param groups), biases, one data set per member, cross-entropy."""

    def build():
        nets = [
            gs.models.mlp(6, 32, depth=3, out_dim=3, parameterization="mup", seed=s)
            for s in range(3)
        ]
        opts = [gs.optim.make_optimizer("nesterov", n, 0.2 * (i + 1)) for i, n in enumerate(nets)]
        return nets, opts

    data = []
    for s in range(3):
        x, _ = gs.data.sphere(n=10, d=6, seed=s)
        data.append((x, torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(s))))
    kwargs = {"loss_fn": gs.losses.cross_entropy, "probes": {"loss": 1, "accuracy": 2}}
    assert_same_traces(
        train_ensemble(*build(), data, 12, **kwargs), loop(*build(), data, 12, **kwargs)
    )


def test_divergence_is_per_member():
    lrs = [0.1, 500.0, 0.5]
    data = sphere(torch.float64)
    expected = loop(*two_layer_sweep(torch.float64, lrs=lrs), data, 15)
    got = train_ensemble(*two_layer_sweep(torch.float64, lrs=lrs), data, 15)
    assert [t.status for t in got] == ["completed", "diverged", "completed"]
    assert got[1].steps < 15
    assert_same_traces(got, expected)


def test_stop_rules_are_per_member():
    stop = gs.Stop(loss_below=0.05)
    data = sphere(torch.float64)
    expected = loop(*two_layer_sweep(torch.float64, width=256), data, 60, stop=stop)
    got = train_ensemble(*two_layer_sweep(torch.float64, width=256), data, 60, stop=stop)
    assert len({t.steps for t in got}) > 1, "members should stop at different steps"
    assert_same_traces(got, expected)
    probes = {"loss": 1, "grad_norm": 100, "ntk_spectrum": 100}  # due only at 0 and at the stop
    expected = loop(*two_layer_sweep(torch.float64, width=256), data, 60, probes=probes, stop=stop)
    got = train_ensemble(
        *two_layer_sweep(torch.float64, width=256), data, 60, probes=probes, stop=stop
    )
    assert all(t.series("ntk_lambda_min")[0].tolist() == [0, t.steps] for t in got)
    assert_same_traces(got, expected)


def test_live_module_probes_equal_single_model_probes():
    probes = {"loss": 2, "sharpness": 3, "ntk_spectrum": 3, "activation_flips": 3}
    data = sphere(torch.float64)
    expected = loop(*two_layer_sweep(torch.float64, lrs=LRS[:3]), data, 6, probes=probes)
    got = train_ensemble(*two_layer_sweep(torch.float64, lrs=LRS[:3]), data, 6, probes=probes)
    assert "sharpness" in got[0].records and "ntk_lambda_min" in got[0].records
    assert_same_traces(got, expected)


def test_fast_mode_agrees_to_rounding():
    data = sphere(torch.float64)
    expected = loop(*two_layer_sweep(torch.float64), data, 20)
    got = train_ensemble(*two_layer_sweep(torch.float64), data, 20, exact=False)
    for a, b in zip(got, expected, strict=True):
        assert_close(a.series("loss")[1], b.series("loss")[1], rtol=1e-12, what="fast loss")


def test_stacked_sgd_is_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 7, generator=gen) for _ in range(3)]
    lrs = [0.1, 0.25, 3.0]
    singles = [p.clone().requires_grad_() for p in params]
    torch_opts = [
        torch.optim.SGD([p], lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3)
        for p, lr in zip(singles, lrs, strict=True)
    ]
    stacked = torch.stack(params)
    ours = StackedSGD(
        [stacked],
        lr=[torch.tensor(lrs)],
        momentum=[torch.full((3,), 0.9)],
        weight_decay=[torch.full((3,), 1e-3)],
        nesterov=True,
    )
    for _ in range(4):
        grads = torch.randn(3, 5, 7, generator=gen)
        for p, g, opt in zip(singles, grads, torch_opts, strict=True):
            p.grad = g.clone()
            opt.step()
        stacked.grad = grads
        ours.step()
    assert torch.equal(stacked, torch.stack([p.detach() for p in singles]))


def test_refuses_what_it_cannot_reproduce():
    nets = [gs.models.two_layer(4, 8, seed=0), gs.models.two_layer(4, 16, seed=1)]
    with pytest.raises(NotBatchableError, match="differs from model 0"):
        Ensemble(nets)
    nets, _ = two_layer_sweep(torch.float32, lrs=[0.1, 0.2])
    adam = [torch.optim.Adam(n.parameters()) for n in nets]
    with pytest.raises(NotBatchableError, match=r"only torch\.optim\.SGD"):
        train_ensemble(nets, adam, sphere(torch.float32), 2)
    nets, _ = two_layer_sweep(torch.float32, lrs=[0.1, 0.2])
    mixed = [
        torch.optim.SGD(nets[0].parameters(), lr=0.1),
        torch.optim.SGD(nets[1].parameters(), lr=0.1, momentum=0.9),
    ]
    with pytest.raises(NotBatchableError, match="members differ"):
        train_ensemble(nets, mixed, sphere(torch.float32), 2)


class _Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)
        torch.nn.init.normal_(self.lin.weight, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        out = self.lin(x)
        return out if bool(out.sum() > 0) else -out


def test_unbatchable_forward_is_refused_before_training():
    nets = [_Branchy(s) for s in range(2)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    before = [n.lin.weight.detach().clone() for n in nets]
    with pytest.raises(NotBatchableError, match="batched step failed"):
        train_ensemble(nets, opts, sphere(torch.float32, d=4), 3)
    assert all(torch.equal(n.lin.weight, w) for n, w in zip(nets, before, strict=True))


BASE = {
    "model": {"kind": "two_layer", "width": 64},
    "data": {"name": "sphere", "n": 12, "d": 6, "seed": 0},
    "optimizer": {"name": "gd", "lr": 0.5},
    "loss": "mse",
    "steps": 15,
    "dtype": "float64",
    "probes": {"loss": 5, "dist_from_init": 15},
}


def _with(base, **changes):
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def test_grouping():
    configs = [
        _with(BASE, seed=0),
        _with(BASE, seed=1, optimizer__lr=0.25),
        _with(BASE, model__init_scale=4.0),
        _with(BASE, model__width=128),
        _with(BASE, optimizer__name="adam"),
        _with(BASE, batch_size=4),
        _with(BASE, seed=2, model__width=128),
        {"kind": "objective"},
    ]
    assert group_trials(configs) == [[0, 1, 2], [3, 6], [4], [5], [7]]
    assert group_trials(configs, max_size=2) == [[0, 1], [2], [3, 6], [4], [5], [7]]
    assert can_batch(configs[:3])
    assert "model.width" in (batch_refusal([configs[0], configs[3]]) or "")
    assert "optimizer 'adam'" in (batch_refusal(configs[4:5]) or "")
    assert "mini-batch" in (batch_refusal(configs[5:6]) or "")
    assert "not batched" in (batch_refusal(configs[7:]) or "")


@pytest.fixture
def no_fallback(monkeypatch):
    def refuse(config):
        raise AssertionError("run_trial_group fell back to the loop")

    monkeypatch.setattr(trials_module, "run_config", refuse)


def _assert_equal_results(got, expected):
    for a, b in zip(got, expected, strict=True):
        assert isinstance(a, gs.Trace), a
        assert (a.status, a.steps, a.reason, a.records) == (b.status, b.steps, b.reason, b.records)


def test_trial_group_lazy_scaling_like(no_fallback):
    """lazy-scaling: two-layer, float64, init-scale sweep × seeds, data seed fixed."""
    configs = [_with(BASE, seed=s, model__init_scale=a) for a in (1.0, 4.0) for s in (0, 1)]
    assert group_trials(configs) == [[0, 1, 2, 3]]
    expected = [run_config(c) for c in configs]
    _assert_equal_results(run_trial_group(configs), expected)


def test_trial_group_lr_transfer_like(no_fallback):
    """lr-transfer: MLP on digits, float32, cross-entropy, learning-rate sweep × seeds."""
    base = {
        "model": {"kind": "mlp", "width": 16, "depth": 3, "parameterization": "mup"},
        "data": {"name": "digits", "n": 64, "seed": 0},
        "optimizer": {"name": "heavy_ball", "lr": 0.5},
        "steps": 8,
        "probes": {"loss": 4, "accuracy": 8},
    }
    configs = [_with(base, seed=s, optimizer__lr=lr) for lr in (0.1, 1.0) for s in (0, 1)]
    expected = [run_config(c) for c in configs]
    _assert_equal_results(run_trial_group(configs), expected)


def test_trial_group_seeded_data_stop_and_divergence(no_fallback):
    """Data drawn per seed (data.seed unset), a stop rule, and one member that diverges."""
    base = _with(BASE, data__seed=None, stop={"loss_below": 1e-3}, optimizer__name="nesterov")
    configs = [_with(base, seed=0), _with(base, seed=1, optimizer__lr=200.0), _with(base, seed=2)]
    expected = [run_config(c) for c in configs]
    assert expected[1].status == "diverged"
    _assert_equal_results(run_trial_group(configs), expected)


def test_trial_group_falls_back_to_the_loop():
    configs = [_with(BASE, optimizer__name="adam", seed=s) for s in range(2)]
    configs.append(_with(BASE, model__width=-1))
    got = run_trial_group(configs)
    expected = [run_config(c) for c in configs[:2]]
    _assert_equal_results(got[:2], expected)
    assert isinstance(got[2], Exception)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "momentum"), OPTIMIZERS)
def test_matches_loop_bitwise_on_cuda(dtype, name, momentum):
    """On CUDA either the ensemble reproduces the loop bit for bit or it refuses (never drifts)."""
    probes = {"loss": 1, "grad_norm": 4, "dist_from_init": 5}
    x, y = sphere(dtype)
    data = (x.cuda(), y.cuda())

    def sweep():
        nets, _ = two_layer_sweep(dtype, name, momentum)
        nets = [net.cuda() for net in nets]
        opts = [
            gs.optim.make_optimizer(name, net, lr, momentum=momentum)
            for net, lr in zip(nets, LRS, strict=True)
        ]
        return nets, opts

    expected = loop(*sweep(), data, 20, probes=probes)
    try:
        got = train_ensemble(*sweep(), data, 20, probes=probes)
    except NotBatchableError:
        return  # refused: the runner then runs the loop, which is exact by definition
    assert_same_traces(got, expected)
