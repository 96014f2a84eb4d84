"""Checks at construction that a probe's scalar is a deterministic function of the parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from gdscope.functional import Params


def check_deterministic(
    model: nn.Module, fn: Callable[[Params], Tensor], params: Mapping[str, Tensor]
) -> None:
    """Raise unless ``fn`` (a loss or an output of ``model``) is a deterministic function of θ.

    Two checks, as curvlinops does at construction: no dropout or batch norm in training mode,
    and two evaluations agree.
    """
    fix = "call model.eval() (or pass a model without dropout/batch norm in training mode)"
    for name, module in model.named_modules():
        random = isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0
        batch_stats = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if module.training and (random or batch_stats):
            kind = type(module).__name__
            raise ValueError(
                f"sharpness needs a deterministic loss: module {name!r} ({kind}) is in training "
                f"mode, which makes the loss depend on random masks or batch statistics; {fix}"
            )
    with torch.no_grad():
        detached = {n: p.detach() for n, p in params.items()}
        first, second = fn(detached), fn(detached)
    if not torch.allclose(first, second, rtol=1e-4, atol=0.0, equal_nan=True):
        raise ValueError(
            "sharpness needs a deterministic loss: two evaluations at the same parameters gave "
            f"{first.item()!r} and {second.item()!r}; {fix}"
        )
