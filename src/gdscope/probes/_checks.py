"""Checks at construction that a probe measures a deterministic function of the parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from gdscope.functional import Params

_FIX = "call model.eval() (or pass a model without dropout/batch norm in training mode)"


def check_deterministic(
    model: nn.Module,
    *,
    what: str,
    fn: Callable[[Params], Tensor] | None = None,
    params: Mapping[str, Tensor] | None = None,
) -> None:
    """Raise unless ``model`` (and ``fn``, a loss or an output of it) is deterministic in θ.

    As curvlinops does at construction: no module may draw random masks (dropout with ``p > 0``
    in training mode) or normalize with batch statistics (batch norm in training mode, or
    without running statistics); then, when ``fn`` is given, two evaluations at ``params``
    must agree (which catches randomness inside ``forward``).

    Args:
        model: the network.
        what: the probe's name, for the message (``"NTK"``, ``"sharpness"``, ...).
        fn: ``params ↦`` scalar tensor to evaluate twice; None for the module check only.
        params: where to evaluate ``fn`` (required with ``fn``).

    Raises:
        ValueError: naming the offending module or the two differing values, and the fix.

    """
    noun = "model" if fn is None else "loss"
    for name, module in model.named_modules():
        reason = _random_module(module)
        if reason is not None:
            raise ValueError(
                f"{what} needs a deterministic {noun}: module {name!r} ({type(module).__name__}) "
                f"{reason}"
            )
    if fn is None:
        return
    if params is None:
        raise ValueError("check_deterministic: params are required when fn is given")
    with torch.no_grad():
        detached = {n: p.detach() for n, p in params.items()}
        first, second = fn(detached), fn(detached)
    if not torch.allclose(first, second, rtol=1e-4, atol=0.0, equal_nan=True):
        raise ValueError(
            f"{what} needs a deterministic loss: two evaluations at the same parameters gave "
            f"{first.item()!r} and {second.item()!r}; {_FIX}"
        )


def _random_module(module: nn.Module) -> str | None:
    """Say why ``module`` makes the output random or batch-dependent, or return None."""
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        return f"is in training mode, which draws random masks; {_FIX}"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            return f"is in training mode, which normalizes with batch statistics; {_FIX}"
        if module.running_mean is None or module.running_var is None:
            return (
                "has no running statistics, so it normalizes with batch statistics even in "
                "eval mode; construct it with track_running_stats=True"
            )
    return None
