r"""Generic NTK: per-example Jacobians by ``torch.func``, contracted parameter by parameter.

``J_i = ∂f(θ, x_i)/∂θ`` comes from ``vmap(jacrev(f))`` over a tile of examples (one reverse pass per
output, vectorized over the tile), and ``K = Σ_p J_{1,p} J_{2,p}ᵀ`` is accumulated one parameter
tensor at a time, so nothing larger than one tile's Jacobian is ever held (Novak et al. 2022,
"Fast finite width neural tangent kernel", the "Jacobian contraction" method).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdscope.functional import Params, apply, params_of

from ._gram import symmetrized


def _single_example_fn(model: nn.Module) -> Callable[[Params, Tensor], Tensor]:
    def f(params: Params, x: Tensor) -> Tensor:
        # a copy: under vmap an in-place first module (SiLU(inplace=True)) would write into x
        return apply(model, params, x.unsqueeze(0).clone()).reshape(-1)  # (k,)

    return f


def tile_jacobian(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Return per-parameter Jacobians ``(n, k, numel)`` of ``f`` at the examples ``x``.

    One ``vmap`` over the tile; a module that ``vmap`` cannot batch (``nn.PReLU``'s batching
    rule fails in torch 2.13) gets one ``jacrev`` per example instead: slower, the same numbers.
    """
    params = params_of(model)
    per_example = torch.func.jacrev(_single_example_fn(model))
    try:
        jac = torch.func.vmap(per_example, in_dims=(None, 0))(params, x)
    except RuntimeError:
        try:
            rows = [per_example(params, xi) for xi in x]  # raises again if the model itself fails
        except RuntimeError:
            _refuse_backward_hooks(model)  # the likely cause, named in one line
            raise
        jac = {name: torch.stack([row[name] for row in rows]) for name in params}
    n = x.shape[0]
    return [jac[name].reshape(n, jac[name].shape[1], -1) for name in params]


def _refuse_backward_hooks(model: nn.Module) -> None:
    """Raise where a backward hook stops ``torch.func`` (which cannot run one) in one line."""
    hooks = torch.nn.modules.module
    named = [(name or "<root>", m) for name, m in model.named_modules()]
    hooked = [name for name, m in named if m._backward_hooks or m._backward_pre_hooks]
    if hooked or hooks._global_backward_hooks or hooks._global_backward_pre_hooks:
        where = f"module {hooked[0]!r} has a" if hooked else "a global module"
        raise ValueError(
            f"ntk_gram: {where} backward hook, which torch.func's per-example Jacobians cannot "
            "run (and which may rewrite the gradients the NTK is made of); remove it for the "
            "measurement (handle.remove())"
        )


def jacobian_bytes_per_example(model: nn.Module, k: int) -> int:
    """Bytes of one example's Jacobian (``k`` outputs times the trainable parameter count)."""
    params = params_of(model)
    itemsize = next(iter(params.values())).element_size() if params else 8
    return k * sum(p.numel() for p in params.values()) * itemsize


def contract(j1: list[Tensor], j2: list[Tensor], trace: bool, accumulate: torch.dtype) -> Tensor:
    """Return ``Σ_p J_{1,p} J_{2,p}ᵀ`` as ``(n1, k, n2, k)`` (or ``(n1, n2)`` if ``trace``).

    Each per-parameter product is taken in the Jacobians' dtype and summed in ``accumulate``;
    ``K(x, x)`` (``j1 is j2``) is returned as ``(K + Kᵀ)/2``.
    """
    n1, k = j1[0].shape[:2]
    n2 = j2[0].shape[0]
    shape = (n1, n2) if trace else (n1, k, n2, k)
    total = torch.zeros(shape, dtype=accumulate, device=j1[0].device)
    for a, b in zip(j1, j2, strict=True):
        if trace:
            block = torch.bmm(a.transpose(0, 1), b.permute(1, 2, 0)).sum(0)
        else:
            block = (a.reshape(n1 * k, -1) @ b.reshape(n2 * k, -1).T).reshape(shape)
        total += block.to(accumulate)
    if j1 is j2:  # a diagonal block: exactly symmetric, as rounded products need not be
        square = total.reshape(n1 * (1 if trace else k), -1)
        return symmetrized(square).reshape(shape)
    return total
