r"""Structured NTK: per-layer Grams of layer inputs and back-propagated signals.

For a layer ``y_ℓ = α W ⋆ h + α_b b`` whose output at ``L`` positions ``p`` (one for a linear
layer on ``(n, d)`` inputs, ``H·W`` for a convolution) is ``y_{ℓ,p} = α W H_p + α_b b`` with
``H_p`` the input (patch) at ``p``, the per-example gradients of output ``a`` are

.. math::  ∂f_a/∂W = α\,Σ_p Δ^a_{p} H_p^\top, \qquad ∂f_a/∂b = α_b\,Σ_p Δ^a_{p},
           \qquad Δ^a_{p} = ∂f_a / ∂y_{ℓ,p},

so the layer's NTK contribution is, without forming any per-example gradient,

.. math::  K_ℓ[(i,a),(j,b)] = α^2 Σ_{p,q} (H_i H_j^\top)_{pq}\,(Δ^a_i Δ^{b\top}_j)_{pq}
           + α_b^2\, (Σ_p Δ^a_{i,p})^\top (Σ_q Δ^b_{j,q})

(Novak, Sohl-Dickstein & Schoenholz 2022, "Fast finite width neural tangent kernel", the
"structured derivatives" rule). ``Δ`` is taken with respect to the layer's full output, so ``α``
(applied after ``W ⋆ h``) enters squared and ``α_b`` likewise. ``H`` is captured by forward hooks
and ``Δ`` by one batched backward per output; this presumes examples do not interact (eval mode).
A module called several times (shared weights) contributes its calls as extra positions.
The identity covers a parameter only when its layer's own forward is the one reading it; any
other read (a tied decoder ``F.linear(h, enc.weight.t())``) adds Jacobian terms that no layer's
``H`` and ``Δ`` see, which :func:`~gdscope.probes._ntk_uses.uncovered_uses` finds in a traced forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdscope.models.layers import ScaledConv2d, ScaledLinear
from gdscope.models.two_layer import TwoLayer
from gdscope.probes._gram import mirror_upper, upper_gram

from ._ntk_uses import CONV_TYPES
from ._stock import closed_form_two_layer


@dataclass(frozen=True)
class LayerFeatures:
    """What one layer contributes to the NTK of a tile of ``n`` examples.

    Attributes:
        inputs: ``(n, L, d_in)`` layer inputs (conv: unfolded patches), or ``None`` if the
            weight is frozen.
        deltas: ``(n, k, L, d_out)`` gradients of each of the ``k`` outputs w.r.t. the layer output.
        weight_scale: ``α`` (``None`` if the weight is frozen).
        bias_scale: ``α_b`` (``None`` if there is no trainable bias).

    """

    inputs: Tensor | None
    deltas: Tensor
    weight_scale: float | None
    bias_scale: float | None


def layer_multipliers(module: nn.Module) -> tuple[float, float]:
    """Return the ``(α, α_b)`` a layer's forward applies: gdscope's scaled layers' own, else 1."""
    if isinstance(module, (ScaledLinear, ScaledConv2d)):  # other layers: their stock forward
        return float(module.multiplier), float(module.bias_multiplier)
    return 1.0, 1.0


def layer_scales(module: nn.Module) -> tuple[float | None, float | None]:
    """Return a layer's ``(α, α_b)``, each ``None`` where its weight (bias) is frozen or absent."""
    alpha, alpha_b = layer_multipliers(module)
    bias = module._parameters.get("bias")  # a buffer named bias is held fixed, trained or not
    return trained_scales(module.weight, bias, alpha, alpha_b)  # pyright: ignore[reportArgumentType]


def trained_scales(
    weight: Tensor, bias: Tensor | None, alpha: float, alpha_b: float
) -> tuple[float | None, float | None]:
    """``(α, α_b)`` of a layer with this weight and bias, each ``None`` where frozen or absent."""
    trains_bias = bias is not None and bias.requires_grad
    return (alpha if weight.requires_grad else None, alpha_b if trains_bias else None)


