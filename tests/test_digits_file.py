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
