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
not needed; nor does it run a last linear layer, whose input is all the Gram needs. It yields
the same :class:`~gdscope.probes._ntk_structured.LayerFeatures` as
:func:`~gdscope.probes._ntk_structured.module_features`, in forward order, in less time
(``ntk_gram`` of an MLP 784→256→256→256→1 on 64 inputs, one core, warm caches: 1.73 → 1.39
ms). For a Gram of fewer than :data:`~gdscope.probes._gram.SYRK_MIN_ROWS` rows, where the
call's own work counts, :func:`plain_gram` sums the Gram as the signals go, without the
features in between, each layer's multiplier read once, and symmetrizes it as ``(K + Kᵀ)/2``
(the same inputs, cold caches as ``benchmarks/`` time them, old and new code in one process:
``ntk_gram`` 1.84 → 1.65 ms, neural-tangents 1.51 ms; a toy 784→16→16→16→1 on 8 inputs:
0.66 → 0.47 ms).
For ReLU, tanh and the sigmoid ``Δ ⊙ σ'`` comes from the output ``σ(u)`` by autograd's own
kernels (``threshold_backward``: ``Δ`` where ``σ(u) > 0``; ``tanh_backward``: ``Δ(1 − σ²)``;
``sigmoid_backward``: ``Δσ(1 − σ)``), so it rounds as autograd does; the other activations'
``σ'`` comes from autograd on the activation alone. Nothing runs in place: the
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
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._gram import symmetrized
from ._ntk_structured import LayerFeatures, layer_multipliers, trained_scales
from ._ntk_uses import LINEAR_TYPES

__all__ = ["plain_features", "plain_gram"]


def _relu_back(signal: Tensor, out: Tensor) -> Tensor:
    """Autograd's own ReLU backward: ``Δ`` where ``σ(u) > 0``, else 0."""
    return torch.ops.aten.threshold_backward(signal, out, 0.0)


_BY_OUTPUT: dict[type[nn.Module], tuple[Callable[[Tensor], Tensor], Callable[..., Tensor]]] = {
    nn.ReLU: (torch.relu, _relu_back),
    nn.Tanh: (torch.tanh, torch.ops.aten.tanh_backward),
    nn.Sigmoid: (torch.sigmoid, torch.ops.aten.sigmoid_backward),
}
"""Activations written out here: ``σ`` (out of place, even for ``ReLU(inplace=True)``) and
``(Δ, σ(u)) ↦ Δ ⊙ σ'(u)`` from the output, shaped to broadcast against the signals."""


class _Kept(NamedTuple):
    """What the forward pass keeps of one step for the backward pass."""

    step: nn.Module
    tensor: Tensor
    """A linear layer's input ``H``; an activation's ``σ(u)`` (written out) or ``σ'(u)``."""
    weight: Tensor | None
    """A linear layer's weight ``W``, detached; ``None`` for an activation."""
    alpha: float
    """A linear layer's weight multiplier ``α``."""
    scales: tuple[float | None, float | None]
    """A linear layer's ``(α, α_b)`` where they train (:func:`trained_scales`)."""


def plain_features(steps: list[nn.Module], x: Tensor) -> list[LayerFeatures]:
    """Return the trainable layers' :class:`LayerFeatures` of the stack ``steps`` on ``(n, d)`` ``x``.

    ``steps`` is a stack's :attr:`~gdscope.probes._ntk_uses.PlainStack.steps`. Within rounding, equal to
    :func:`~gdscope.probes._ntk_structured.module_features` (``tests/test_ntk_plain.py``).
    """
    with torch.no_grad():
        kept, k = _forward(steps, x)
        return _backward(kept, x.shape[0], k) if kept else []