Pair = tuple[int, int]


def _conv_geometry(module: nn.Module) -> tuple[Pair, Pair, Pair, str | Pair]:
    """Return ``(kernel, stride, dilation, padding)`` of a conv layer (the kernel: its weight's)."""
    weight = module.weight  # a parameter, or a buffer held fixed
    assert isinstance(weight, Tensor)
    kh, kw = (int(side) for side in weight.shape[-2:])  # as F.conv2d reads it, not kernel_size
    if isinstance(module, ScaledConv2d):
        return (kh, kw), (1, 1), (1, 1), "same"
    assert isinstance(module, nn.Conv2d)
    padding = module.padding
    pad: str | Pair = padding if isinstance(padding, str) else (int(padding[0]), int(padding[1]))
    return (
        (kh, kw),
        (int(module.stride[0]), int(module.stride[1])),
        (int(module.dilation[0]), int(module.dilation[1])),
        pad,
    )


def conv_patches(module: nn.Module, x: Tensor) -> Tensor:
    """Return the ``(n, L, C_in·kh·kw)`` input patches of a conv layer, one row per output position."""
    kernel, stride, dilation, padding = _conv_geometry(module)
    if isinstance(padding, str):  # "same" (stride 1) pads total d(k-1), the odd one on the right
        pads: list[int] = []
        for k, d in zip(reversed(kernel), reversed(dilation), strict=True):  # W first for F.pad
            total = 0 if padding == "valid" else d * (k - 1)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads)
        padding = (0, 0)
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (n, C k², L)
    return cols.transpose(1, 2)


def _layer_inputs(module: nn.Module, x: Tensor) -> Tensor:
    n = x.shape[0]
    if isinstance(module, CONV_TYPES):
        return conv_patches(module, x)
    return x.reshape(n, -1, x.shape[-1])


def _channels_last(y: Tensor, module: nn.Module) -> Tensor:
    n = y.shape[0]
    if isinstance(module, CONV_TYPES):
        return y.flatten(2).transpose(1, 2)  # (n, C_out, H, W) -> (n, L, C_out)
    return y.reshape(n, -1, y.shape[-1])


def _backprop(out: Tensor, probes: list[Tensor]) -> list[Tensor]:
    """Return, per probe, ``(n, k, *probe.shape[1:])`` gradients of each output column."""
    flat = out.reshape(out.shape[0], -1)
    k = flat.shape[1]
    per_output = []
    for a in range(k):
        grads = torch.autograd.grad(
            flat[:, a].sum(), probes, retain_graph=a < k - 1, allow_unused=True
        )
        per_output.append(
            [torch.zeros_like(p) if g is None else g for g, p in zip(grads, probes, strict=True)]
        )
    if k == 1:  # a view, no copy
        return [g.unsqueeze(1) for g in per_output[0]]
    return [torch.stack([g[i] for g in per_output], dim=1) for i in range(len(probes))]


