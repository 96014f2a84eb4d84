r"""Structured NTK features of a plain stack, by a forward and backward pass written out.

A plain stack (:func:`~gdscope.probes._ntk_uses.plain_stack`, not residual) is a chain of linear
layers ``z = α h Wᵀ + α_b b`` and elementwise activations ``h = σ(u)``. The structured NTK
(:mod:`gdscope.probes._ntk_structured`) needs each trainable layer's input ``H`` and the signals
``Δ = ∂f_a/∂z`` of its output for every output ``a``. Back-propagation (Rumelhart, Hinton &
Williams 1986) gives them from ``Δ = I_k`` at the last layer's output, going backwards:

.. math::  Δ ← Δ ⊙ σ'(u) \;\text{(activation)}, \qquad Δ ← α\, Δ\, W \;\text{(linear layer)}.

Written out, the pass has none of what autograd puts around a module call (forward hooks, a
graph, a zero probe per output), keeps nothing before the first trainable layer and stops
there, where autograd would go on to the gradient of that layer's input only to be told it is
not needed. It yields the same :class:`~gdscope.probes._ntk_structured.LayerFeatures` as
:func:`~gdscope.probes._ntk_structured.module_features`, in forward order, in less time
(``ntk_gram`` of an MLP 784→256→256→256→1 on 64 inputs, one core, warm caches: 1.73 → 1.39
ms). For a Gram of fewer than :data:`~gdscope.probes._gram.SYRK_MIN_ROWS` rows, where the
call's own work counts, :func:`plain_gram` sums the Gram as the signals go, without the
features in between (the same inputs, cold caches as ``benchmarks/`` time them: 1.97 → 1.88 ms;
a toy stack: 0.77 → 0.64 ms). ``σ'`` is written out for tanh (``1 − σ²``) and the sigmoid (``σ(1 − σ)``), ReLU's step is
autograd's own kernel (``threshold_backward``: ``Δ`` where ``σ(u) > 0``), and the other
activations' ``σ'`` comes from autograd on the activation alone. Nothing runs in place: the
caller's inputs stay as they were even below ``ReLU(inplace=True)``.

>>> from torch import nn
>>> from gdscope.probes._ntk_uses import plain_structure
>>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
>>> steps = plain_structure(net).steps
>>> [tuple(f.deltas.shape) for f in plain_features(steps, torch.randn(5, 3))]
[(5, 2, 1, 4), (5, 2, 1, 2)]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdscope.models.layers import ScaledLinear

from ._gram import mirror_upper
from ._ntk_structured import LINEAR_TYPES, LayerFeatures, layer_multipliers, layer_scales
from ._ntk_uses import trains

__all__ = ["plain_features", "plain_gram"]

Linear = nn.Linear | ScaledLinear


def _relu_back(signal: Tensor, out: Tensor) -> Tensor:
    """Autograd's own ReLU backward: ``Δ`` where ``σ(u) > 0``, else 0."""
    return torch.ops.aten.threshold_backward(signal, out, 0.0)


_BY_OUTPUT: dict[type[nn.Module], tuple[Callable[[Tensor], Tensor], Callable[..., Tensor]]] = {
    nn.ReLU: (torch.relu, _relu_back),
    nn.Tanh: (torch.tanh, lambda signal, out: signal * (1 - out * out)),
    nn.Sigmoid: (torch.sigmoid, lambda signal, out: signal * (out * (1 - out))),
}
"""Activations written out here: ``σ`` (out of place, even for ``ReLU(inplace=True)``) and
``(Δ, σ(u)) ↦ Δ ⊙ σ'(u)`` from the output, shaped to broadcast against the signals."""


def plain_features(steps: list[nn.Module], x: Tensor) -> list[LayerFeatures]:
    """Return the trainable layers' :class:`LayerFeatures` of the stack ``steps`` on ``(n, d)`` ``x``.

    ``steps`` is a stack's :attr:`~gdscope.probes._ntk_uses.PlainStack.steps`. Within rounding, equal to
    :func:`~gdscope.probes._ntk_structured.module_features` (``tests/test_ntk_plain.py``).
    """
    trainable = [i for i, step in enumerate(steps) if trains(step)]
    if not trainable:
        return []
    with torch.no_grad():
        saved, out = _forward(steps, x, trainable[0])
        return _backward(steps, saved, out, trainable)


