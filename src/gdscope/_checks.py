"""Argument checks shared by the whole package.

Each returns the value in canonical form or raises ``ValueError`` with one line naming the
argument, what is accepted and the value seen (``"width must be a positive integer, got 0"``).
Never ``assert`` on user input. torch is imported only by the checks that build torch objects,
so that the numeric checks serve torch-free layers too (the report and the statistics).
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer ≥ 1."""
    as_int = _as_int(value)
    if as_int is None or as_int < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer ≥ 0."""
    as_int = _as_int(value)
    if as_int is None or as_int < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return as_int


def seed(value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a non-negative integer seed."""
    return nonnegative_int("seed", value)


def generator(value: Any) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``value`` (a non-negative integer)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed(value))


def real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number in the stated interval."""
    is_number = (not isinstance(value, bool) and isinstance(value, int | float)) or _is_numpy_real(
        value
    )
    number = float(value) if is_number else math.nan
    inside = (low < number if low_open else low <= number) and (
        number < high if high_open else number <= high
    )
    if not (math.isfinite(number) and inside):
        raise ValueError(
            f"{name} must be a finite number{_interval(low, high, low_open, high_open)}, got {value!r}"
        )
    return number


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """`` > 0``, `` in [0, 1)``, ...: the stated interval with its leading space (or nothing)."""
    if math.isinf(high):
        return f" {'>' if low_open else '≥'} {low:g}" if math.isfinite(low) else ""
    if math.isinf(low):
        return f" {'<' if high_open else '≤'} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _is_numpy_real(value: Any) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return getattr(value, "ndim", None) == 0 and kind in ("i", "u", "f")


def positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and > 0."""
    return real(name, value, low=0.0, low_open=True)


def nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and ≥ 0."""
    return real(name, value, low=0.0)


def one_of(name: str, value: Any, accepted: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``accepted``, else raise listing them."""
    options = list(accepted)
    if value not in options:
        listed = ", ".join(repr(a) for a in options)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def floating_dtype(dtype: Any) -> torch.dtype:
    """Return ``dtype`` if it is a floating-point ``torch.dtype``."""
    import torch

    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating-point torch.dtype (e.g. torch.float64), got {dtype!r}"
        )
    return dtype


def device(value: Any) -> torch.device:
    """Return ``torch.device(value)``, raising ``ValueError`` for an unparseable device."""
    import torch

    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch.device or a string like 'cpu' or 'cuda:0', got {value!r}"
        ) from err


def did_you_mean(name: Any, accepted: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``accepted``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(accepted), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def known(what: str, name: Any, accepted: Iterable[str]) -> str:
    """Return ``name`` if it is one of ``accepted``; else raise naming them, with a suggestion."""
    options = list(accepted)
    if name not in options:
        raise ValueError(
            f"unknown {what} {name!r}; accepted: {', '.join(options)}{did_you_mean(name, options)}"
        )
    return name


def records(declared: Iterable[str], metric: str) -> bool:
    """Whether ``metric`` is one of the ``declared`` names or in one of its ``/`` families.

    >>> records(["loss", "dist_from_init/"], "dist_from_init/layers.0.weight")
    True
    >>> records(["loss", "dist_from_init/"], "dist_from_init")
    False
    """
    return any(
        metric == name or (name.endswith("/") and metric.startswith(name)) for name in declared
    )
