"""Activation functions by name, with the gain used at initialization.

The gain ``g`` multiplies the weights' standard deviation. For ReLU it is ``√2``, the
variance-preserving value ``g² E[σ(h)²] = E[h²]`` for centred Gaussian ``h`` (He et al. 2015,
"Delving deep into rectifiers"). Every other activation keeps ``g = 1``, which is *not*
variance-preserving for them: at ``h ~ N(0, 1)``, ``E[σ(h)²]`` is 0.394 for tanh, 0.425 for
GELU and 0.921 for softplus (variance-preserving gains 1.59, 1.53 and 1.04). ``1`` is
neural-tangents' default ``W_std`` (``torch.nn.init.calculate_gain`` suggests 5/3 for tanh),
and the catalogue's studies are set up with it.
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
    """Return the initialization gain of activation ``name``: ``√2`` for ReLU, ``1`` otherwise.

    >>> activation_gain("relu") ** 2, activation_gain("tanh")
    (2.0000000000000004, 1.0)
    """
    return math.sqrt(2.0) if name == "relu" else 1.0
