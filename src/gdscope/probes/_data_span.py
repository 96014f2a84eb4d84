r"""The data span of a first linear layer: Hessian products on ``r ≤ n`` input coordinates.

A network whose first layer is linear in the (flattened) input ``x ∈ ℝ^{n×d}`` reads its weight
``W₁ ∈ ℝ^{m×d}`` only through ``x W₁ᵀ``. With ``xᵀ = Q R`` (thin QR, ``Q ∈ ℝ^{d×r}`` with
orthonormal columns, ``r = min(n, d)``) the rows of ``x`` lie in the span of ``Q``, so
``x W₁ᵀ = (x Q)(W₁ Q)ᵀ`` and the loss is ``L(W₁, θ') = L̃(W₁ Q, θ')``, with ``L̃`` the same network on
the inputs ``x Q ∈ ℝ^{n×r}``. The linear map ``J: (W₁, θ') ↦ (W₁ Q, θ')`` has ``J Jᵀ = I``, hence

.. math::  ∇²L = Jᵀ\,∇²L̃\,J, \qquad \operatorname{spec}(∇²L) = \operatorname{spec}(∇²L̃) ∪ \{0\}^{(d−r)m},

the eigenvectors of ``∇²L`` off the null space are ``Jᵀ ũ`` (``W₁`` block ``Ũ Qᵀ``), and the residual
``‖∇²L\,Jᵀũ − θ\,Jᵀũ‖ = ‖∇²L̃\,ũ − θ\,ũ‖`` is the same in both, so a Lanczos stopping rule checked
on ``∇²L̃`` holds for ``∇²L``. ``λ_max(∇²L) = max(λ_max(∇²L̃), 0)``. A product on ``∇²L̃`` costs the
first layer ``r/d`` of its work (CIFAR-sized inputs, ``d = 3072``, on ``n = 500`` examples: a
third of the whole product for fc-tanh). The identity is that behind data-dependent
reparameterizations of the first layer (e.g. the kernel regime's ``x xᵀ``; Jacot et al. 2018).

``Q`` is kept with a copy of the last inputs and reused for equal inputs: a probe repeated along
full-batch training pays the QR once (``gdscope.probes.release_spare()`` frees it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope.functional import Params
from gdscope.probes._ntk_uses import plain_structure, plain_uses
from gdscope.probes._stock import is_stock

__all__ = ["DataSpan", "data_span", "release"]

MAX_SPAN_FRACTION = 0.5
"""Reduce only when ``n ≤`` this fraction of ``d`` (below it the QR pays for itself)."""
FLOAT32_SPAN_TOL = 1e-5
"""A float32 ``Q`` is orthonormal to about ``1e-7``: reduce float32 models only at ``tol ≥`` this."""

_LAST: list[tuple[Tensor, Tensor, Tensor]] = []  # (a copy of the flattened x, Q, Rᵀ): one entry


@dataclass(frozen=True)
class DataSpan:
    """A first layer's data span.

    Attributes:
        name: the first layer's weight among the selected parameters.
        basis: ``Q`` ``(d, r)``, orthonormal columns spanning the rows of the flattened inputs.
        inputs: ``x Q = Rᵀ`` ``(n, r)``, the inputs in its coordinates.

    """

    name: str
    basis: Tensor
    inputs: Tensor

    def batch(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Return ``(x Q, y)`` for the ``batch`` whose inputs ``x`` the span was made from."""
        return self.inputs, batch[1]

    def params(self, params: Params) -> Params:
        """Return ``params`` with the first layer's weight ``W₁`` replaced by ``W₁ Q``."""
        return {n: (p.detach() @ self.basis if n == self.name else p) for n, p in params.items()}

    def start(self, v0: Tensor, params: Params) -> Tensor | None:
        """Map a start vector over ``params`` to span coordinates (``W₁`` block ``V Q``): ``J v0``.

        In ``Q``'s dtype: a start vector's rounding changes nothing the stopping rule checks.
        None (a random start) when nothing of ``v0`` is left (it lay in the null space).

        Raises:
            ValueError: if ``v0`` does not have one entry per parameter.

        """
        dim = sum(p.numel() for p in params.values())
        if v0.numel() != dim:
            raise ValueError(f"v0 must have {dim} entries, got shape {tuple(v0.shape)}")
        reduced = self.reduce(v0, params)
        left = torch.linalg.vector_norm(reduced)
        return reduced if left > 1e-6 * torch.linalg.vector_norm(v0.detach()) else None

    def reduce(self, vector: Tensor, params: Params) -> Tensor:
        """Map a flat vector over ``params`` to span coordinates (``W₁`` block ``V Q``): ``J v``.

        ``‖v‖² − ‖J v‖²`` is ``v``'s mass in the Hessian's null space (``J Jᵀ = I``).
        """
        shapes = {n: p.shape for n, p in params.items()}
        flat = vector.detach().reshape(-1).to(self.basis.device, self.basis.dtype)
        return self._map(flat, shapes, lambda block: block @ self.basis)

    def expand(self, vector: Tensor, params: Params) -> Tensor:
        """Map a flat vector in span coordinates back (``W₁`` block ``Ṽ Qᵀ``): ``Jᵀ ṽ``.

        In ``vector``'s dtype, the product in ``Q``'s: float32 only at ``tol ≥ 1e-5``, whose
        ``1e-7`` is far inside the residual the vector was accepted with.
        """
        shapes = {n: p.shape for n, p in params.items()}
        shapes[self.name] = torch.Size((shapes[self.name][0], self.basis.shape[1]))
        low = vector.to(self.basis.dtype)
        return self._map(low, shapes, lambda block: block @ self.basis.T).to(vector.dtype)

    def top_pair(self, value: float, vector: Tensor, params: Params) -> tuple[float, Tensor]:
        """Return ``∇²L``'s top pair from ``∇²L̃``'s: ``(θ, Jᵀũ)``, or ``(0, null vector)`` if ``θ < 0``.

        A negative top Ritz value within its tolerance means ``λ_max(∇²L̃) < 0``, so
        ``λ_max(∇²L) = 0`` exactly, on the null space (when ``r < d``).
        """
        null = self.null_vector(params, vector.dtype) if value < 0 else None
        return (0.0, null) if null is not None else (value, self.expand(vector, params))

    def null_vector(self, params: Params, dtype: torch.dtype) -> Tensor | None:
        """Return a unit vector of the Hessian's null space (``W₁`` rows ``⊥ span(Q)``), or None.

        The ``W₁`` block's first row is ``e_j − Q Q_jᵀ`` for the coordinate ``j`` least in the
        span (``‖Q_j‖² ≤ r/d < 1``, so it is not zero); every other entry is zero.
        """
        d, r = self.basis.shape
        if r >= d:
            return None
        basis = self.basis.to(dtype)
        j = int(basis.square().sum(1).argmin())
        row = -(basis @ basis[j])
        row[j] += 1.0
        blocks = [torch.zeros(p.shape, dtype=dtype, device=basis.device) for p in params.values()]
        blocks[list(params).index(self.name)][0] = row
        flat = torch.cat([b.reshape(-1) for b in blocks])
        return flat / torch.linalg.vector_norm(flat)

    def _map(
        self, vector: Tensor, shapes: dict[str, torch.Size], weight_map: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Apply ``weight_map`` to the ``W₁`` block of a flat vector with blocks of ``shapes``."""
        parts, offset = [], 0
        for name, shape in shapes.items():
            block = vector[offset : offset + shape.numel()]
            offset += shape.numel()
            parts.append(weight_map(block.reshape(shape)) if name == self.name else block)
        return torch.cat([part.reshape(-1) for part in parts])


def data_span(model: nn.Module, x: Tensor, selected: Params, tol: float) -> DataSpan | None:
    """Return the :class:`DataSpan` of ``model``'s first layer on ``x``, or None.

    Only for a plain stack (:func:`~gdscope.probes._ntk_uses.plain_stack`; an ``nn.Sequential``
    may begin with a stock ``nn.Flatten()``) whose first layer's weight is among the
    ``selected`` parameters, on at most :data:`MAX_SPAN_FRACTION` ``· d`` examples, in float64
    or in float32 at ``tol ≥`` :data:`FLOAT32_SPAN_TOL`.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> span = data_span(net, torch.randn(5, 3, 4), dict(net.named_parameters()), tol=1e-3)
    >>> span.name, tuple(span.basis.shape)
    ('1.weight', (12, 5))
    """
    tol = check.real("tol", tol, low=0.0, low_open=True)  # before a comparison with it
    if not isinstance(x, Tensor):  # inputs of another structure (a tuple): not a plain stack's
        return None
    exact = x.dtype == torch.float64 or (x.dtype == torch.float32 and tol >= FLOAT32_SPAN_TOL)
    body = _without_flatten(model)
    flattened = body is not model  # else the model itself must take the inputs, 2-D
    if not exact or not selected or x.ndim < 2 or (x.ndim != 2 and not flattened):
        return None
    flat = x.flatten(1)
    stack = plain_structure(body)
    if not is_stock(model) or stack is None or plain_uses(stack, flat) is None:
        return None  # (the root's hooks: ``body`` may be a new Sequential)
    first = stack.layers[0]
    if first.weight.dtype != x.dtype:
        return None  # the model's own pass refuses such inputs, saying how to fix them
    name = next((n for n, p in selected.items() if p is first.weight), None)
    if name is None or flat.shape[0] > MAX_SPAN_FRACTION * flat.shape[1]:
        return None
    if type(body) is nn.Sequential and _first_leaf(body) is not first:
        return None  # an activation before the first layer: it does not read x linearly
    return DataSpan(name, *_row_basis(flat))


def release() -> None:
    """Free the inputs' copy and QR kept for the next call."""
    _LAST.clear()


def _first_leaf(stack: nn.Module) -> nn.Module | None:
    """Return the first module a (nested) ``nn.Sequential`` calls other than ``nn.Identity``."""
    leaves = (m for m in stack.modules() if type(m) not in (nn.Sequential, nn.Identity))
    return next(leaves, None)


def _without_flatten(model: nn.Module) -> nn.Module:
    """Return the stack after a leading stock ``nn.Flatten()`` (the model itself if none)."""
    if type(model) is nn.Sequential and len(model) > 1 and _stock_flatten(model[0]):
        return nn.Sequential(*list(model)[1:])
    return model


def _stock_flatten(module: nn.Module) -> bool:
    return (
        type(module) is nn.Flatten
        and (module.start_dim, module.end_dim) == (1, -1)
        and is_stock(module)
    )


def _row_basis(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(Q, Rᵀ)`` of the thin QR ``flatᵀ = Q R`` (``flat Q = Rᵀ``).

    Reused while the inputs equal those of the last call (compared with a copy kept of them, an
    ``n·d`` read against the QR's ``n²·d``: no alias, ``.data`` write or numpy view can make it
    stale).
    """
    entry = next(iter(_LAST), None)  # read once: another thread may replace it meanwhile
    if entry is not None and _equal(entry[0], flat):
        return entry[1], entry[2]
    q, r = torch.linalg.qr(flat.detach().T, mode="reduced")
    _LAST[:] = [(flat.detach().clone(), q, r.T)]
    return q, r.T


def _equal(kept: Tensor, flat: Tensor) -> bool:
    return (
        kept.shape == flat.shape
        and kept.dtype == flat.dtype
        and kept.device == flat.device
        and torch.equal(kept, flat)
    )
