"""The digits read from scikit-learn's bundled file equal ``load_digits``, without importing it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

digits_module = importlib.import_module("gdscope.data.digits")


def test_bundled_file_equals_load_digits() -> None:
    images, labels = digits_module._raw()
    data, target = load_digits(return_X_y=True)
    assert images.shape == (1797, 64) and labels.dtype == np.int64
    np.testing.assert_array_equal(images, data)
    np.testing.assert_array_equal(labels, target)


def test_loading_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys; from gdscope.data import digits; digits(n=10); print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_trial_held_out_set_is_the_whole_test_split_when_n_exceeds_it() -> None:
    """data.n = 512 trains on 512 digits; the test split has 359 rows: all are held out."""
    import torch

    from gdscope.config import TrialConfig
    from gdscope.trials.networks import load_data

    def sizes(n: int) -> tuple[int, int]:
        raw = {"model": {"kind": "mlp", "width": 8, "depth": 2}, "steps": 1}
        config = TrialConfig.model_validate({**raw, "data": {"name": "digits", "n": n}})
        (x, _), held_out = load_data(config, torch.float32, torch.device("cpu"))
        assert held_out is not None
        return x.shape[0], held_out[0].shape[0]

    assert sizes(512) == (512, 359)
    assert sizes(64) == (64, 64)  # as before: n rows of each split
