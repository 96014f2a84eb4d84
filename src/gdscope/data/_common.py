"""Shared argument checks, seeded generators and tensor conversion for the data loaders.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong type) with one line naming the
argument, the value seen and what is accepted. Never ``assert`` on user input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gdscope import _checks as check

Device = str | torch.device


def common(seed: Any, dtype: Any, device: Any) -> tuple[int, torch.dtype, torch.device]:
    """Check the keyword arguments every loader takes: ``seed``, ``dtype``, ``device``."""
    return check.seed(seed), check.floating_dtype(dtype), check.device(device)


def rng(seed: int, stream: int = 0) -> np.random.Generator:
    """Return a fresh numpy generator for ``(seed, stream)``; streams are independent."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def to_float(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Copy a numpy array to a contiguous tensor of ``dtype`` on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)


def to_labels(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy integer class labels to a ``torch.long`` tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device=device)


def subsample(count: int, n: int | None, seed: int, what: str) -> np.ndarray:
    """Pick ``n`` of ``count`` row indices: all in order if ``n`` is None, else seeded."""
    if n is None:
        return np.arange(count)
    n = check.positive_int("n", n)
    if n > count:
        raise ValueError(
            f"n = {n} is more than the {count} rows available in {what}; use n ≤ {count}"
        )
    return rng(seed, stream=99).permutation(count)[:n]
