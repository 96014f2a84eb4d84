"""Select a block of trainable parameters by name or module prefix, for the curvature probes.

``params=["layers.0"]`` selects ``layers.0.weight`` and ``layers.0.bias``; a full name selects
that one tensor; a parameter or a module of the model (``params=net.layers[0]``) selects that
tensor or every trainable parameter the module holds, by identity. The block of a curvature
matrix over a subset ``S`` is ``∂²L/∂θ_S²`` with every other parameter held at its current
value, in ``named_parameters()`` order.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from gdscope._checks import did_you_mean
from gdscope.functional import Params

__all__ = ["Selection", "names_once", "select_params"]


Selection = Iterable[str | Tensor | nn.Module] | str | Tensor | nn.Module | None


def select_params(model: nn.Module, params: Selection) -> Params:
    """Return ``{name: parameter}`` for the trainable parameters ``params`` names, in model order.

    Args:
        model: the network.
        params: parameter names or module prefixes (``"layers.0"`` selects every trainable
            parameter under that module), or the parameters or modules themselves (a module
            selects the trainable parameters it holds, a tied one under its first name); a
            single string, tensor or module is one entry; None selects all.

    Returns:
        The selected trainable parameters (not detached), in ``named_parameters()`` order.

    Raises:
        ValueError: if an entry selects no trainable parameter (the message lists the names),
            a module entry is not part of the model, or ``params`` is empty.

    """
    trainable: Params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if params is None:
        return trainable
    entries = [params] if isinstance(params, str | Tensor | nn.Module) else list(params)
    if not entries:
        raise ValueError("params must name at least one parameter or module; got none")
    chosen: set[str] = set()
    every = list(model.named_parameters(remove_duplicate=False))
    first_name = {id(p): name for name, p in trainable.items()}
    for entry in entries:
        if isinstance(entry, nn.Module):
            chosen |= _held_by(model, entry, first_name)
            continue
        if isinstance(entry, Tensor):
            hits = {name for name, p in trainable.items() if p is entry}
            if not hits:
                raise ValueError(
                    f"params: a tensor of shape {tuple(entry.shape)} is not a trainable "
                    f"parameter of the model; pass one of {', '.join(trainable)}"
                )
        elif not isinstance(entry, str):
            raise ValueError(
                f"params entries must be names or the model's parameters or modules, got {entry!r}"
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


def _held_by(model: nn.Module, module: nn.Module, first_name: dict[int, str]) -> set[str]:
    """Return the first names of the trainable parameters ``module`` holds (a tied one once).

    Raises:
        ValueError: in one line, if it holds none: not a submodule, or all frozen.

    """
    hits = {first_name[id(p)] for p in module.parameters() if id(p) in first_name}
    if hits:
        return hits
    where = next((name for name, m in model.named_modules() if m is module), None)
    kind = type(module).__name__
    if where is None:
        names = ", ".join(repr(name) for name, _ in model.named_modules() if name)
        raise ValueError(
            f"params: the {kind} given is not a submodule of the model; pass one of its "
            f"submodules or their names: {names}"
        )
    frozen = " (requires_grad=False)" if any(True for _ in module.parameters()) else ""
    listing = (
        f"trainable parameters: {', '.join(first_name.values())}"
        if first_name
        else "the model has no trainable parameters"
    )
    raise ValueError(
        f"params: the {kind} at {where!r} holds no trainable parameter{frozen}; {listing}"
    )


def _under(name: str, entry: str) -> bool:
    return name == entry or name.startswith(entry.rstrip(".") + ".")


def names_once(
    params: Selection,
) -> list[str | Tensor | nn.Module] | str | Tensor | nn.Module | None:
    """Return ``params`` as a list (a string, tensor, module or None as it is), to be read twice."""
    if params is None or isinstance(params, str | Tensor | nn.Module):
        return params
    return list(params)
