r"""The generalized Gauss–Newton matrix of the training loss and its top eigenvalue.

For a training loss ``L(θ) = ℓ(F(θ))`` of the outputs ``F = f(θ, X)`` (``n × k``), the Hessian
splits as

.. math::  ∇²L = J^\top H_F J + \sum_{i,a} \frac{∂ℓ}{∂F_{ia}}\, ∇²_θ F_{ia},
    \qquad G = J^\top H_F J,

with ``J = ∂ vec F / ∂θ`` and ``H_F = ∇²_F ℓ`` the Hessian of the loss in the outputs; ``G`` is
the generalized Gauss–Newton matrix (Schraudolph 2002, "Fast curvature matrix-vector products
for second-order gradient descent"; Martens 2020, "New insights and perspectives on the natural
gradient method", §8). ``H_F`` carries the training normalization: for
:func:`gdscope.losses.mse` (``ℓ = ‖F − Y‖²/(2n)``) it is ``I/n``, so ``G = JᵀJ/n`` and its
nonzero eigenvalues are those of the NTK Gram ``J Jᵀ`` divided by ``n``; for the mean
cross-entropy it is block diagonal with blocks ``(diag(p_i) − p_i p_iᵀ)/n`` (``p_i`` the softmax
of example ``i``). For a loss convex in the outputs ``G`` is positive semi-definite, and its top
eigenvalue is the curvature that matters for cross-entropy once the residual term is small.

Products are matrix-free on one cached graph: ``J v`` by the double-backward trick
(``J v = ∂(Jᵀu)ᵀv/∂u`` for a dummy ``u``, since ``Jᵀu`` is linear in ``u``), ``H_F w`` by double
backward through ``ℓ`` at the detached outputs, and ``Jᵀ w`` by one backward; each product costs
about three backward passes and no forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, overload

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from gdscope.functional import LossFn, apply, loss_at, savable, scalar_loss
from gdscope.probes._checks import check_deterministic, refuse_kept_parameters
from gdscope.probes._data_span import data_span
from gdscope.probes._differentiating import differentiating, differentiating_operator
from gdscope.probes._flat import FlatLayout
from gdscope.probes._subset import Selection, select_params
from gdscope.probes.lanczos import Bound, top_eigenpair

__all__ = ["GGNOperator", "ggn_operator", "ggn_sharpness"]

Batch = tuple[Tensor, Tensor]


class GGNOperator:
    """``v ↦ G v = Jᵀ H_F J v`` on flat vectors of the selected parameters.

    Build it with :func:`ggn_operator`. The output graph, ``Jᵀu`` as a function of a dummy ``u``
    and the output gradient ``∇_F ℓ`` are built once here and reused by every product.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: Batch,
        params: Mapping[str, Tensor],
        what: str = "the Gauss–Newton matrix",
    ) -> None:
        if not params:
            raise ValueError(
                f"{what}: the model has no trainable parameters; nothing to differentiate"
            )
        x, y = batch
        self._leaves = tuple(t.detach().requires_grad_(True) for t in params.values())
        self._layout = FlatLayout(self._leaves)
        self.dim: int = self._layout.dim
        self.dtype: torch.dtype = self._layout.dtype  # mixed dtypes: the widest
        self.device: torch.device = self._layout.device
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):  # fused attention: no 2nd backward
            self._out = apply(model, dict(zip(params, self._leaves, strict=True)), x)
            if not isinstance(self._out, Tensor):
                raise ValueError(
                    f"{what} needs a model whose output is one tensor (the F of the Gauss–Newton "
                    f"Jᵀ H_F J), got a {type(self._out).__name__}; return one tensor from "
                    "forward (torch.cat the heads) and let loss_fn split it"
                )
            self._dummy = torch.zeros_like(self._out, requires_grad=True)
            self._jt_dummy = (
                torch.autograd.grad(  # Jᵀu, linear in the dummy u
                    self._out,
                    self._leaves,
                    grad_outputs=self._dummy,
                    create_graph=True,
                    allow_unused=True,
                    materialize_grads=True,
                )
                if self._out.requires_grad
                else tuple(torch.zeros_like(t) for t in self._leaves)  # reads no parameter: J = 0
            )
            self._out_leaf = self._out.detach().requires_grad_(True)
            loss = scalar_loss(loss_fn(self._out_leaf, savable(y)))  # as loss_at: y may be saved
            (self._out_grad,) = torch.autograd.grad(loss, self._out_leaf, create_graph=True)

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``G v`` for a flat ``(dim,)`` vector, in the dtype of ``v``.

        Raises:
            ValueError: if ``v`` does not have ``dim`` entries.

        """
        self._layout.check(v)
        parts = self._layout.blocks(v)  # each in its parameter's dtype
        return self.jt(self.output_hessian(self.jvp(parts))).to(v.dtype)

    def jvp(self, parts: list[Tensor]) -> Tensor:
        """Return ``J v`` (the shape of the outputs) for ``v`` given per parameter tensor."""
        live = [i for i, g in enumerate(self._jt_dummy) if g.requires_grad]
        if not live:
            return torch.zeros_like(self._out_leaf)
        (jv,) = torch.autograd.grad(
            [self._jt_dummy[i] for i in live],
            self._dummy,
            grad_outputs=[parts[i] for i in live],
            retain_graph=True,
            materialize_grads=True,
        )
        return jv

    def output_hessian(self, w: Tensor) -> Tensor:
        """Return ``H_F w`` for ``w`` of the outputs' shape (zero where ``ℓ`` is linear)."""
        if not self._out_grad.requires_grad:
            return torch.zeros_like(w)
        (hw,) = torch.autograd.grad(
            self._out_grad, self._out_leaf, w, retain_graph=True, materialize_grads=True
        )
        return hw

    def jt(self, w: Tensor) -> Tensor:
        """Return ``Jᵀ w`` flattened, for ``w`` of the outputs' shape."""
        if not self._out.requires_grad:  # the outputs read no trainable parameter: J = 0
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        grads = torch.autograd.grad(
            self._out, self._leaves, w, retain_graph=True, allow_unused=True, materialize_grads=True
        )
        return torch.cat([g.reshape(-1) for g in grads])


