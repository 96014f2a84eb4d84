"""Datasets by name: ``DATASETS`` maps names to loaders; ``load`` adds "did you mean"."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from gdscope import _checks as check

from .chebyshev import chebyshev
from .digits import digits
from .files import load_cifar10, load_mnist_idx
from .lasso import lasso_design
from .mnist1d import mnist1d
from .separation import separated
from .synthetic import gaussian_mixture, sphere, sphere_images, teacher_student

Loader = Callable[..., tuple[torch.Tensor, torch.Tensor]]

DATASETS: Mapping[str, Loader] = MappingProxyType(
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
