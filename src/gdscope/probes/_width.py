"""Refuse, in one line, inputs whose examples are not as wide as the model's first layer.

Otherwise torch's own error (``mat1 and mat2 shapes cannot be multiplied``) comes from deep inside
a probe; the check runs only once the probe's own computation failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from gdscope.probes._checks import buffers_restored


@contextlib.contextmanager
def wrong_width_explained(model: nn.Module, x: object, what: str) -> Iterator[None]:
    """Run the block; where it raises a ``RuntimeError``, refuse a too-narrow or too-wide ``x``.

    The check (:func:`refuse_wrong_width`) runs only after the block failed, so a call that
    works runs the model no more often than before (no extra forward to fire hooks or draw
    random numbers); any other failure is raised as it was.
    """
    try:
        yield
    except RuntimeError:
        try:
            refuse_wrong_width(model, x, what)
        except ValueError as wrong:
            raise wrong from None
        raise


def refuse_wrong_width(model: nn.Module, x: object, what: str) -> None:
    """Refuse, in one line, an ``x`` whose examples are not as wide as the model's first layer.

    Otherwise torch's own error (``mat1 and mat2 shapes cannot be multiplied``) comes from deep
    inside the probe. The model runs on the first two rows of ``x`` (buffers put back) until its
    first product with one of its own tensors (``F.linear``, ``@``/``matmul``/``mm``: a linear
    layer, :class:`~gdscope.models.layers.ScaledLinear`, a :class:`~gdscope.models.TwoLayer`'s
    ``F.linear(x, W)``), whose weight says the width it reads. A model that fails
    before any such product (a convolution of other channels), or has none, is left to the
    probe's own run.

    >>> refuse_wrong_width(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), torch.zeros(4, 3), "probe")
    Traceback (most recent call last):
    ...
    ValueError: probe: x has shape (4, 3), but the model's first layer reads 2 features (its \
'0.weight' has shape (3, 2)); pass x of shape (4, 2)
    """
    if not isinstance(x, Tensor) or x.ndim == 0:
        return
    few = x[:2].clone() if x.ndim > 1 else x.clone()
    first = _FirstProduct(model)
    # _FirstProductError, or a failure before any product: the probe's own run speaks
    with contextlib.suppress(Exception), torch.no_grad(), buffers_restored(model), first:
        model(few)
    if first.seen is None or first.seen[-1] == first.width:
        return
    given, width = tuple(x.shape), first.width
    where = f"its {first.name!r} has shape {first.shape}"
    if first.seen == tuple(few.shape):
        raise ValueError(
            f"{what}: x has shape {given}, but the model's first layer reads {width} features "
            f"({where}); pass x of shape {(*given[:-1], width)}"
        )
    raise ValueError(
        f"{what}: x of shape {given} reaches the model's first layer as {first.seen[-1]} "
        f"features per row, but it reads {width} ({where}); pass x of the shape the model was "
        "built for"
    )


class _FirstProductError(Exception):
    """Raised to end the forward of :func:`refuse_wrong_width` at the model's first product."""


class _FirstProduct(TorchFunctionMode):
    """Record the first ``F.linear(input, W)`` or ``input @ W`` with ``W`` a tensor of the model.

    ``seen``: the input's shape; ``width``: the features ``W`` reads (``F.linear``'s weight is
    ``(out, in)``, a matmul's right factor ``(in, out)`` or ``(in,)``).
    """

    _LINEAR = (F.linear,)
    _PRODUCTS = (F.linear, torch.matmul, Tensor.matmul, torch.mm, Tensor.mm)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = {
            id(t): name
            for named in (model.named_parameters, model.named_buffers)
            for name, t in named(remove_duplicate=False)
        }
        self.seen: tuple[int, ...] | None = None
        self.name, self.shape, self.width = "", (), 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self._PRODUCTS and len(args) >= 2 and isinstance(args[0], Tensor):
            given, weight = args[0], args[1]
            if id(weight) in self.names and given.ndim and weight.ndim:
                self.seen, self.shape = tuple(given.shape), tuple(weight.shape)
                self.name = self.names[id(weight)]
                linear = func in self._LINEAR or weight.ndim == 1
                self.width = weight.shape[-1] if linear else weight.shape[-2]
                raise _FirstProductError
        return func(*args, **(kwargs or {}))
