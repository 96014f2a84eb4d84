"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package: never downloaded."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from gdscope import _checks as check

from . import _common as c

_SPLITS = ("train", "test")
_STREAM = {"train": 0, "test": 1}
_CLASSES = 10
_SEED_SPACE = 2**32  # mnist1d seeds numpy's legacy global generator, which takes 32-bit seeds


def _generate(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Call ``mnist1d.data.make_dataset`` and restore the global RNG states it reseeds."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    vars(args).update(num_samples=num_samples, seed=seed, train_split=1.0)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return data["x"], data["y"]


def mnist1d(
    n: int = 4000,
    split: str = "train",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` MNIST-1D sequences of length 40 with their digit labels, generated from ``seed``.

    Each sample is one of ten 1-D digit templates, padded, sheared, scaled, translated, blurred,
    noised and resampled to 40 points by ``mnist1d.data.make_dataset`` (default arguments of
    ``get_dataset_args()``, e.g. ``corr_noise_scale = 0.25``, ``shear_scale = 0.75``). The train
    and test splits come from two independent seeds derived from ``seed`` (so they never share a
    sample, and neither depends on the other's size); each is generated with
    ``10·⌈n/10⌉`` samples (balanced classes, shuffled), standardized over the generated set to
    mean 0, standard deviation 1 as ``mnist1d`` does, and truncated to ``n``. The package's
    global ``numpy``/``random`` reseeding is undone after the call. The standard benchmark has
    4000 training and 1000 test samples.

    Args:
        n: number of samples, ≥ 1.
        split: ``"train"`` or ``"test"``.
        seed: seed from which the split's generation seed is derived.
        dtype: floating-point dtype of ``x``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``: ``x`` float of shape ``(n, 40)``, ``y`` long of shape ``(n,)`` in ``0..9``.

    Raises:
        ValueError: on ``n < 1``, an unknown split, or a bad seed/dtype/device.

    References:
        S. Greydanus, D. Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024
        (arXiv:2011.14439).

    """
    n = check.positive_int("n", n)
    check.one_of("split", split, _SPLITS)
    seed, dtype, device = c.common(seed, dtype, device)
    split_seed = int(c.rng(seed, stream=_STREAM[split]).integers(_SEED_SPACE))
    x, y = _generate(_CLASSES * math.ceil(n / _CLASSES), split_seed)
    return c.to_float(x[:n], dtype, device), c.to_labels(y[:n], device)
