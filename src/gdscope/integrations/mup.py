r"""μP for a model of your own through microsoft's ``mup`` package (Yang et al. 2021, "Tensor Programs V").

This module wraps ``mup``; it does not re-implement it. μP in ``mup`` needs three things:

1. the output layer is a ``mup.MuReadout`` (a linear layer whose forward is
   ``W (α · x / m)`` with width multiplier ``m = n / n_base``),
2. ``mup.set_base_shapes(model, base, delta=delta)`` marks every parameter's dimensions as
   finite or infinite ("width") by comparing the shapes of a base and a delta model, and
   rescales the readout (and linear biases) from PyTorch's default init to μP's,
3. a μP optimizer: ``MuSGD`` scales the learning rate of vector-like parameters (one infinite
   dimension) by ``m`` and of matrix-like ones (two) by ``fanin_mult/fanout_mult``;
   ``MuAdam`` / ``MuAdamW`` scale matrix-like ones by ``1/m``.

Then the hyperparameters tuned at the base width transfer to any width ("μTransfer").
:func:`mup_model` does 1–2 for a factory ``width -> model``, :func:`set_mup_shapes` for models
you built, and :func:`mup_optimizer` does 3. :func:`gdscope.probes.coordinate_check` checks the
result: under μP the coordinates and their updates stay Θ(1) as width grows.

Needs the ``mup`` extra (``pip install 'gdscope[mup]'``); ``mup`` is imported only when one of
these functions is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch
from torch import nn

__all__ = ["mup_model", "mup_optimizer", "set_mup_shapes"]

_OPTIMIZERS = {"sgd": "MuSGD", "adam": "MuAdam", "adamw": "MuAdamW"}


def _mup() -> ModuleType:
    try:
        import mup
    except ImportError:
        raise ImportError("μP needs microsoft's mup package: pip install 'gdscope[mup]'") from None
    return mup


def set_mup_shapes(
    model: nn.Module,
    base: nn.Module | Mapping[str, Any],
    delta: nn.Module | Mapping[str, Any] | None = None,
    *,
    rescale_params: bool = True,
) -> nn.Module:
    """Set μP base shapes on ``model`` with ``mup.set_base_shapes``; return ``model``.

    A dimension of a parameter is a width dimension when it differs between ``base`` and
    ``delta`` (or, without ``delta``, between ``base`` and ``model``); give a ``delta`` that
    differs from ``base`` in every width dimension, as mup advises.

    Args:
        model: the model to train; its output layer must be a ``mup.MuReadout``.
        base: the model at the base width (or a dict of its parameter shapes).
        delta: the model at another width, only read for which dimensions scale.
        rescale_params: let mup rescale the readout and linear biases to μP's init (once;
            ``False`` for a model loaded from a μP checkpoint).

    Returns:
        ``model``, its parameters carrying mup's ``infshape``.

    Raises:
        ImportError: ``mup`` is not installed.
        ValueError: ``model`` has no ``mup.MuReadout``, or a linear layer maps a width
            dimension to a finite one without being a ``MuReadout``.

    """
    mup = _mup()
    if not any(isinstance(m, mup.MuReadout) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} has no mup.MuReadout: μP needs the output layer to be "
            "mup.MuReadout(width, out_dim) in place of nn.Linear(width, out_dim)"
        )
    try:
        return mup.set_base_shapes(model, base, rescale_params=rescale_params, delta=delta)
    except AssertionError as err:  # mup's check of hidden sizes asserts
        first = str(err).splitlines()[0] if str(err) else "mup rejected the base shapes"
        raise ValueError(first) from None


def mup_model(
    make_model: Callable[[int], nn.Module],
    *,
    width: int,
    base_width: int,
    delta_width: int | None = None,
) -> nn.Module:
    """Build ``make_model(width)`` in μP with base width ``base_width``.

    The target model is built first, so its initialization is what ``make_model(width)`` gives
    from the caller's generator state; the base and delta models (``make_model(base_width)``,
    ``make_model(delta_width)``) are built afterwards, inside ``torch.random.fork_rng``, so they
    consume nothing of the CPU generator.

    Args:
        make_model: ``width -> nn.Module`` whose output layer is a ``mup.MuReadout``.
        width: the width to build.
        base_width: the width at which μP equals the standard parameterization (where
            hyperparameters are tuned).
        delta_width: a second width that tells which dimensions scale; default
            ``2 * base_width``.

    Returns:
        The model at ``width`` with mup's base shapes set (see :func:`set_mup_shapes`).

    Raises:
        ImportError: ``mup`` is not installed.
        ValueError: a width below 1, ``delta_width == base_width``, or a model without
            ``mup.MuReadout``.

    """
    delta_width = 2 * base_width if delta_width is None else delta_width
    if min(width, base_width, delta_width) < 1 or delta_width == base_width:
        raise ValueError(
            f"need widths >= 1 and delta_width != base_width, got width={width}, "
            f"base_width={base_width}, delta_width={delta_width}"
        )
    _mup()
    model = make_model(width)
    with torch.random.fork_rng(devices=[]):
        base = make_model(base_width)
        delta = make_model(delta_width)
    return set_mup_shapes(model, base, delta)


def mup_optimizer(name: str, model: nn.Module, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Return mup's μP optimizer ``MuSGD`` / ``MuAdam`` / ``MuAdamW`` over ``model``'s parameters.

    ``functools.partial(mup_optimizer, "sgd")`` is an ``optimizer`` for
    :func:`gdscope.probes.coordinate_check`.

    Args:
        name: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        model: a model whose base shapes are set (:func:`mup_model`, :func:`set_mup_shapes`).
        lr: the learning rate at the base width.
        **kwargs: passed on to the torch optimizer (``momentum``, ``weight_decay``, …).

    Raises:
        ImportError: ``mup`` is not installed.
        ValueError: an unknown ``name``, or a parameter without mup's base shapes.

    """
    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
    mup = _mup()
    params = list(model.parameters())
    if not all(hasattr(p, "infshape") for p in params):
        raise ValueError(
            f"{type(model).__name__} has no μP base shapes: build it with mup_model(...) or "
            "call set_mup_shapes(model, base, delta) before mup_optimizer"
        )
    return getattr(mup, _OPTIMIZERS[name])(params, lr=lr, **kwargs)