def _forward(steps: list[nn.Module], x: Tensor, first: int) -> tuple[list[Tensor | None], Tensor]:
    """Run the stack; from step ``first`` on keep each layer's input and what gives each ``σ'``.

    Before it (frozen layers, activations) nothing is kept: the backward pass stops there.
    """
    saved: list[Tensor | None] = [None] * len(steps)
    h = x
    for i, step in enumerate(steps):
        keep = i >= first
        if isinstance(step, LINEAR_TYPES):
            saved[i] = h if keep else None
            h = _linear(step, h)
        elif type(step) in _BY_OUTPUT:
            h = _BY_OUTPUT[type(step)][0](h)
            saved[i] = h if keep else None
        elif type(step) is not nn.Identity:
            if keep:
                h, saved[i] = _autograd_slope(step, h)
            else:  # never in place: h may be the caller's x
                h = step(h.clone() if getattr(step, "inplace", False) else h)
    return saved, h


def _linear(layer: Linear, h: Tensor) -> Tensor:
    """``α h Wᵀ + α_b b`` as the layer computes it (one ``addmm`` with a bias)."""
    weight, bias = layer.weight.detach(), layer.bias
    alpha, beta = layer_multipliers(layer)
    if bias is None:
        z = torch.mm(h, weight.T)
        return z if alpha == 1.0 else z.mul_(alpha)
    return torch.addmm(bias.detach(), h, weight.T, beta=beta, alpha=alpha)


def _autograd_slope(activation: nn.Module, u: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``σ(u)`` and ``σ'(u)`` (elementwise, so the gradient of ``Σσ`` is ``σ'``)."""
    with torch.inference_mode(False), torch.enable_grad():  # also inside a caller's inference mode
        leaf = u.detach().clone().requires_grad_(True)  # a clone: u may be an inference tensor
        out = activation(leaf.clone() if getattr(activation, "inplace", False) else leaf)
        (slope,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return out.detach(), slope


def _backward(
    steps: list[nn.Module], saved: list[Tensor | None], out: Tensor, trainable: list[int]
) -> list[LayerFeatures]:
    n, k = out.shape
    features: list[LayerFeatures] = []
    signal = torch.eye(k, dtype=out.dtype, device=out.device).expand(n, k, k)  # (n, k, width)
    identity = True  # the signal is still I: through a linear layer it becomes αW's rows
    for i in range(len(steps) - 1, trainable[0] - 1, -1):
        step, kept = steps[i], saved[i]
        if not isinstance(step, LINEAR_TYPES):
            if kept is not None:  # None: nn.Identity
                signal, identity = _through_activation(step, signal, kept.unsqueeze(1)), False
            continue
        assert kept is not None
        if i in trainable:
            alpha, alpha_b = layer_scales(step)
            inputs = kept.unsqueeze(1) if alpha is not None else None
            features.append(LayerFeatures(inputs, signal.unsqueeze(2), alpha, alpha_b))
        if i > trainable[0]:
            signal, identity = _through_linear(step, signal, identity), False
    return features[::-1]


def _through_activation(activation: nn.Module, signal: Tensor, kept: Tensor) -> Tensor:
    """``Δ ⊙ σ'(u)`` from what :func:`_forward` kept (``σ(u)`` or ``σ'(u)``), which broadcasts."""
    known = _BY_OUTPUT.get(type(activation))
    return known[1](signal, kept) if known else signal * kept


def _scaled_weight(layer: Linear) -> Tensor:
    """``α W``, detached: an expanded view of the parameter would require grad."""
    weight, alpha = layer.weight.detach(), layer_multipliers(layer)[0]
    return weight if alpha == 1.0 else alpha * weight


def _through_linear(layer: Linear, signal: Tensor, identity: bool) -> Tensor:
    """``α Δ W``: the signals at a linear layer's input from those at its output."""
    scaled = _scaled_weight(layer)
    n, k, _ = signal.shape
    if identity:  # Δ = I: the rows of αW
        return scaled.expand(n, k, scaled.shape[1])
    return torch.mm(signal.reshape(n * k, -1), scaled).reshape(n, k, -1)


