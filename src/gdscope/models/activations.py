"""Activation functions by name, with the variance-preserving gain used at initialization.

The gain ``g`` of an activation ``σ`` is chosen so that ``g² E[σ(h)²] = E[h²]`` for Gaussian
``h``: ``g = √2`` for ReLU (He et al. 2015, "Delving deep into rectifiers"), ``1`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

ACTIVATIONS: frozenset[str] = frozenset(_FACTORIES)


def get_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name``.

    Raises:
        ValueError: if ``name`` is not one of ``ACTIVATIONS``.

    """
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"activation must be one of {sorted(_FACTORIES)}, got {name!r}")
    return _FACTORIES[name]()


def activation_gain(name: str) -> float:
    """Return the initialization gain of activation ``name``: ``√2`` for ReLU, ``1`` otherwise."""
    return math.sqrt(2.0) if name == "relu" else 1.0
