r"""Slow, obviously-correct float64 oracles for every fast instrument.

They loop over scalar outputs and parameters with plain autograd and build dense matrices, so they
are only for small nets. Tests and ``gdscope verify-probes`` compare the fast paths against them.

Conventions shared with the fast paths:

* the Jacobian ``J`` has one row per (example, output) pair in example-major order, row
  ``i * k + a`` for example ``i`` and output ``a``, and one column per trainable parameter entry in
  ``named_parameters()`` order;
* the full NTK Gram is ``K = J Jᵀ`` (``nk × nk``); the class-trace Gram is
  ``K_tr[i, j] = Σ_a K[(i, a), (j, a)]`` (``n × n``);
* the Hessian is of the scalar loss ``loss_fn(f(x), y)`` with respect to all trainable parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdscope.functional import apply, flatten, params_of


def float64_copy(model: nn.Module) -> nn.Module:
    """Return a deep copy of ``model`` in float64 on the CPU (the oracles' working precision)."""
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64)


def _flat_function(model: nn.Module) -> tuple[Callable[[Tensor, Tensor], Tensor], Tensor]:
    params = params_of(model)
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def f(theta: Tensor, x: Tensor) -> Tensor:
        chunks = torch.split(theta, sizes)
        p = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return apply(model, p, x)

    return f, flatten(params).clone()


def dense_jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """Return ``J = ∂ vec f(x) / ∂θ`` of shape ``(n·k, P)`` in float64, one backward per output entry."""
    model64 = float64_copy(model)
    f, theta = _flat_function(model64)
    theta.requires_grad_(True)
    out = f(theta, x.detach().to("cpu", torch.float64)).reshape(-1)
    rows = [torch.autograd.grad(out[r], theta, retain_graph=True)[0] for r in range(out.numel())]
    return torch.stack(rows)


def dense_ntk(
    model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, trace: bool = False
) -> Tensor:
    """Return the empirical NTK ``J(x1) J(x2)ᵀ`` in float64 (class-trace ``n1 × n2`` if ``trace``)."""
    j1 = dense_jacobian(model, x1)
    j2 = j1 if x2 is None else dense_jacobian(model, x2)
    gram = j1 @ j2.T
    if not trace:
        return gram
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    k = gram.shape[0] // n1
    return gram.reshape(n1, k, n2, k).diagonal(dim1=1, dim2=3).sum(-1)


def dense_hessian(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], batch: tuple[Tensor, Tensor]
) -> Tensor:
    """Return the ``P × P`` Hessian of ``loss_fn(f(x), y)`` in float64 by differentiating each gradient entry."""
    model64 = float64_copy(model)
    f, theta = _flat_function(model64)
    theta.requires_grad_(True)
    x, y = (t.detach().to("cpu") for t in batch)
    x = x.to(torch.float64)
    y = y.to(torch.float64) if y.is_floating_point() else y
    (grad,) = torch.autograd.grad(loss_fn(f(theta, x), y), theta, create_graph=True)
    rows = [torch.autograd.grad(grad[i], theta, retain_graph=True)[0] for i in range(theta.numel())]
    return torch.stack(rows)


def dense_output_hessian(model: nn.Module, x: Tensor) -> Tensor:
    """Return the Hessians ``∂²f(x_i)/∂θ²`` of a scalar-output model, shape ``(n, P, P)``, in float64."""
    model64 = float64_copy(model)
    f, theta = _flat_function(model64)
    theta.requires_grad_(True)
    x64 = x.detach().to("cpu", torch.float64)
    hessians = []
    for i in range(x64.shape[0]):
        (grad,) = torch.autograd.grad(f(theta, x64[i : i + 1]).sum(), theta, create_graph=True)
        rows = [
            torch.autograd.grad(grad[p], theta, retain_graph=True)[0] for p in range(theta.numel())
        ]
        hessians.append(torch.stack(rows))
    return torch.stack(hessians)


def arccos_kernel_h_infinity(x: Tensor) -> Tensor:
    r"""Return Du et al.'s limiting Gram of a two-layer ReLU net with trained inner layer.

    .. math:: H^\infty_{ij} = \frac{x_i^\top x_j\,(\pi - \arccos(x_i^\top x_j))}{2\pi}

    for unit-norm rows ``x_i`` (Du, Zhai, Poczós & Singh 2019, "Gradient descent provably optimizes
    over-parameterized neural networks", Eq. 3 evaluated in closed form). Computed in float64.
    """
    x64 = x.detach().to(torch.float64)
    cos = (x64 @ x64.T).clamp(-1.0, 1.0)
    return cos * (math.pi - torch.arccos(cos)) / (2 * math.pi)