def module_features(
    model: nn.Module, x: Tensor, plain: bool = False
) -> tuple[Tensor, list[LayerFeatures]]:
    """Run ``model`` on ``x`` with hooks; return the outputs and each layer's :class:`LayerFeatures`.

    Each hooked output ``y`` is replaced by ``y + z`` with a zero leaf ``z``, and ``Δ = ∂f/∂z``,
    so later in-place operations on the output cannot corrupt ``Δ``. With ``plain`` (the model
    is a :func:`~gdscope.probes._ntk_uses.plain_stack`, whose code is known) and no module
    working in place, ``Δ = ∂f/∂y`` is taken at the outputs themselves: no zero leaves, no
    additions.
    """
    with torch.inference_mode(False):  # a copy: a module working in place on its input (the
        x = x.clone()  # first, say) would write the caller's; and a normal tensor in inference mode
    if closed_form_two_layer(model):
        return _two_layer_features(model, x)
    calls: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}
    direct = plain and not any(getattr(m, "inplace", False) for m in model.modules())

    forward = [True]  # a checkpointed block runs its layers again in the backward pass

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        if not forward[0]:
            return None
        if direct:
            calls.setdefault(module, []).append((args[0].detach(), output))
            return None
        probe = torch.zeros_like(output, requires_grad=True)
        calls.setdefault(module, []).append((args[0].detach(), probe))
        return output + probe

    hooked = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(False))]
    handles = [m.register_forward_hook(hook) for m in hooked]
    try:
        with torch.inference_mode(False), torch.enable_grad():  # also in a caller's inference mode
            out = model(x)
            forward[0] = False
            probes = [p for m in calls for _, p in calls[m]]
            grads = iter(_backprop(out, probes))
    finally:
        for handle in handles:
            handle.remove()
    features = []
    for module, module_calls in calls.items():
        inputs, deltas = [], []
        for h, _ in module_calls:
            g = next(grads)  # (n, k, *out_shape)
            n, k = g.shape[:2]
            deltas.append(_channels_last(g.flatten(0, 1), module).unflatten(0, (n, k)))
            inputs.append(_layer_inputs(module, h))
        alpha, alpha_b = layer_scales(module)
        features.append(
            LayerFeatures(
                _joined(inputs, dim=1) if alpha is not None else None,
                _joined(deltas, dim=2),
                alpha,
                alpha_b,
            )
        )
    return out.detach(), features