@differentiating_operator
def ggn_operator(
    model: nn.Module, loss_fn: LossFn, batch: Batch, *, params: Selection = None
) -> GGNOperator:
    r"""Return the generalized Gauss–Newton matrix ``G = Jᵀ H_F J`` as a flat-vector operator.

    Args:
        model: the network; its trainable parameters (or the block ``params`` selects) are
            the coordinates, flattened in ``named_parameters()`` order.
        loss_fn: ``(output, target) -> 0-d tensor``, the training loss (its normalization
            enters ``H_F``: ``I/n`` for :func:`gdscope.losses.mse`).
        batch: ``(x, y)``, the whole batch at once.
        params: parameter names or module prefixes (``"layers.0"``): the diagonal block
            ``J_Sᵀ H_F J_S`` of those parameters; None for all.

    Returns:
        A :class:`GGNOperator` of the selected size, on the model's device and dtype.

    Raises:
        ValueError: on a random loss (dropout, batch norm in training mode, ...) or a ``params``
            entry that names nothing.

    """
    return _checked_operator(model, loss_fn, batch, select_params(model, params), "ggn_operator")


def _checked_operator(
    model: nn.Module, loss_fn: LossFn, batch: Batch, selected: Mapping[str, Tensor], what: str
) -> GGNOperator:
    check_deterministic(
        model, what=what, fn=lambda p: loss_at(model, p, loss_fn, batch), params=selected
    )
    refuse_kept_parameters(model, selected, batch, what, loss_fn)
    return GGNOperator(model, loss_fn, batch, selected, what)


@overload
def ggn_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    return_vector: Literal[False] = ...,
    max_iter: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
) -> float: ...


@overload
def ggn_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    return_vector: Literal[True],
    max_iter: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
) -> tuple[float, Tensor]: ...


@differentiating
def ggn_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = 1e-3,
    bound: Bound = "residual",
    v0: Tensor | None = None,
    return_vector: bool = False,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
    params: Selection = None,
) -> float | tuple[float, Tensor]:
    r"""Return ``λ_max(G)``, the top eigenvalue of the generalized Gauss–Newton matrix.

    ``G = Jᵀ H_F J`` (see the module docstring), by Lanczos on matrix-free products, stopped
    when ``‖G y − θ y‖ ≤ tol·θ`` (``θ ≤ λ_max``, within ``tol`` relative; see
    :func:`~gdscope.probes.lanczos.lanczos_topk`). For the square loss ``λ_max(G) =
    λ_max(J Jᵀ)/n``; for cross-entropy it is the positive semi-definite part of the curvature,
    which approaches the Hessian's as the residual term ``Σ ∂ℓ/∂F · ∇²F`` becomes small
    (Martens 2020, §8).

    Args:
        model: the network.
        loss_fn: the training loss.
        batch: ``(x, y)``.
        tol: relative residual tolerance.
        bound: stopping rule, ``"residual"`` (rigorous) or ``"gap"`` (an estimate).
        v0: warm start, e.g. the vector returned at the previous probe. A start almost equal
            to ``λ₂``'s eigenvector can stop at ``λ₂``: the residual rule is met at any
            eigenvalue, and Lanczos cannot see a direction the start lacks (to rounding; from
            ``u₂ + 1e-8·z`` a small tanh net's GGN gave ``λ₂`` = 0.534 for ``λ₁`` = 0.865). The
            scheduled probe adds a random direction of equal norm to its warm start for that
            reason (``gdscope.training.context.ProbeContext.warm_start``).
        return_vector: also return the unit top eigenvector (float64, on the model's device).
        max_iter: most products (default that of :func:`~gdscope.probes.lanczos.lanczos_topk`).
        generator: draws the random start when ``v0`` is None (default seeded with 0).
        params: names or module prefixes of a block (see :func:`ggn_operator`); None for all.

    Returns:
        ``λ_max(G)`` as a float, or ``(λ_max, vector)``.

    Raises:
        ValueError: see :func:`ggn_operator`.

    Example:
        >>> import gdscope as gs
        >>> x, y = gs.data.sphere(n=8, d=3, seed=0, dtype=torch.float64)
        >>> net = gs.models.mlp(3, 6, depth=2, seed=0, dtype=torch.float64)
        >>> K = gs.probes.ntk_gram(net, x)
        >>> s = ggn_sharpness(net, gs.losses.mse, (x, y), tol=1e-12)
        >>> abs(s - float(torch.linalg.eigvalsh(K)[-1]) / 8) < 1e-9 * s
        True

    """
    selected = select_params(model, params)
    span = data_span(model, batch[0], selected, tol)  # G = Jᵀ G̃ J there too (first layer linear)
    if span is None:
        op, start = _checked_operator(model, loss_fn, batch, selected, "ggn_sharpness"), v0
    else:
        op = _checked_operator(
            model, loss_fn, span.batch(batch), span.params(selected), "ggn_sharpness"
        )
        start = None if v0 is None else span.start(v0, selected)
    value, vector = top_eigenpair(
        op.matvec, op.dim, what="ggn_sharpness", tol=tol, bound=bound, max_iter=max_iter,
        v0=start, generator=generator, device=op.device,
    )  # fmt: skip
    value, vector = (value, vector) if span is None else span.top_pair(value, vector, selected)
    return (value, vector) if return_vector else value