def plain_gram(steps: list[nn.Module], x: Tensor, trace: bool, acc: torch.dtype) -> Tensor:
    r"""Return ``K(x, x)`` of the stack ``steps`` in one pass, the Gram summed as the signals go.

    The same sum as :func:`~gdscope.probes._ntk_structured.features_gram` of
    :func:`plain_features` (``Σ_ℓ (α_ℓ² H_ℓ H_ℓᵀ + α_{b,ℓ}²) ⊙ (Δ_ℓ Δ_ℓᵀ)``, each product in the
    model's dtype, the sum in ``acc``), without the features in between: the signals are kept
    as an ``(n·k, width)`` matrix (rows ``(i, a)``), and at the last layer, where ``Δ = I``, their
    Gram ``δ_{ab}`` is not formed. Returns ``(n·k, n·k)``, or ``(n, n)`` with ``trace``. Meant for
    Grams small enough that the call's own work counts (``ntk_gram`` takes it below
    :data:`~gdscope.probes._gram.SYRK_MIN_ROWS` rows; larger ones go tile by tile, with ``syrk``).

    >>> from gdscope.probes._ntk_structured import features_gram
    >>> from gdscope.probes._ntk_uses import plain_structure
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x, steps = torch.randn(5, 3, dtype=torch.float64), plain_structure(net).steps
    >>> fs = plain_features(steps, x)
    >>> slow = features_gram(fs, fs, False, 2**30, torch.float64).reshape(10, 10)
    >>> bool(torch.allclose(plain_gram(steps, x, False, torch.float64), slow))
    True
    """
    trainable = [i for i, step in enumerate(steps) if _trained_layer(step)]
    n = x.shape[0]
    with torch.no_grad():
        saved, out = _forward(steps, x, trainable[0] if trainable else len(steps))
        k = out.shape[1]
        total = torch.zeros((n, n) if trace else (n * k, n * k), dtype=acc, device=x.device)
        if not trainable:  # trainable parameters the stack's forward never reads: K = 0
            return total
        signal: Tensor | None = None  # (n·k, width); None while it is still the identity
        for i in range(len(steps) - 1, trainable[0] - 1, -1):
            step, kept = steps[i], saved[i]
            if not isinstance(step, LINEAR_TYPES):
                if kept is not None:  # after the last layer Δ = I becomes diag σ'
                    rows = _eye_rows(n, k, kept) if signal is None else signal
                    signal = _through_activation(step, rows, _per_row(kept, k))
                continue
            assert kept is not None
            if i in trainable:
                total.add_(_layer_term(step, kept, signal, k, trace))
            if i > trainable[0]:
                signal = _signal_through(step, signal, n)
    return mirror_upper(total)  # exactly symmetric: the products' rounding need not be


def _trained_layer(step: nn.Module) -> bool:
    """Whether ``step`` is a linear layer whose weight or bias trains (what its forward reads)."""
    return isinstance(step, LINEAR_TYPES) and layer_scales(step) != (None, None)


def _signal_through(layer: Linear, signal: Tensor | None, n: int) -> Tensor:
    """``α Δ W`` on ``(n·k, width)`` signals; from ``Δ = I`` (``None``) the rows of ``αW``."""
    scaled = _scaled_weight(layer)
    if signal is not None:
        return torch.mm(signal, scaled)
    return scaled.expand(n, -1) if scaled.shape[0] == 1 else scaled.repeat(n, 1)


def _per_row(kept: Tensor, k: int) -> Tensor:
    """Repeat each example's ``(n, width)`` row for each of its ``k`` signal rows."""
    return kept if k == 1 else kept.repeat_interleave(k, dim=0)


def _eye_rows(n: int, k: int, like: Tensor) -> Tensor:
    """Return the signals ``Δ = I_k`` of each example as ``(n·k, k)`` rows."""
    return torch.eye(k, dtype=like.dtype, device=like.device).repeat(n, 1)


def _layer_term(step: nn.Module, h: Tensor, signal: Tensor | None, k: int, trace: bool) -> Tensor:
    """``(α² H Hᵀ + α_b²) ⊙ (Δ Δᵀ)`` of one layer, ``(n, n)`` traced or ``(n·k, n·k)``."""
    alpha, alpha_b = layer_scales(step)
    n = h.shape[0]
    if alpha is None:  # a frozen weight, so a trainable bias (else the layer would not train)
        assert alpha_b is not None
        inputs = torch.full((n, n), alpha_b * alpha_b, dtype=h.dtype, device=h.device)
    else:
        inputs = torch.mm(h, h.T)
        if alpha != 1.0:
            inputs.mul_(alpha * alpha)
        if alpha_b is not None:
            inputs.add_(alpha_b * alpha_b)
    if signal is None:  # Δ = I: Δ_(i,a) · Δ_(j,b) = δ_ab
        if trace:
            return inputs.mul_(k) if k != 1 else inputs
        eye = torch.eye(k, dtype=h.dtype, device=h.device)
        return (inputs[:, None, :, None] * eye[None, :, None, :]).reshape(n * k, n * k)
    if k == 1:
        return torch.mm(signal, signal.T).mul_(inputs)
    if trace:
        per_output = signal.reshape(n, k, -1).transpose(0, 1)  # (k, n, width)
        return torch.bmm(per_output, per_output.transpose(1, 2)).sum(0).mul_(inputs)
    products = torch.mm(signal, signal.T).reshape(n, k, n, k)
    return products.mul_(inputs[:, None, :, None]).reshape(n * k, n * k)
