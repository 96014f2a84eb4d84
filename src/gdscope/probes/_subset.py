"""Select a block of trainable parameters by name or module prefix, for the curvature probes.

``params=["layers.0"]`` selects ``layers.0.weight`` and ``layers.0.bias``; a full name selects
that one tensor. The block of a curvature matrix over a subset ``S`` is ``∂²L/∂θ_S²`` with every
other parameter held at its current value, in ``named_parameters()`` order.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from gdscope._checks import did_you_mean
from gdscope.functional import Params

__all__ = ["Selection", "names_once", "select_params"]


Selection = Iterable[str | Tensor] | str | Tensor | None


def select_params(model: nn.Module, params: Selection) -> Params:
    """Return ``{name: parameter}`` for the trainable parameters ``params`` names, in model order.

    Args:
        model: the network.
        params: parameter names or module prefixes (``"layers.0"`` selects every trainable
            parameter under that module), or the parameters themselves; a single string or
            tensor is one entry; None selects all.

    Returns:
        The selected trainable parameters (not detached), in ``named_parameters()`` order.

    Raises:
        ValueError: if an entry selects no trainable parameter (the message lists the names),
            or if ``params`` is empty.

    """
    trainable: Params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if params is None:
        return trainable
    entries = [params] if isinstance(params, str | Tensor) else list(params)
    if not entries:
        raise ValueError("params must name at least one parameter or module; got none")
    chosen: set[str] = set()
    every = list(model.named_parameters(remove_duplicate=False))
    first_name = {id(p): name for name, p in trainable.items()}
    for entry in entries:
        if isinstance(entry, Tensor):
            hits = {name for name, p in trainable.items() if p is entry}
            if not hits:
                raise ValueError(
                    f"params: a tensor of shape {tuple(entry.shape)} is not a trainable "
                    f"parameter of the model; pass one of {', '.join(trainable)}"
                )
        elif not isinstance(entry, str):
            raise ValueError(
                f"params entries must be names or the model's parameters, got {entry!r}"
            )
        else:  # a parameter shared with a module elsewhere is listed once, under its first name
            hits = {first_name[id(p)] for n, p in every if id(p) in first_name and _under(n, entry)}
        if not hits:
            frozen = isinstance(entry, str) and any(_under(name, entry) for name, _ in every)
            raise ValueError(
                f"params: {entry!r} names no trainable parameter or module"
                + (" (requires_grad=False)" if frozen else "")
                + (
                    f"; trainable parameters: {', '.join(trainable)}{did_you_mean(entry, trainable)}"
                    if trainable
                    else "; the model has no trainable parameters"
                )
            )
        chosen |= hits
    return {name: p for name, p in trainable.items() if name in chosen}


def _under(name: str, entry: str) -> bool:
    return name == entry or name.startswith(entry.rstrip(".") + ".")


def names_once(params: Selection) -> list[str | Tensor] | str | Tensor | None:
    """Return ``params`` as a list (a string, tensor or None as it is), to be read twice."""
    return params if params is None or isinstance(params, str | Tensor) else list(params)