def _forward(steps: list[nn.Module], x: Tensor, by_column: bool = False) -> tuple[list[_Kept], int]:
    """Run the stack; keep what the backward pass needs; return it and the number of outputs.

    Before the first trained layer (frozen layers, activations) nothing is kept: the backward
    pass stops there. A last linear layer is not run: the Gram needs its input, not its values.
    ``by_column``: the layers' outputs are laid out by column (see :func:`_linear`).
    """
    kept: list[_Kept] = []
    h = x
    last = steps[-1]
    for step in steps:
        if isinstance(step, LINEAR_TYPES):
            own = step._parameters  # a plain stack's: weight and bias are these (no __getattr__)
            param, bias = own["weight"], own["bias"]
            assert param is not None
            alpha, alpha_b = layer_multipliers(step)
            scales = trained_scales(param, bias, alpha, alpha_b)
            weight = param.detach()  # an expanded view of the parameter would require grad
            if kept or scales != (None, None):
                kept.append(_Kept(step, h, weight, alpha, scales))
            if step is last and h.shape[-1] == weight.shape[1]:  # sizes: the weight's, as torch
                return kept, weight.shape[0]
            h = _linear(weight, bias, h, alpha, alpha_b, by_column)
        elif type(step) in _BY_OUTPUT:
            h = _BY_OUTPUT[type(step)][0](h)
            if kept:
                kept.append(_Kept(step, h, None, 1.0, (None, None)))
        elif type(step) is not nn.Identity:
            if kept:
                h, slope = _autograd_slope(step, h)
                kept.append(_Kept(step, slope, None, 1.0, (None, None)))
            else:  # never in place: h may be the caller's x
                h = step(h.clone() if getattr(step, "inplace", False) else h)
    return kept, h.shape[1]


def _linear(
    weight: Tensor, bias: Tensor | None, h: Tensor, alpha: float, beta: float, by_column: bool
) -> Tensor:
    """``α h Wᵀ + α_b b`` as the layer computes it (one ``addmm`` with a bias); ``W`` detached.

    ``by_column``: computed as ``(α W hᵀ + α_b b 1ᵀ)ᵀ``, an ``(n, out)`` view of an ``(out, n)``
    matrix. The same products; MKL's kernel for ``W hᵀ`` with ``W`` as stored is faster than
    for ``h Wᵀ`` (784→256 on 64 inputs, one core, cold caches: 282 against 337 µs), and
    activations keep the layout, so the next layer's ``hᵀ`` is contiguous.
    """
    if by_column:
        if bias is None:
            z = torch.mm(weight, h.T).T
            return z if alpha == 1.0 else z.mul_(alpha)
        return torch.addmm(bias.detach()[:, None], weight, h.T, beta=beta, alpha=alpha).T
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


def _backward(kept: list[_Kept], n: int, k: int) -> list[LayerFeatures]:
    like = kept[-1].tensor
    features: list[LayerFeatures] = []
    signal = torch.eye(k, dtype=like.dtype, device=like.device).expand(n, k, k)  # (n, k, width)
    identity = True  # the signal is still I: through a linear layer it becomes αW's rows
    for i in range(len(kept) - 1, -1, -1):
        step, tensor, weight, alpha, (weight_scale, bias_scale) = kept[i]
        if weight is None:
            signal = _through_activation(step, signal, tensor.unsqueeze(1))
            identity = False
            continue
        if (weight_scale, bias_scale) != (None, None):
            inputs = tensor.unsqueeze(1) if weight_scale is not None else None
            features.append(LayerFeatures(inputs, signal.unsqueeze(2), weight_scale, bias_scale))
        if i:  # the first trained layer: nothing below it needs a signal
            signal, identity = _through_linear(_scaled(weight, alpha), signal, identity), False
    return features[::-1]


def _through_activation(activation: nn.Module, signal: Tensor, kept: Tensor) -> Tensor:
    """``Δ ⊙ σ'(u)`` from what :func:`_forward` kept (``σ(u)`` or ``σ'(u)``), which broadcasts."""
    known = _BY_OUTPUT.get(type(activation))
    return known[1](signal, kept) if known else signal * kept


def _scaled(weight: Tensor, alpha: float) -> Tensor:
    """``α W`` (``W`` itself when ``α = 1``)."""
    return weight if alpha == 1.0 else alpha * weight


