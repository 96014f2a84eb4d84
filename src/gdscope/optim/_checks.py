"""Argument checks shared by the optimizers: messages name the argument, the value and the fix."""

from __future__ import annotations

import math


def check_lr(lr: float) -> float:
    """Return ``lr`` as a float if it is a finite positive number, else raise ``ValueError``."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got lr={lr!r}")
    return float(lr)


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is finite and ``>= 0``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {name}={value!r}")
    return float(value)


def check_momentum(momentum: float) -> float:
    """Return ``momentum`` as a float if it lies in ``[0, 1)``, else raise ``ValueError``."""
    bad = isinstance(momentum, bool) or not isinstance(momentum, (int, float))
    if bad or not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got momentum={momentum!r}")
    return float(momentum)
