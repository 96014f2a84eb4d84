r"""Hessian probes: Hessian-vector products, sharpness by Lanczos, power iteration, trace.

The Hessian is that of the scalar training loss ``L(θ) = loss_fn(f(θ, x), y)`` with respect to
the trainable parameters, flattened in ``named_parameters()`` order (as in
:mod:`gdscope.probes._reference`). Its top eigenvalue, the sharpness, is what the edge-of-stability
claim compares with ``2/η`` (Cohen, Kaur, Li, Kolter & Talwalkar 2021, "Gradient descent on neural
networks typically occurs at the edge of stability"), so the loss normalization must be exactly the
training one: a chunked evaluation is weighted to reproduce it.

Products are by cached-graph double backward: the gradient graph ``g(θ) = ∇L(θ)`` is built once
with ``create_graph=True`` and every product ``H v = ∇(gᵀ v)`` reuses it (``retain_graph=True``),
about the cost of one gradient per product (Pearlmutter 1994).
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor, nn

from gdscope._checks import positive_int, real
from gdscope.functional import LossFn
from gdscope.probes._data_span import data_span
from gdscope.probes._differentiating import differentiating, differentiating_operator
from gdscope.probes._hessian_build import FLOAT32_BASIS_TOL, Batch, build_operator, span_operator
from gdscope.probes._hvp import HessianOperator
from gdscope.probes._krylov import check_start, unit_vector
from gdscope.probes._rademacher import rademacher_rows
from gdscope.probes._subset import Selection, select_params
from gdscope.probes.lanczos import Bound, EigResult, Which, lanczos_topk, top_eigenpair

__all__ = [
    "HessianOperator",
    "hessian_operator",
    "hessian_topk",
    "hessian_trace",
    "power_iteration",
    "sharpness",
]


@differentiating_operator
def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    chunk_size: int | None = None,
    cache_chunks: bool = False,
    params: Selection = None,
    what: str = "hessian_operator",
) -> HessianOperator:
    r"""Return the Hessian of ``loss_fn(f(θ, x), y)`` as a flat-vector operator.

    Full batch (``chunk_size=None``): one gradient graph, built here, reused by every product.
    Chunked: ``loss_fn`` must be a mean over examples (as every loss in :mod:`gdscope.losses`), so
    with chunks ``c`` of ``n_c`` examples ``L = Σ_c (n_c/n) L_c`` and ``H v = Σ_c (n_c/n) H_c v``:
    the same Hessian as the full-batch step. By default each chunk's graph is rebuilt in every
    product (memory of one chunk); ``cache_chunks=True`` keeps all chunk graphs (full-batch memory,
    full-batch speed).

    Args:
        model: the network; its trainable parameters are the Hessian's coordinates.
        loss_fn: ``(output, target) -> 0-d tensor``, a mean over examples when chunked.
        batch: ``(x, y)``.
        chunk_size: examples per chunk, or None for the whole batch at once.
        cache_chunks: keep every chunk's gradient graph (only with ``chunk_size``).
        params: names or module prefixes (``"layers.0"``) of a diagonal block; None for all.
        what: the instrument its errors name (a probe built on the operator passes its own).

    Returns:
        A :class:`HessianOperator` of size ``P`` on the model's device and dtype.

    Raises:
        ValueError: on a random loss (dropout, batch norm in training mode, ...) or a bad
            ``chunk_size``.

    """
    selected = select_params(model, params)
    return build_operator(model, loss_fn, batch, chunk_size, cache_chunks, what, selected)


@differentiating
def hessian_topk(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    k: int,
    *,
    tol: float = 1e-3,
    which: Which = "LA",
    bound: Bound = "residual",
    v0: Tensor | None = None,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    params: Selection = None,
) -> EigResult:
    r"""Return ``k`` extreme Hessian eigenpairs by Lanczos (see :func:`~gdscope.probes.lanczos.lanczos_topk`).

    With ``bound="residual"`` each returned ``θ`` satisfies ``‖H y − θ y‖ ≤ tol·|θ|`` when
    ``converged``, hence lies within ``tol·|θ|`` of an eigenvalue of ``H``; the top Ritz value is
    a lower bound on ``λ_max``. ``bound="gap"`` stops earlier on the estimate
    ``min(r, r²/gap) ≤ tol·|θ|``, which is not a guarantee.

    Args:
        model: the network (see :func:`hessian_operator`).
        loss_fn: the training loss.
        batch: ``(x, y)``.
        k: number of eigenpairs.
        tol: relative residual tolerance.
        which: ``"LA"`` largest algebraic, ``"LM"`` largest magnitude, ``"SA"`` smallest,
            ``"BE"`` both ends (``k`` smallest and ``k`` largest, ascending).
        bound: stopping rule, ``"residual"`` (rigorous) or ``"gap"`` (an estimate).
        v0: start vector (e.g. the previous eigenvector, to warm-start along training); one
            almost inside other eigenvectors' span can stop at theirs (see :func:`sharpness`).
        max_iter: most Hessian-vector products.
        generator: draws the random start (default seeded with 0).
        chunk_size: examples per chunk (see :func:`hessian_operator`).
        params: names, module prefixes or parameters of a block: eigenpairs of ``∂²L/∂θ_S²``.

    Returns:
        An :class:`~gdscope.probes.lanczos.EigResult` (float64, vectors on the model's device).

    """
    op = build_operator(
        model, loss_fn, batch, chunk_size, False, "hessian_topk", select_params(model, params)
    )
    return lanczos_topk(
        op.matvec,
        op.dim,
        k,
        which=which,
        tol=tol,
        bound=bound,
        max_iter=max_iter,
        v0=v0,
        generator=generator,
        device=op.device,
    )


@overload
def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    return_vector: Literal[False] = ...,
    chunk_size: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
) -> float: ...


@overload
def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    return_vector: Literal[True],
    chunk_size: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
) -> tuple[float, Tensor]: ...


@differentiating
def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    tol: float = 1e-3,
    bound: Bound = "residual",
    v0: Tensor | None = None,
    return_vector: bool = False,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    params: Selection = None,
) -> float | tuple[float, Tensor]:
    r"""Return the sharpness ``λ_max(∇²L(θ))``, the largest algebraic Hessian eigenvalue.

    By Lanczos on cached-graph Hessian-vector products, stopped when ``‖H y − θ y‖ ≤ tol·θ``, so
    ``|λ − θ| ≤ tol·θ`` for the eigenvalue ``λ`` the Krylov space converged to: ``λ_max`` unless
    the start is nearly orthogonal to its eigenvector (a random start: about 1 in 60 draws on a
    small LayerNorm net at tol 1e-3; a warm start from the eigenvector of ``λ₂``), then ``λ₂``.
    Tracking in training mixes a random direction into its warm start
    (``gdscope.training.context.ProbeContext.warm_start``). ``bound="gap"`` stops on the
    Kato–Temple estimate ``min(r, r²/gap) ≤ tol·θ`` instead (fewer products; not a guarantee, see
    :mod:`gdscope.probes.lanczos`). A float32 model at ``tol ≥ 1e-5`` keeps its Krylov basis in
    float32, unreorthogonalized until an extreme Ritz pair converges (``reorthogonalize`` in
    :func:`~gdscope.probes.lanczos.lanczos_topk`), its rounding added to the bound; otherwise
    float64, reorthogonalized. On ``n ≤ d/2`` examples, a plain stack's first layer is worked in
    the inputs' row span (``d → n`` columns; exact, :mod:`gdscope.probes._data_span`).
    Gradient descent with step ``η`` is stable on a quadratic iff ``λ_max < 2/η``; Cohen et al.
    (2021) find it rises to and then hovers at ``2/η``.

    Args:
        model: the network (see :func:`hessian_operator`).
        loss_fn: the training loss.
        batch: ``(x, y)``.
        tol: relative tolerance.
        bound: stopping rule, ``"residual"`` (rigorous) or ``"gap"`` (an estimate).
        v0: warm start, e.g. the vector returned at the previous probe. A start almost equal
            to ``λ₂``'s eigenvector can stop at ``λ₂``: the residual rule is met at any
            eigenvalue, and Lanczos cannot see a direction the start lacks (to rounding). The
            scheduled probe adds a random direction of equal norm to its warm start for that
            reason (``gdscope.training.context.ProbeContext.warm_start``).
        return_vector: also return the unit top eigenvector (float64, on the model's device).
        chunk_size: examples per chunk (see :func:`hessian_operator`).
        generator: draws the random start when ``v0`` is None (default seeded with 0).
        params: parameter names or module prefixes (``"layers.0"``): the sharpness of that
            diagonal block ``∂²L/∂θ_S²`` (the rest held fixed); None for all parameters.

    Returns:
        ``λ_max`` as a float, or ``(λ_max, vector)``.

    Raises:
        ValueError: on a random loss; see :func:`hessian_operator`.

    Example:
        >>> import gdscope as gs
        >>> x, y = gs.data.sphere(n=16, d=4, seed=0)
        >>> s = sharpness(gs.models.mlp(4, 8, depth=2, seed=0), gs.losses.mse, (x, y))

    """
    selected = select_params(model, params)
    span = data_span(model, batch[0], selected, tol)
    op = build_operator(model, loss_fn, batch, chunk_size, False, "sharpness", selected, span)
    basis_dtype = _basis_dtype(op, tol)
    start = v0 if v0 is None or span is None else span.start(v0, selected)
    value, vector = top_eigenpair(
        op.buffered_matvec(), op.dim, what="sharpness", tol=tol, bound=bound, v0=start,
        generator=generator, device=op.device, basis_dtype=basis_dtype,
        reorthogonalize=basis_dtype == torch.float64,
    )  # fmt: skip
    value, vector = (value, vector) if span is None else span.top_pair(value, vector, selected)
    return (value, vector) if return_vector else value


def _basis_dtype(op: HessianOperator, tol: float) -> torch.dtype:
    """float32 Krylov basis for a float32 operator at ``tol ≥ 1e-5``, else float64.

    A float32 product is exact only to about ``1e-7·‖H‖``; at a loose ``tol`` a basis in the same
    dtype loses nothing the product has not lost already, and the stopping rule adds its rounding
    term (:func:`~gdscope.probes.lanczos.lanczos_topk`), so the bound still holds. The sharpness
    runs a float32 basis without reorthogonalization (one value at one end: the rule is checked
    with the Ritz vector's computed length, see ``reorthogonalize`` there).
    """
    return (
        torch.float32 if op.dtype == torch.float32 and tol >= FLOAT32_BASIS_TOL else torch.float64
    )


@differentiating
def power_iteration(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    iters: int = 100,
    tol: float = 1e-3,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    params: Selection = None,
) -> tuple[float, int]:
    r"""Return ``(θ, iterations)`` from power iteration on the Hessian, as PyHessian does.

    ``v ← H v / ‖H v‖``, ``θ = vᵀ H v``, stopped when ``|θ − θ_prev| ≤ tol·|θ_prev|`` (Yao, Gholami,
    Keutzer & Mahoney 2020, "PyHessian"). It finds the largest-MAGNITUDE eigenvalue, and its rule
    bounds no error: with ``λ₂/λ₁ = ρ`` it converges like ``ρ^{2t}``. Kept for comparison.

    Args:
        model: the network (see :func:`hessian_operator`).
        loss_fn: the training loss.
        batch: ``(x, y)``.
        iters: most Hessian-vector products.
        tol: relative change of ``θ`` that stops it.
        v0: start vector. A start almost equal to ``λ₂``'s eigenvector can stop at ``λ₂``: the
            component along ``λ₁``'s grows only by ``|λ₁/λ₂|`` per step, and ``θ`` barely moves
            meanwhile, which meets the rule. The scheduled sharpness probes add a random
            direction of equal norm to their warm starts for that reason
            (``gdscope.training.context.ProbeContext.warm_start``).
        generator: draws the random start when ``v0`` is None (default seeded with 0).
        params: names, module prefixes, parameters or modules of a block (see
            :func:`hessian_operator`): power iteration on ``∂²L/∂θ_S²``; None for all.

    Raises:
        ValueError: on ``iters < 1``, a ``tol`` that is not a finite number > 0, a ``v0``
            that is zero or not finite, or a ``params`` entry naming nothing.

    """
    iters = positive_int("iters", iters)
    tol = real("tol", tol, low=0.0, low_open=True)
    op = build_operator(
        model, loss_fn, batch, None, False, "power_iteration", select_params(model, params)
    )
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    v = _start(op, v0, generator)
    theta = math.nan
    for step in range(1, iters + 1):
        hv = op.matvec(v)
        previous, theta = theta, float(v @ hv)
        norm = torch.linalg.vector_norm(hv)
        if norm == 0:  # v is in the null space: H v = 0 v exactly
            return theta, step
        v = hv / norm
        if abs(theta - previous) <= tol * abs(previous):
            return theta, step
    return theta, iters


@differentiating
def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    samples: int = 100,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    params: Selection = None,
) -> tuple[float, float]:
    r"""Return Hutchinson's estimate of ``tr ∇²L`` and its standard error.

    ``tr H = E[zᵀ H z]`` for Rademacher ``z`` (entries ±1; Hutchinson 1989); the estimate is the
    mean over ``samples`` draws and the standard error their standard deviation over ``√samples``.
    Each ``zᵀ(H z)`` is taken in the parameters' dtype (for float32 a relative rounding of about
    ``1e-5``, far below the estimator's own spread), and the mean in float64. On a data span
    (:func:`~gdscope.probes._hessian_build.span_operator`) ``z`` has the reduced Hessian's size:
    the same trace. ``params`` selects a block (:func:`hessian_operator`): ``tr ∂²L/∂θ_S²``.

    Args:
        model: the network (see :func:`hessian_operator`).
        loss_fn: the training loss.
        batch: ``(x, y)``.
        samples: Rademacher draws, one Hessian-vector product each (PyHessian's ``maxIter``).
        generator: draws the vectors. The default is seeded with 0, so repeated calls on the
            same inputs give the same estimate; pass a generator (and keep it) for fresh draws.
        chunk_size: examples per chunk (see :func:`hessian_operator`).
        params: names or module prefixes of a block: the trace of ``∂²L/∂θ_S²``.

    Returns:
        ``(estimate, standard error)``.

    Raises:
        ValueError: if ``samples < 2``, on a random loss, or a ``params`` entry naming nothing.

    """
    if positive_int("samples", samples) < 2:
        raise ValueError(f"samples must be an int >= 2 (for a standard error), got {samples!r}")
    op = span_operator(model, loss_fn, batch, chunk_size, params, "hessian_trace")[0]
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    product = op.buffered_matvec()
    draws = []
    for _ in range(samples):  # in the operator's dtype: ±1 is exact, the product is computed so
        z = rademacher_rows(1, op.dim, generator, op.device, op.dtype)[0]
        draws.append(float(torch.dot(z, product(z))))
    values = torch.tensor(draws, dtype=torch.float64)
    return float(values.mean()), float(values.std() / math.sqrt(samples))


def _start(op: HessianOperator, v0: Tensor | None, generator: torch.Generator) -> Tensor:
    if v0 is None:
        v = torch.randn(op.dim, generator=generator, dtype=torch.float64, device=generator.device)
    else:
        check_start(v0, op.dim)
        v = v0.detach().reshape(-1).to(torch.float64)
    return unit_vector(v.to(op.device))
