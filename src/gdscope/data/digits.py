"""scikit-learn's bundled 8×8 handwritten digits (UCI optdigits test set), no download needed."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gdscope import _checks as check

from . import _common as c

_SPLITS = ("train", "test", "all")
_NORMALIZE = ("unit", "minmax", "standard", None)
_PIXEL_MAX = 16.0


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """Return the 1797 images (flat, 0–16) and labels of ``sklearn.datasets.load_digits``.

    Read from scikit-learn's bundled ``digits.csv.gz`` (rows: 64 pixels, then the label)
    without importing scikit-learn, which costs seconds in every process that loads digits.
    """
    table = _bundled_table()
    if table is None:  # an installation that keeps the file elsewhere
        from sklearn.datasets import load_digits

        data, target = load_digits(return_X_y=True)
    else:
        data, target = table[:, :-1], table[:, -1]
    images, labels = np.asarray(data, dtype=np.float64), np.asarray(target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _bundled_table() -> np.ndarray | None:
    """Return scikit-learn's ``datasets/data/digits.csv.gz`` as an array, ``None`` if not found."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            with gzip.open(path, "rt") as file:
                return np.loadtxt(file, delimiter=",")
    return None


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Mark ``round(test_fraction · count)`` random rows of every class as test rows."""
    gen = c.rng(seed, stream=1)
    test = np.zeros(labels.shape[0], dtype=bool)
    for label in range(10):
        rows = np.flatnonzero(labels == label)
        test[gen.permutation(rows)[: round(test_fraction * rows.size)]] = True
    return test


def _check_classes(classes: Sequence[int] | None) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(10))
    picked = tuple(classes)
    valid = all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in picked)
    if (
        not valid
        or len(picked) < 1
        or len(set(picked)) != len(picked)
        or not set(picked) <= set(range(10))
    ):
        raise ValueError(
            f"classes must be None or distinct digits from 0..9 (e.g. (0, 1)), got {classes!r}"
        )
    return tuple(int(k) for k in picked)


def _normalize(x: np.ndarray, train: np.ndarray, how: str | None) -> np.ndarray:
    if how == "unit":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)
    if how == "minmax":
        return x / _PIXEL_MAX
    if how == "standard":
        mean, std = train.mean(axis=0), train.std(axis=0)
        return (x - mean) / np.where(std > 0, std, 1.0)
    return x


def digits(
    n: int | None = None,
    split: str = "train",
    test_fraction: float = 0.2,
    normalize: str | None = "unit",
    classes: Sequence[int] | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load the 1797 8×8 digit images of scikit-learn as flat 64-vectors with long labels.

    A stratified split puts ``round(test_fraction · count)`` random images of every digit in the
    test part; it depends on ``(test_fraction, seed)`` only, so train and test never overlap and
    a class subset keeps its rows. Normalization (pixels are 0..16):

    * ``"unit"``: every image scaled to unit Euclidean norm, ``x / ‖x‖`` (the ``‖x‖ = 1`` of the
      over-parameterization theory; an all-zero image stays 0);
    * ``"minmax"``: ``x / 16`` ∈ [0, 1];
    * ``"standard"``: per-pixel ``(x − μ) / σ`` with ``μ, σ`` of the training images of the kept
      classes (of all their images for ``split="all"``); constant pixels are only centred;
    * ``None``: raw pixel counts.

    Args:
        n: number of images to return (a seeded random subset of the split); ``None`` for all.
        split: ``"train"``, ``"test"`` or ``"all"``.
        test_fraction: fraction of every class held out for testing, in ``(0, 1)``.
        normalize: ``"unit"``, ``"minmax"``, ``"standard"`` or ``None``.
        classes: digits to keep, e.g. ``(3, 8)``; labels are re-indexed by position, so ``3 → 0``
            and ``8 → 1``. ``None`` keeps all ten.
        seed: seed of the split, the subset and the row order.
        dtype: floating-point dtype of ``x``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``: ``x`` float of shape ``(n, 64)``, ``y`` long of shape ``(n,)``.

    Raises:
        ValueError: on an unknown split or normalization, a fraction outside ``(0, 1)``, bad
            classes, ``n`` above the images available, or a bad seed/dtype/device.

    References:
        E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI ML Repository
        1998; scikit-learn ``sklearn.datasets.load_digits``.

    """
    check.one_of("split", split, _SPLITS)
    check.one_of("normalize", normalize, _NORMALIZE)
    test_fraction = check.real("test_fraction", test_fraction, low=0.0, high=1.0)
    if test_fraction in (0.0, 1.0):
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    picked = _check_classes(classes)
    seed, dtype, device = c.common(seed, dtype, device)
    images, labels = _raw()
    test = _stratified_test_mask(labels, test_fraction, seed)
    wanted = np.isin(labels, picked)
    for name, rows in (("test", test & wanted), ("train", ~test & wanted)):
        if split != "all" and not rows.any():
            raise ValueError(
                f"test_fraction = {test_fraction} leaves the {name} split empty (each class has "
                "about 180 images); use a test_fraction between 0.003 and 0.997"
            )
    fit_rows = wanted & (np.ones_like(test) if split == "all" else ~test)
    keep = wanted & {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    x = _normalize(images[keep], images[fit_rows], normalize)
    reindex = np.full(10, -1, dtype=np.int64)
    reindex[list(picked)] = np.arange(len(picked))
    y = reindex[labels[keep]]
    order = c.rng(seed, stream=2).permutation(x.shape[0])
    order = order[c.subsample(order.size, n, seed, f"digits split {split!r}")]
    return c.to_float(x[order], dtype, device), c.to_labels(y[order], device)
