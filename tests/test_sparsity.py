"""The ``zero_fraction`` probe: exact-zero counts against a closed form and an oracle over a run."""

import numpy as np
import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.probes.sparsity import zero_fraction


def test_zero_fraction_counts_exact_zeros_only():
    a = torch.tensor(
        [[0.0, 1.0], [-0.0, 1e-300]], dtype=torch.float64
    )  # -0.0 is a zero, 1e-300 not
    b = torch.zeros(3, dtype=torch.float32)
    b[1] = 2.0
    assert zero_fraction([a]) == 0.5
    assert_close(zero_fraction([a, b]), 4 / 7, rtol=1e-6, atol=1e-12)
    assert zero_fraction([torch.ones(5)]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        zero_fraction([torch.empty(0)])


def _train(optimizer: str, steps: int = 60, bias: bool = False):
    cfg = gs.TrialConfig.model_validate(
        {
            "model": {"width": 16, "depth": 2, "bias": bias},
            "data": {"name": "sphere", "n": 16, "d": 4},
            "optimizer": {"name": optimizer, "lr": 0.2, "l1": 0.05},
            "steps": steps,
            "probes": {"zero_fraction": 20, "loss": 20},
            "dtype": "float64",
        }
    )
    trial = gs.build_trial(cfg)
    trace = trial.run()
    return trace, trial.model


@pytest.mark.parametrize("optimizer", ["prox_gd", "subgradient"])
def test_probe_matches_a_numpy_count_of_the_final_parameters(optimizer):
    trace, model = _train(optimizer)
    entries = np.concatenate(
        [p.detach().numpy().ravel() for p in model.parameters() if p.requires_grad]
    )
    steps, values = trace.series("zero_fraction")
    assert list(steps) == [0, 20, 40, 60]
    assert values[0] == 0.0  # random weights, no biases: no exact zeros at init
    assert values[-1] == np.count_nonzero(entries == 0.0) / entries.size


def test_soft_threshold_makes_zeros_and_the_subgradient_step_does_not():
    prox, _ = _train("prox_gd")
    sub, _ = _train("subgradient")
    assert prox.final("zero_fraction") > 0.2
    assert sub.final("zero_fraction") == 0.0


def test_zero_initialised_biases_count_as_zeros_at_init():
    trace, model = _train("prox_gd", steps=0, bias=True)
    biases = sum(p.numel() for name, p in model.named_parameters() if "bias" in name)
    total = sum(p.numel() for p in model.parameters())
    assert trace.series("zero_fraction")[1][0] == biases / total