def _through_linear(scaled: Tensor, signal: Tensor, identity: bool) -> Tensor:
    """``α Δ W`` (``scaled`` = ``αW``): the signals at a linear layer's input from its output's."""
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
    n = x.shape[0]
    with torch.no_grad():
        kept, k = _forward(steps, x, by_column=True)
        total: Tensor | None = None
        signal: Tensor | None = None  # (n·k, width); None while it is still the identity
        for i in range(len(kept) - 1, -1, -1):
            step, tensor, weight, alpha, scales = kept[i]
            if weight is None:  # after the last layer Δ = I becomes diag σ'
                rows = _eye_rows(n, k, tensor) if signal is None else signal
                signal = _through_activation(step, rows, _per_row(tensor, k))
                continue
            term = _layer_term(scales, tensor, signal, k, trace)
            if term is not None:
                total = term.to(acc) if total is None else total.add_(term)
            if i:  # the first trained layer: nothing below it needs a signal
                signal = _signal_through(_scaled(weight, alpha), signal, n)
    if total is None:  # trainable parameters the stack's forward never reads: K = 0
        return torch.zeros((n, n) if trace else (n * k, n * k), dtype=acc, device=x.device)
    return symmetrized(total)


def _signal_through(scaled: Tensor, signal: Tensor | None, n: int) -> Tensor:
    """``α Δ W`` (``scaled`` = ``αW``) on ``(n·k, width)`` signals; from ``Δ = I``: ``αW``'s rows.

    Computed as ``(α Wᵀ Δᵀ)ᵀ``: laid out by column, as the forward pass's layers (:func:`_linear`).
    """
    if signal is not None:
        return torch.mm(scaled.T, signal.T).T
    return scaled.expand(n, -1) if scaled.shape[0] == 1 else scaled.repeat(n, 1)


def _per_row(kept: Tensor, k: int) -> Tensor:
    """Repeat each example's ``(n, width)`` row for each of its ``k`` signal rows."""
    return kept if k == 1 else kept.repeat_interleave(k, dim=0)


def _eye_rows(n: int, k: int, like: Tensor) -> Tensor:
    """Return the signals ``Δ = I_k`` of each example as ``(n·k, k)`` rows."""
    return torch.eye(k, dtype=like.dtype, device=like.device).repeat(n, 1)


def _layer_term(
    scales: tuple[float | None, float | None],
    h: Tensor,
    signal: Tensor | None,
    k: int,
    trace: bool,
) -> Tensor | None:
    """``(α² H Hᵀ + α_b²) ⊙ (Δ Δᵀ)`` of one layer, ``(n, n)`` traced or ``(n·k, n·k)``.

    ``scales`` is the layer's ``(α, α_b)`` where trained; ``None`` for a frozen layer.
    """
    alpha, alpha_b = scales
    n = h.shape[0]
    if alpha is None:
        if alpha_b is None:
            return None
        inputs = torch.full((n, n), alpha_b * alpha_b, dtype=h.dtype, device=h.device)
    else:
        inputs = torch.mm(h, h.T)
        if alpha != 1.0:
            inputs.mul_(alpha * alpha)
        if alpha_b is not None:
            inputs.add_(alpha_b * alpha_b)
    if signal is None:  # Δ = I: Δ_(i,a) · Δ_(j,b) = δ_ab
        if k == 1:
            return inputs
        if trace:
            return inputs.mul_(k)
        eye = torch.eye(k, dtype=h.dtype, device=h.device)
        return (inputs[:, None, :, None] * eye[None, :, None, :]).reshape(n * k, n * k)
    if k == 1:
        return torch.mm(signal, signal.T).mul_(inputs)
    if trace:
        per_output = signal.reshape(n, k, -1).transpose(0, 1)  # (k, n, width)
        return torch.bmm(per_output, per_output.transpose(1, 2)).sum(0).mul_(inputs)
    products = torch.mm(signal, signal.T).reshape(n, k, n, k)
    return products.mul_(inputs[:, None, :, None]).reshape(n * k, n * k)
