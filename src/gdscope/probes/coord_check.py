r"""Coordinate check (Yang & Hu 2021, "Tensor Programs IV", §7; the ``mup`` package's coord_check).

For an :class:`~gdscope.models.mlp.MLP` the probe reads the hidden activations
``h_l = σ(L_l h_{l-1})`` (the output of the shared activation module, once per hidden layer, in
order) and the output ``f`` on the training inputs, and returns per layer ``l = 1 … D−1``:

* ``activation_rms/h<l>``: ``RMS(h_l(t))`` — the typical coordinate size;
* ``activation_delta_rms/h<l>``: ``RMS(h_l(t) − h_l(0))`` — how far training moved it;

and ``output_rms = RMS(f_t)``, ``output_delta_rms = RMS(f_t − f_0)``. RMS is over examples and
coordinates. Under μP both the coordinates and their change after a fixed number of steps at a
fixed learning rate are width independent; under SP the change grows with width. The
activations at ``θ_0`` are computed once (with the initial parameters substituted) and kept in
``ProbeContext.memory``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gdscope.functional import Params, apply

__all__ = ["hidden_activations", "rms"]


def hidden_activations(
    model: nn.Module, x: Tensor, params: Params | None = None
) -> tuple[list[Tensor], Tensor]:
    """Return the hidden activations ``[h_1, …, h_{D−1}]`` and the output of an MLP on ``x``.

    Args:
        model: a :class:`~gdscope.models.mlp.MLP` (anything with ``layers`` and a shared
            ``activation`` module applied once per hidden layer).
        x: inputs.
        params: parameters to substitute (e.g. ``θ_0``); ``None`` for the model's own.

    Raises:
        ValueError: if ``model`` has no ``activation`` module.

    """
    activation = getattr(model, "activation", None)
    if not isinstance(activation, nn.Module):
        raise ValueError(
            f"activation_rms needs an MLP with an `activation` module, got {type(model).__name__}"
        )
    seen: list[Tensor] = []
    handle = activation.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            out = model(x) if params is None else apply(model, params, x)
    finally:
        handle.remove()
    return seen, out.detach()


def rms(a: Tensor) -> float:
    """Root mean square of ``a`` in float64 (``sqrt`` taken in Python)."""
    return math.sqrt(float(torch.mean(a.double() ** 2)))
