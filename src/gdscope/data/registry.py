"""Datasets by name: ``DATASETS`` maps names to loaders; ``load`` adds "did you mean".

``DATASETS`` is read-only: the built-in loaders, then those a user named with
:func:`register_dataset` (kept apart in :data:`gdscope.registration.DATASET_REGISTRY`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from gdscope import _checks as check
from gdscope.registration import DATASET_REGISTRY, MergedView

from .chebyshev import chebyshev
from .digits import digits
from .files import load_cifar10, load_mnist_idx
from .lasso import lasso_design
from .mnist1d import mnist1d
from .separation import separated
from .synthetic import gaussian_mixture, sphere, sphere_images, teacher_student

Loader = Callable[..., tuple[torch.Tensor, torch.Tensor]]

BUILT_IN_DATASETS: Mapping[str, Loader] = MappingProxyType(
    {
        "sphere": sphere,
        "sphere_images": sphere_images,
        "teacher_student": teacher_student,
        "gaussian_mixture": gaussian_mixture,
        "separated": separated,
        "chebyshev": chebyshev,
        "lasso": lasso_design,
        "digits": digits,
        "mnist1d": mnist1d,
        "mnist_idx": load_mnist_idx,
        "cifar10": load_cifar10,
    }
)
"""The built-in data sets (a registered name is never one of them)."""

DATASETS: Mapping[str, Loader] = MappingProxyType(
    MergedView(BUILT_IN_DATASETS, DATASET_REGISTRY, lambda entry: entry.fn)
)
"""``data.name`` → loader: the built-in data sets, then the registered ones (read live)."""


def register_dataset(name: str, loader: Callable[..., Any], *, replace: bool = False) -> None:
    """Name a function that loads your data set, for ``data.name = name`` in any config.

    ``loader`` is called like a built-in loader: with those of ``n``, ``d`` (``data.n``,
    ``data.d``), ``seed``, ``dtype``, ``device`` it takes, and ``data.options``; one taking
    ``split`` is called with ``"train"`` and ``"test"``. Its own defaults of ``n`` and ``d``
    stand where the config leaves them unset (gdscope's 64 and 16 fill only a parameter without
    a default). It returns ``(x, y)`` or ``{"train":
    (x, y), "test": (x, y)}`` (tensors or arrays). Its code's digest enters each trial's hash;
    worker processes load it as :mod:`gdscope.registration` says. Registering the same function
    (or the same code) again is a no-op.

    Args:
        name: the ``data.name`` (letters, digits and ``_``), not a built-in data set.
        loader: a function defined at the top level of a module.
        replace: allow giving ``name`` to another function than the one registered.

    Raises:
        ValueError: a bad name, a built-in data set, a name registered for another function
            (without ``replace``), or ``loader`` not a function.

    Example:
        >>> import torch, gdscope as gs
        >>> def noisy_line(n, seed=0):
        ...     g = torch.Generator().manual_seed(seed)
        ...     x = torch.rand(n, 1, generator=g)
        ...     return x, 2 * x[:, 0] + 0.1 * torch.randn(n, generator=g)
        >>> gs.register_dataset("noisy_line", noisy_line)
        >>> x, y = load("noisy_line", n=5)
        >>> tuple(x.shape), tuple(y.shape)
        ((5, 1), (5,))
        >>> config = gs.TrialConfig.model_validate({"data": {"name": "noisy_line", "n": 8}})
        >>> config.data.loader_parameters()
        ['n', 'seed']
        >>> config.model_dump()["data"]["d"] is None  # stored as null: noisy_line takes no d
        True
        >>> unregister_dataset("noisy_line")

    """
    DATASET_REGISTRY.register(name, loader, built_in=BUILT_IN_DATASETS, replace=replace)


def unregister_dataset(name: str) -> None:
    """Remove a name given with :func:`register_dataset` (``ValueError`` if there is none)."""
    DATASET_REGISTRY.unregister(name)


def load(name: str, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the loader registered as ``name`` with ``kwargs``; returns its ``(x, y)``.

    Args:
        name: a key of ``DATASETS``.
        **kwargs: keyword arguments of that loader (e.g. ``n``, ``d``, ``seed``, ``dtype``).

    Returns:
        The loader's ``(x, y)``.

    Raises:
        ValueError: for an unknown name, listing the accepted names and the closest match.

    Example:
        >>> x, y = load("sphere", n=4, d=3, seed=1)
        >>> tuple(x.shape)
        (4, 3)

    """
    return DATASETS[check.known("dataset", name, DATASETS)](**kwargs)
