"""What a trial config declares it records (``recorded_metrics()``) is what its run records.

A study refuses, when it loads, a claim naming a metric no trial records; the declarations must
therefore cover every metric a run writes, and name nothing a run never writes.
"""

import pytest

from gdscope._checks import records
from gdscope.config import TrialConfig
from gdscope.trials.trial import run_config, validate_trial

_NETWORK = {
    "model": {"kind": "mlp", "width": 16, "depth": 2},
    "data": {"name": "sphere", "n": 8, "d": 3},
    "loss": "mse",
    "dtype": "float64",
    "steps": 3,
}

CONFIGS = {
    "network, default probes": _NETWORK,
    "network, scheduled probes": {**_NETWORK, "probes": {"residual": 1, "dist_from_init": 2}},
    "network, auto_kernel": {
        **_NETWORK,
        "optimizer": {"name": "nesterov", "lr": "auto_kernel", "momentum": "auto_kernel"},
    },
    "network, auto_sharpness": {**_NETWORK, "optimizer": {"name": "gd", "lr": "auto_sharpness"}},
    "network, readout l1": {
        **_NETWORK,
        "optimizer": {"name": "ista", "lr": 0.05, "l1": 0.1, "l1_scale": "readout_lambda_max"},
    },
    "network, stopping": {**_NETWORK, "probes": {"residual": 1}, "stop": {"loss_below": 1e9}},
    "network, diverging": {**_NETWORK, "probes": {"residual": 1}, "optimizer": {"lr": 1e6}},
    "kernel_dynamics": {"kind": "kernel_dynamics", "steps": 5},
    "objective": {"kind": "objective", "steps": 5},
    "lasso": {"kind": "lasso", "steps": 5},
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_declared_metrics_are_the_recorded_ones(case):
    config = validate_trial(CONFIGS[case])
    declared = config.recorded_metrics()
    recorded = set(run_config(config).metrics)
    assert sorted(m for m in recorded if not records(declared, m)) == []
    missing = {d for d in declared if not any(records([d], m) for m in recorded)}
    # the loss is recorded by its probe, or where the run stops or diverges
    assert missing <= ({"loss"} if case == "network, scheduled probes" else set())


def test_a_family_covers_every_member_and_nothing_else():
    config = TrialConfig.model_validate({**_NETWORK, "probes": {"dist_from_init": 1}})
    declared = config.recorded_metrics()
    assert records(declared, "dist_from_init/layers.0.weight")
    assert not records(declared, "dist_from_init_typo")
    assert not records(declared, "sharpness")
