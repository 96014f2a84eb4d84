"""Shared argument checks, seeded generators and tensor conversion for the data loaders.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong type) with one line naming the
argument, the value seen and what is accepted. Never ``assert`` on user input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Device = str | torch.device


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an integer ≥ 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def seed_int(value: Any) -> int:
    """Return ``value`` if it is a non-negative integer seed, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf) -> float:
    """Return ``value`` as a float if it is a finite real number in ``[low, high]``."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")
    return float(value)


def choice(name: str, value: Any, accepted: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``accepted``, else raise ``ValueError`` listing them."""
    if value not in accepted:
        listed = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def float_dtype(dtype: Any) -> torch.dtype:
    """Return ``dtype`` if it is a floating-point ``torch.dtype``, else raise ``ValueError``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}"
        )
    return dtype


def as_device(device: Any) -> torch.device:
    """Return ``torch.device(device)``, raising ``ValueError`` for an unparseable device."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch.device or a string like 'cpu' or 'cuda:0', got {device!r}"
        ) from err


def common(seed: Any, dtype: Any, device: Any) -> tuple[int, torch.dtype, torch.device]:
    """Check the keyword arguments every loader takes: ``seed``, ``dtype``, ``device``."""
    return seed_int(seed), float_dtype(dtype), as_device(device)


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
    n = positive_int("n", n)
    if n > count:
        raise ValueError(f"n must be at most {count} (the rows available in {what}), got {n}")
    return rng(seed, stream=99).permutation(count)[:n]
