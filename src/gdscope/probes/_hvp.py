"""Hessian-vector products of a weighted sum of scalars of the parameters, on flat vectors.

Cached-graph double backward: each term's gradient graph ``g(θ) = ∇ℓ(θ)`` is built once with
``create_graph=True``; every product ``H v = ∇(gᵀ v)`` reuses it with ``retain_graph=True``
(Pearlmutter 1994, "Fast exact multiplication by the Hessian").

Attention: PyTorch's fused CPU attention kernels (``scaled_dot_product_attention``, used by
``nn.MultiheadAttention``) have no double backward. When a product fails for that reason the
operator warns once and rebuilds its graphs with the math kernel
(``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``), which computes the same function.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from gdscope.functional import Params
from gdscope.probes._flat import FlatLayout

Scalar = Callable[[Params], Tensor]


@dataclass(frozen=True)
class Term:
    """One weighted scalar ``weight · fn(params)`` of a sum whose Hessian is wanted."""

    fn: Scalar
    weight: float


class HessianOperator:
    """``v ↦ H v`` on flat vectors for the Hessian of a weighted sum of scalars of the parameters.

    Build it with :func:`hessian_operator` (a training loss) or through
    :func:`output_hessian_norm` (a model output). With ``cache=True`` each term's gradient graph is
    built once and reused by every product; otherwise it is rebuilt per product per term (memory of
    one term's graph at a time, about three times the compute).
    """

    def __init__(self, params: Mapping[str, Tensor], terms: Sequence[Term], *, cache: bool) -> None:
        if not params:
            raise ValueError("the model has no trainable parameters; nothing to differentiate")
        self._leaves = {n: t.detach().requires_grad_(True) for n, t in params.items()}
        self._terms = list(terms)
        self._layout = FlatLayout(list(self._leaves.values()))
        self.dim: int = self._layout.dim
        self.dtype: torch.dtype = self._layout.dtype  # mixed dtypes: the widest
        self.device: torch.device = self._layout.device
        self._math_attention = False
        self.first_value: Tensor | None = None  # the first term's value, when its graph is kept
        self._graphs = [self._gradient(term) for term in self._terms] if cache else None

    def matvec(self, v: Tensor, out: Tensor | None = None) -> Tensor:
        """Return ``H v`` for a flat ``(dim,)`` vector, in the dtype of ``v`` on the operator's device.

        ``v`` is cast to the parameters' dtype for the product; the result is cast back. With
        ``out`` (a ``(dim,)`` tensor of the operator's dtype and device, not ``v``) the product
        is written there and ``out`` returned: no fresh vector per product (a Krylov loop).

        Raises:
            ValueError: if ``v`` does not have ``dim`` entries, or ``out`` is not as above.

        """
        self._layout.check(v)
        if out is not None and (
            out.shape != (self.dim,) or out.dtype != self.dtype or out.device != self.device
        ):
            raise ValueError(
                f"out must be a ({self.dim},) {self.dtype} tensor on {self.device}, got "
                f"{tuple(out.shape)} {out.dtype} on {out.device}"
            )
        vs = self._layout.blocks(v)  # each block in its parameter's dtype
        try:
            product = self._product(vs, out)
            return product if out is not None else product.to(v.dtype)
        except RuntimeError as err:
            if self._math_attention or "scaled_dot_product" not in str(err):
                raise
        warnings.warn(
            "Hessian-vector products: the fused attention kernel has no double backward; "
            "using the math attention kernel (same function) for this operator",
            stacklevel=2,
        )
        self._math_attention = True
        if self._graphs is not None:  # cached graphs hold the fused kernel: build them again
            self._graphs = [self._gradient(term) for term in self._terms]
        product = self._product(vs, out)
        return product if out is not None else product.to(v.dtype)

    def _product(self, vs: list[Tensor], out: Tensor | None = None) -> Tensor:
        total: Tensor | None = None
        for i, term in enumerate(self._terms):
            grads = self._graphs[i] if self._graphs is not None else self._gradient(term)
            product = self._backward(grads, vs, retain=self._graphs is not None, out=out)
            if term.weight != 1.0:  # a fresh vector (or out, first term): scaled in place
                product.mul_(term.weight)
            total = product if total is None else total.add_(product)
            out = None  # later terms land in fresh vectors, added into the first
        if total is None:  # no terms: the Hessian of an empty sum
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device, out=out)
        return total

    def buffered_matvec(self) -> Callable[[Tensor], Tensor]:
        """Return ``v ↦ H v`` writing every product into one buffer of the operator's dtype.

        For a loop that reads each product before it asks for the next (Lanczos): no fresh
        vector, and no page faults, per product. The returned tensor is overwritten by the
        next call.
        """
        buffer = torch.empty(self.dim, dtype=self.dtype, device=self.device)
        return lambda v: self.matvec(v, out=buffer)

    def _gradient(self, term: Term) -> tuple[Tensor, ...]:
        with self._attention():
            value = term.fn(self._leaves)
            if self.first_value is None and term is self._terms[0]:
                self.first_value = value.detach()
            if not value.requires_grad:  # the loss reads no trainable parameter: H = 0
                return tuple(torch.zeros_like(t) for t in self._leaves.values())
            return torch.autograd.grad(  # a parameter the loss never reads: gradient 0
                value,
                tuple(self._leaves.values()),
                create_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )

    @contextlib.contextmanager
    def _attention(self) -> Iterator[None]:
        """Use the math attention kernel once a fused one failed (see the module docstring)."""
        if not self._math_attention:
            yield
            return
        with sdpa_kernel(SDPBackend.MATH):
            yield

    def _backward(
        self, grads: tuple[Tensor, ...], vs: list[Tensor], *, retain: bool, out: Tensor | None
    ) -> Tensor:
        """Return ``∇(Σ_l ⟨g_l, v_l⟩)`` flattened (into ``out`` if given); constant ``g`` give 0."""
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if not live:
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device, out=out)
        hv = torch.autograd.grad(
            [grads[i] for i in live],
            tuple(self._leaves.values()),
            grad_outputs=[vs[i] for i in live],
            retain_graph=retain,
            allow_unused=True,
            materialize_grads=True,
        )
        flat = [h.reshape(-1) for h in hv]
        return torch.cat(flat) if out is None else torch.cat(flat, out=out)
