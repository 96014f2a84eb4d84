"""The train_error / interpolated probe against hand-counted examples."""

import torch

from _helpers import assert_close
from gdscope.probes.fitting import fit_indicators
from gdscope.training.scheduled import PROBES


def test_sign_targets_counts_errors() -> None:
    out = torch.tensor([[0.5], [-0.2], [0.1], [-3.0]])
    y = torch.tensor([[1.0], [-1.0], [-1.0], [-1.0]])
    got = fit_indicators(out, y)
    assert_close(got["train_error"], 0.25, rtol=1e-6, atol=1e-12)
    assert got["interpolated"] == 0.0


def test_all_correct_is_interpolated() -> None:
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -1.0]])
    y = torch.tensor([0, 1, 0])
    got = fit_indicators(out, y)
    assert got == {"train_error": 0.0, "interpolated": 1.0}


def test_zero_output_counts_as_wrong() -> None:
    got = fit_indicators(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert got == {"train_error": 1.0, "interpolated": 0.0}


def test_registered() -> None:
    assert "train_error" in PROBES
