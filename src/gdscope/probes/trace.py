r"""Hutch++: a Hessian trace estimator that beats Hutchinson's on low-rank-dominated spectra.

Hutchinson's estimator ``tr A ≈ (1/m) Σ zᵢᵀ A zᵢ`` (Rademacher ``zᵢ``) has variance
``2(‖A‖_F² − Σ A_ii²)/m``, so ``m = O(1/ε²)`` products reach a relative error ``ε`` for PSD
``A``. Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: optimal stochastic trace
estimation", SOSA, Algorithm 1) splits a budget of ``m`` products in three: it sketches the top
eigenspace with ``Q = orth(A S)`` for ``s = m/3`` Rademacher columns ``S``, takes the trace on
that subspace exactly and Hutchinson's estimate only on the deflated rest:

.. math::  \widehat{\mathrm{tr}}(A) = \mathrm{tr}(Q^\top A Q)
    + \frac{1}{g} \sum_{j=1}^{g} z_j^\top (I - QQ^\top) A (I - QQ^\top) z_j,

with ``g = m − 2s`` further Rademacher ``z_j``. It is unbiased, and its error scales with
``‖A − A_s‖_F`` (``A_s`` the best rank-``s`` approximation) instead of ``‖A‖_F``: ``O(1/ε)``
products suffice for PSD ``A``. Hessians of small-output networks, whose Gauss–Newton part has
rank at most ``nk``, are the case it is made for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdscope._checks import positive_int
from gdscope.functional import LossFn
from gdscope.probes._differentiating import differentiating
from gdscope.probes._hessian_build import span_operator
from gdscope.probes._rademacher import rademacher_rows
from gdscope.probes._subset import Selection

__all__ = ["hessian_trace_hutchpp", "hutchpp"]

Batch = tuple[Tensor, Tensor]


def hutchpp(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    probes: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> float:
    r"""Return the Hutch++ estimate of ``tr A`` from exactly ``probes`` products ``A v``.

    ``s = ⌊probes/3⌋`` products sketch ``Q = orth(A S)`` (at most ``dim`` columns), ``s`` give
    ``tr(QᵀAQ)``, and the remaining ``probes − 2s`` estimate the deflated rest by Hutchinson
    (see the module docstring).

    Args:
        matvec: ``v ↦ A v`` for a symmetric ``A``, on ``(dim,)`` vectors of ``dtype`` on
            ``device``.
        dim: size of ``A``.
        probes: the total number of products, at least 3.
        generator: draws the Rademacher vectors (default seeded with 0), on the CPU.
        device: where the vectors live.
        dtype: of the vectors, the sketch's QR and the dot products (float32 adds a relative
            rounding of about ``1e-5``, far below the estimator's own spread).

    Raises:
        ValueError: if ``probes < 3``.

    Example:
        >>> a = torch.diag(torch.tensor([100.0, 10.0, 1.0, 0.0, 0.0], dtype=torch.float64))
        >>> round(hutchpp(lambda v: a @ v, 5, 9), 9)  # the sketch spans the 3 nonzero directions
        111.0

    """
    count = positive_int("probes", probes)
    if count < 3:
        raise ValueError(f"probes must be an int >= 3 (a third of them sketch A), got {probes!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    sketch = count // 3
    rest = count - 2 * sketch

    def apply_rows(rows: Tensor) -> Tensor:  # (c, dim) -> (c, dim): A v for each row v
        out = torch.empty_like(rows)
        for i, v in enumerate(rows):
            out[i] = matvec(v)
        return out

    sketched = apply_rows(rademacher_rows(sketch, dim, generator, device, dtype))
    q = torch.linalg.qr(sketched.T).Q.T  # (min(dim, s), dim), orthonormal rows
    exact = float(q.reshape(-1) @ apply_rows(q).reshape(-1))  # Σ_i q_iᵀ A q_i
    z = rademacher_rows(rest, dim, generator, device, dtype)
    z.addmm_(z @ q.T, q, alpha=-1)  # (I − QQᵀ) z, row by row, in place
    return exact + float(z.reshape(-1) @ apply_rows(z).reshape(-1)) / rest


@differentiating
def hessian_trace_hutchpp(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    probes: int = 60,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    params: Selection = None,
) -> float:
    r"""Return the Hutch++ estimate of ``tr ∇²L`` from ``probes`` Hessian-vector products.

    See :func:`hutchpp` (Meyer, Musco, Musco & Woodruff 2021). At an equal number of products
    its error is far lower than that of Hutchinson's :func:`~gdscope.probes.hessian.hessian_trace`
    when a few eigenvalues dominate ``‖H‖_F`` (variance 0.24 against 3.98 at 12 products on a
    low-rank-dominated Hessian), and higher on a flat spectrum, where the sketch captures little
    and only a third of the products estimate the rest: up to 3× Hutchinson's variance (measured
    1.7–2.6× at 60–12 products on a 244-parameter cross-entropy net). It returns no standard
    error; where the spectrum is unknown, Hutchinson's estimate and its standard error are the
    safer default.

    Args:
        model: the network (see :func:`~gdscope.probes.hessian.hessian_operator`).
        loss_fn: the training loss.
        batch: ``(x, y)``.
        probes: the total number of Hessian-vector products, at least 3.
        generator: draws the Rademacher vectors (default seeded with 0).
        chunk_size: examples per chunk (see :func:`~gdscope.probes.hessian.hessian_operator`).
        params: names or module prefixes of a block: the trace of ``∂²L/∂θ_S²``.

    Returns:
        The estimate of ``tr H`` as a float.

    Raises:
        ValueError: if ``probes < 3``, on a random loss, or a ``params`` entry naming nothing.

    """
    op = span_operator(model, loss_fn, batch, chunk_size, params, "hessian_trace_hutchpp")[0]
    return hutchpp(
        op.buffered_matvec(), op.dim, probes, generator=generator, device=op.device, dtype=op.dtype
    )
