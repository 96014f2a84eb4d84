"""Argument checks shared by the model factories: one-line ``ValueError`` naming value and fix."""

from __future__ import annotations

import operator
from collections.abc import Iterable

import torch


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        as_int = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if as_int <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def positive_float(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it is finite and positive, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not 0.0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def one_of(name: str, value: object, accepted: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise ``ValueError`` listing them."""
    names = sorted(accepted)
    if not isinstance(value, str) or value not in names:
        raise ValueError(f"{name} must be one of {names}, got {value!r}")
    return value


def floating_dtype(dtype: object) -> torch.dtype:
    """Return ``dtype`` if it is a floating ``torch.dtype``, else raise ``ValueError``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating torch.dtype (e.g. torch.float64), got {dtype!r}"
        )
    return dtype


def generator(seed: object) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``seed`` (a non-negative integer)."""
    if isinstance(seed, bool):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        as_int = operator.index(seed)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}") from None
    if as_int < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(as_int)