def _joined(parts: list[Tensor], dim: int) -> Tensor:
    """Concatenate a module's calls along positions (no copy for a single call)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _two_layer_features(model: TwoLayer, x: Tensor) -> tuple[Tensor, list[LayerFeatures]]:
    """Du et al.'s net as two virtual layers: ``W`` (input ``x``, ``Δ = m^{-1/2} a ⊙ σ'(Wx)``) and ``a``."""
    with torch.inference_mode(False), torch.enable_grad():
        pre = F.linear(x, model.weight.detach()).requires_grad_(True)  # (n, m)
        hidden = model.activation(pre)
        out = model.multiplier * (hidden @ model.outer.detach()).unsqueeze(-1)
        (delta,) = torch.autograd.grad(out.sum(), pre)
    features = []
    if model.weight.requires_grad:
        features.append(LayerFeatures(x.unsqueeze(1), delta[:, None, None, :], 1.0, None))
    if isinstance(model.outer, nn.Parameter) and model.outer.requires_grad:
        ones = torch.ones_like(out)[:, :, None, None]  # (n, 1, 1, 1): f is linear in a
        features.append(LayerFeatures(hidden.detach().unsqueeze(1), ones, model.multiplier, None))
    return out.detach(), features


def _gram_route_flops(n1: int, n2: int, length: int, d_in: int, d_out: int, kk: int) -> int:
    return n1 * n2 * length * length * (d_in + kk * d_out + kk)


def _jacobian_route_flops(n1: int, n2: int, length: int, d_in: int, d_out: int, kk: int) -> int:
    k = max(1, round(kk**0.5))
    return (n1 + n2) * k * length * d_in * d_out + n1 * n2 * kk * d_in * d_out


def layer_gram(
    f1: LayerFeatures, f2: LayerFeatures, trace: bool, budget: int, route: str = "auto"
) -> Tensor:
    r"""Return one layer's NTK block: ``(n1, k, n2, k)``, or ``(n1, n2)`` if ``trace``.

    The weight term picks the cheaper of two routes (as curvlinops/EKFAC pick by cost), with
    ``kk = k²`` (full) or ``k`` (trace) output pairs and ``L`` positions:

    * Gram route, ``n1·n2·L²·(d_in + kk·d_out + kk)`` flops: ``Σ_{pq} (H_i H_jᵀ)_{pq} (Δ_i Δ_jᵀ)_{pq}``;
    * Jacobian route, ``(n1+n2)·k·L·d_in·d_out + n1·n2·kk·d_in·d_out`` flops: per-example
      gradients ``G_i = Δ_iᵀ H_i`` (``d_out × d_in``), then their Gram.

    For a linear layer (``L = 1``) the Gram route always wins and reduces to
    ``(α² H_1 H_2ᵀ + α_b²) ⊙ (Δ_1 Δ_2ᵀ)``. ``route`` (``"auto"``, ``"gram"``, ``"jacobian"``)
    forces a route for ``L > 1`` (tests compare them).
    """
    if f1 is f2:  # a diagonal block: symmetric, built from upper triangles and mirrored once
        return _mirrored(_layer_gram(f1, f2, trace, budget, route, True), trace)
    return _layer_gram(f1, f2, trace, budget, route, False)


def features_gram(
    f1: list[LayerFeatures],
    f2: list[LayerFeatures],
    trace: bool,
    budget: int,
    acc: torch.dtype,
) -> Tensor:
    """Return ``Σ_ℓ`` :func:`layer_gram` over the layers, summed in ``acc``.

    When ``f1 is f2`` (a diagonal tile of ``K(x, x)``) each layer contributes only its upper
    triangle, and the sum is mirrored once at the end instead of once per layer.
    """
    upper = f1 is f2
    total: Tensor | None = None
    for a, b in zip(f1, f2, strict=True):
        block = _layer_gram(a, b, trace, budget, "auto", upper)
        total = block.to(acc) if total is None else total.add_(block)
    assert total is not None
    return _mirrored(total, trace) if upper else total


def _mirrored(block: Tensor, trace: bool) -> Tensor:
    if trace:
        return mirror_upper(block)
    n, k = block.shape[:2]
    return mirror_upper(block.reshape(n * k, n * k)).reshape(n, k, n, k)


def _layer_gram(
    f1: LayerFeatures, f2: LayerFeatures, trace: bool, budget: int, route: str, upper: bool
) -> Tensor:
    """:func:`layer_gram`; with ``upper`` (``f1 is f2``) only the upper triangle need be right."""
    n1, k, length, d_out = f1.deltas.shape
    n2 = f2.deltas.shape[0]
    kk = k if trace else k * k
    weighted = not (f1.inputs is None or f2.inputs is None or f1.weight_scale is None)
    if weighted and length == 1 and f2.deltas.shape[2] == 1:
        return _linear_gram(f1, f2, trace, upper)
    gram = _bias_gram(f1.deltas, f2.deltas, f1.bias_scale, trace, upper)
    if not weighted:
        return gram
    assert f1.inputs is not None and f1.weight_scale is not None
    d_in = f1.inputs.shape[-1]
    alpha2 = f1.weight_scale**2
    args = (n1, n2, length, d_in, d_out, kk)
    if route == "auto":
        cheaper = _gram_route_flops(*args) <= _jacobian_route_flops(*args)
        route = "gram" if cheaper else "jacobian"
    if route == "gram":
        return gram + alpha2 * _gram_route(f1, f2, trace, budget)
    return gram + alpha2 * _jacobian_route(f1, f2, trace, budget)


def _linear_gram(f1: LayerFeatures, f2: LayerFeatures, trace: bool, upper: bool) -> Tensor:
    """``L = 1``: ``(α² H_1 H_2ᵀ + α_b²) ⊙ (Δ_1 Δ_2ᵀ)``, one Gram of the signals for both terms.

    With ``upper`` both Grams are right on and above the diagonal, and so is their product.
    """
    assert f1.inputs is not None and f2.inputs is not None and f1.weight_scale is not None
    a, b = f1.inputs[:, 0], f2.inputs[:, 0]
    h = upper_gram(a) if upper else torch.mm(a, b.T)  # (n1, n2)
    if f1.weight_scale != 1.0:
        h.mul_(f1.weight_scale**2)
    if f1.bias_scale is not None:
        h.add_(f1.bias_scale**2)
    h = h if trace else h[:, None, :, None]
    return _delta_gram(f1.deltas[:, :, 0], f2.deltas[:, :, 0], trace, upper).mul_(h)


def _delta_gram(d1: Tensor, d2: Tensor, trace: bool, upper: bool = False) -> Tensor:
    """``(n1, k, d)``, ``(n2, k, d)`` -> ``Σ_a d1[:, a] d2[:, a]ᵀ`` (trace) or all ``(a, b)`` blocks.

    With ``upper`` (``d1`` is ``d2``) the result is right on and above the diagonal of its
    ``(n1·k, n2·k)`` flattening (``(n1, n2)`` for the trace).
    """
    n1, k, d = d1.shape
    if trace:
        if upper and k == 1:
            return upper_gram(d1[:, 0])
        return torch.bmm(d1.transpose(0, 1), d2.permute(1, 2, 0)).sum(0)
    if upper:
        return upper_gram(d1.reshape(n1 * k, d)).reshape(n1, k, n1, k)
    return (d1.reshape(n1 * k, d) @ d2.reshape(-1, d).T).reshape(n1, k, d2.shape[0], k)


def _bias_gram(d1: Tensor, d2: Tensor, scale: float | None, trace: bool, upper: bool) -> Tensor:
    n1, k, n2 = d1.shape[0], d1.shape[1], d2.shape[0]
    if scale is None:
        shape = (n1, n2) if trace else (n1, k, n2, k)
        return torch.zeros(shape, dtype=d1.dtype, device=d1.device)
    return scale**2 * _delta_gram(d1.sum(2), d2.sum(2), trace, upper)


def _row_chunks(rows: int, bytes_per_row: int, budget: int) -> list[slice]:
    step = max(1, budget // max(1, bytes_per_row))
    return [slice(s, min(s + step, rows)) for s in range(0, rows, step)]


def _gram_route(f1: LayerFeatures, f2: LayerFeatures, trace: bool, budget: int) -> Tensor:
    assert f1.inputs is not None and f2.inputs is not None
    n1, k, length, _ = f1.deltas.shape
    n2, length2 = f2.deltas.shape[0], f2.deltas.shape[2]
    pairs = k if trace else k * k
    row_bytes = n2 * length * length2 * (1 + pairs) * f1.deltas.element_size() * 2
    blocks = []
    for rows in _row_chunks(n1, row_bytes, budget):
        h = torch.einsum("ipc,jqc->ijpq", f1.inputs[rows], f2.inputs)
        if trace:
            d = torch.einsum("iapo,jaqo->ijpq", f1.deltas[rows], f2.deltas)
            blocks.append(torch.einsum("ijpq,ijpq->ij", h, d))
        else:
            d = torch.einsum("iapo,jbqo->iajbpq", f1.deltas[rows], f2.deltas)
            blocks.append(torch.einsum("ijpq,iajbpq->iajb", h, d))
    return torch.cat(blocks)


def _per_example_grads(f: LayerFeatures) -> Tensor:
    assert f.inputs is not None
    return torch.einsum("iapo,ipc->iaoc", f.deltas, f.inputs).flatten(2)  # (n, k, d_out·d_in)


def _jacobian_route(f1: LayerFeatures, f2: LayerFeatures, trace: bool, budget: int) -> Tensor:
    assert f1.inputs is not None
    n1, k, _, d_out = f1.deltas.shape
    row_bytes = k * d_out * f1.inputs.shape[-1] * f1.deltas.element_size()
    g2 = _per_example_grads(f2)
    blocks = []
    for rows in _row_chunks(n1, row_bytes, budget):
        sub = LayerFeatures(f1.inputs[rows], f1.deltas[rows], f1.weight_scale, None)
        blocks.append(_delta_gram(_per_example_grads(sub), g2, trace))
    return torch.cat(blocks)
