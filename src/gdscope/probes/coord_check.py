r"""Coordinate check (Yang & Hu 2021, "Tensor Programs IV", §7; the ``mup`` package's coord_check).

For an :class:`~gdscope.models.mlp.MLP` the probe reads the hidden representations
``h_1 … h_{D−1}`` and the output ``f = L_D h_{D−1}`` on the training inputs:
``h_l = σ(L_l h_{l-1})`` for a plain MLP (the output of the shared activation module, once per
hidden layer, in order) and, for a residual one, the residual stream
``h_1 = σ(L_1 x)``, ``h_{l+1} = h_l + β L_{l+1} σ(h_l)`` after each block (the input of the
activation's call ``l`` for ``l < D−1``, and the readout's input ``h_{D−1}``; the activation's
output ``σ(h_l)`` is the branch input, not the stream). It returns per layer ``l = 1 … D−1``:

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

from gdscope.functional import Params, apply, without_autocast

__all__ = ["hidden_activations", "rms"]


@without_autocast
def hidden_activations(
    model: nn.Module, x: Tensor, params: Params | None = None
) -> tuple[list[Tensor], Tensor]:
    """Return the hidden representations ``[h_1, …, h_{D−1}]`` and the output of an MLP on ``x``.

    Args:
        model: a :class:`~gdscope.models.mlp.MLP` (anything with ``layers`` and a shared
            ``activation`` module applied once per hidden layer; with ``residual`` true, the
            forward of :class:`~gdscope.models.mlp.MLP`'s residual blocks).
        x: inputs.
        params: parameters to substitute (e.g. ``θ_0``); ``None`` for the model's own.

    Returns:
        Copies of ``h_1 … h_{D−1}`` (for a residual MLP the stream after each block, see the
        module docstring) and the output, detached.

    Raises:
        ValueError: if ``model`` has no ``activation`` module, or is residual without
            ``layers``.

    """
    activation = getattr(model, "activation", None)
    if not isinstance(activation, nn.Module):
        raise ValueError(
            f"activation_rms needs an MLP with an `activation` module, got {type(model).__name__}"
        )
    seen: list[Tensor] = []
    if getattr(model, "residual", False):
        layers = getattr(model, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(
                f"activation_rms needs the `layers` ModuleList of a residual MLP, got "
                f"{type(model).__name__} without one; build it with gdscope.models.mlp"
            )
        calls = [0]

        def stream_in(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            calls[0] += 1
            if calls[0] > 1:  # call 0 maps L_1 x to h_1; call l reads h_l
                seen.append(inputs[0].detach().clone())

        def readout_in(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            seen.append(inputs[0].detach().clone())

        handles = [activation.register_forward_pre_hook(stream_in)]
        if len(layers) > 1:  # depth 1 is the linear model: no hidden layer
            handles.append(layers[-1].register_forward_pre_hook(readout_in))
    else:
        hook = activation.register_forward_hook(
            lambda _m, _i, out: seen.append(out.detach().clone())
        )
        handles = [hook]
    try:
        with torch.no_grad():
            out = model(x) if params is None else apply(model, params, x)
    finally:
        for handle in handles:
            handle.remove()
    return seen, out.detach()


def rms(a: Tensor) -> float:
    """Root mean square of ``a`` in float64 (``sqrt`` taken in Python)."""
    return math.sqrt(float(torch.mean(a.double() ** 2)))
