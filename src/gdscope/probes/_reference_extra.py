r"""Dense float64 oracles for the Gauss–Newton, preconditioned and block curvature probes.

Companions of :mod:`gdscope.probes._reference` (same conventions: parameters flattened in
``named_parameters()`` order, Jacobian rows example-major). Each builds the whole matrix and
takes its eigenvalues with ``torch.linalg.eigvalsh``, so they are only for small nets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from gdscope.probes._reference import _flat_function, dense_jacobian, float64_copy
from gdscope.probes._subset import Selection, select_params

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]


def block_index(model: nn.Module, params: Selection) -> Tensor:
    """Return the flat indices of the parameters ``params`` selects, among all trainable ones."""
    chosen = select_params(model, params)
    index, start = [], 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in chosen:
            index.append(torch.arange(start, start + p.numel()))
        start += p.numel()
    return torch.cat(index)


def _batch64(batch: Batch) -> Batch:
    x, y = (t.detach().to("cpu") for t in batch)
    return x.to(torch.float64), (y.to(torch.float64) if y.is_floating_point() else y)


def dense_hessian_block(
    model: nn.Module, loss_fn: LossFn, batch: Batch, params: Selection = None
) -> Tensor:
    """Return the diagonal block ``∂²L/∂θ_S²`` of the dense float64 Hessian.

    Differentiates only the gradient entries of the block (the rows ``S`` of
    :func:`~gdscope.probes._reference.dense_hessian`), then keeps the columns ``S``.
    """
    index = block_index(model, params)
    f, theta = _flat_function(float64_copy(model))
    theta.requires_grad_(True)
    x, y = _batch64(batch)
    (grad,) = torch.autograd.grad(loss_fn(f(theta, x), y), theta, create_graph=True)
    rows = [torch.autograd.grad(grad[i], theta, retain_graph=True)[0] for i in index.tolist()]
    return torch.stack(rows)[:, index]


def dense_loss_output_hessian(model: nn.Module, loss_fn: LossFn, batch: Batch) -> Tensor:
    """Return ``H_F = ∇²_F ℓ`` (``nk × nk``, float64) of the loss in the flattened outputs."""
    x, y = _batch64(batch)
    with torch.no_grad():
        out = float64_copy(model)(x)

    def loss_of_flat(flat: Tensor) -> Tensor:
        return loss_fn(flat.reshape(out.shape), y)

    return cast(Tensor, torch.autograd.functional.hessian(loss_of_flat, out.reshape(-1)))


def dense_ggn(model: nn.Module, loss_fn: LossFn, batch: Batch, params: Selection = None) -> Tensor:
    """Return the Gauss–Newton block ``J_Sᵀ H_F J_S`` in float64 (``S`` all parameters if None)."""
    jacobian = dense_jacobian(model, batch[0])[:, block_index(model, params)]
    return jacobian.T @ dense_loss_output_hessian(model, loss_fn, batch) @ jacobian


def dense_preconditioner(
    model: nn.Module, optimizer: torch.optim.Optimizer, params: Selection = None
) -> Tensor:
    r"""Return the diagonal ``P`` of an Adam/AdamW/RMSprop state, flat over the block, float64.

    As the torch docs write the update ``−η P⁻¹ m``: Adam ``P = (1 − β₁ᵗ)(√(v/(1 − β₂ᵗ)) + ε)``
    (``v`` the running maximum with ``amsgrad``), RMSprop ``P = √v + ε`` (``√(v − ḡ²) + ε``
    when centered).
    """
    parts = []
    for p in select_params(model, params).values():
        group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
        state = optimizer.state[p]
        if isinstance(optimizer, torch.optim.RMSprop):
            v = state["square_avg"].double()
            if group["centered"]:
                v = v - state["grad_avg"].double() ** 2
            parts.append(v.sqrt() + group["eps"])
            continue
        step = float(state["step"])
        v = state["max_exp_avg_sq" if group["amsgrad"] else "exp_avg_sq"].double()
        beta1, beta2 = group["betas"]
        parts.append((1 - beta1**step) * ((v / (1 - beta2**step)).sqrt() + group["eps"]))
    return torch.cat([t.reshape(-1) for t in parts]).cpu()


def dense_preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    params: Selection = None,
) -> float:
    """Return ``λ_max(P⁻¹(H + Λ))`` as the top eigenvalue of ``P^{-1/2} (H + Λ) P^{-1/2}``, densely.

    ``Λ`` holds each group's coupled weight decay (Adam without decoupled decay, RMSprop).
    """
    scale = dense_preconditioner(model, optimizer, params).rsqrt()
    hessian = dense_hessian_block(model, loss_fn, batch, params)
    adamw = type(optimizer).__name__ == "AdamW"  # decoupled; no key before torch 2.7
    decays = []
    for p in select_params(model, params).values():
        group = next(g for g in optimizer.param_groups if any(q is p for q in g["params"]))
        coupled = not (adamw or group.get("decoupled_weight_decay", False))
        decays += [float(group["weight_decay"]) if coupled else 0.0] * p.numel()
    hessian = hessian + torch.diag(torch.tensor(decays, dtype=hessian.dtype))
    return float(torch.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])[-1])


def dense_top_eigenvalue(matrix: Tensor) -> float:
    """Return the largest eigenvalue of a symmetric matrix (symmetrized first), in float64."""
    sym = 0.5 * (matrix + matrix.T).to(torch.float64)
    value = float(torch.linalg.eigvalsh(sym)[-1])
    if not math.isfinite(value):
        raise ValueError("the matrix has non-finite entries")
    return value
