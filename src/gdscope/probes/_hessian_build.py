r"""The Hessian operator of a loss as the probes build it: chunks, checks, data span.

A chunked evaluation weights chunk ``c`` of ``n_c`` examples by ``n_c/n``, which reproduces the
training loss exactly when it is a mean over examples with equal weights (checked on every two
consecutive chunks); a random loss, an op whose second derivative torch gets wrong, and chunks
under batch statistics are refused before any graph is built. :func:`span_operator` puts the operator on the first
layer's data span where one applies (:mod:`gdscope.probes._data_span`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sized
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from gdscope._checks import positive_int
from gdscope.functional import LossFn, Params, apply, loss_at, scalar_loss
from gdscope.probes._checks import (
    check_deterministic,
    coupling_gap,
    refuse_kept_parameters,
    refuse_random_modules,
    uses_batch_statistics,
)
from gdscope.probes._data_span import DataSpan, data_span
from gdscope.probes._differentiating import differentiating_operator
from gdscope.probes._hvp import HessianOperator, Scalar, Term
from gdscope.probes._second_order import refuse_wrong_second_derivatives
from gdscope.probes._subset import Selection, select_params

__all__ = ["FLOAT32_BASIS_TOL", "Batch", "build_operator", "span_operator"]

Batch = tuple[Tensor, Tensor]
FLOAT32_BASIS_TOL = 1e-5  # sharpness of a float32 model at tol >= this: float32 Krylov basis


def build_operator(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    chunk_size: int | None,
    cache_chunks: bool,
    what: str,
    selected: Params,
    span: DataSpan | None = None,
) -> HessianOperator:
    """Build the operator of :func:`~gdscope.probes.hessian.hessian_operator`; ``what`` names the probe in errors.

    ``selected`` are the coordinates (:func:`~gdscope.probes._subset.select_params`). With
    ``span`` the operator is the reduced Hessian ``∇²L̃`` of :mod:`gdscope.probes._data_span`.
    """
    if not selected:
        raise ValueError(f"{what}: the model has no trainable parameters; nothing to differentiate")
    x, y = batch if span is None else span.batch(batch)
    n = x.shape[0]
    size = n if chunk_size is None else positive_int("chunk_size", chunk_size)
    if size < n and uses_batch_statistics(model):
        raise ValueError(
            f"{what}: chunk_size={chunk_size} would normalize each chunk with its own batch "
            "statistics, not the batch's; use chunk_size=None inside allow_batch_statistics"
        )
    if size >= n:  # one term: the batch as given (a 0-d or batch-level target included)
        terms = [Term(_loss_term(model, loss_fn, (x, y)), 1.0)]
    elif (rows := _target_rows(y, n)) is None:
        raise ValueError(
            f"{what}: chunk_size={chunk_size} splits the targets by example, but they "
            f"{_described(y, n)} for {n} inputs; give one target per example or chunk_size=None"
        )
    else:
        terms = [
            Term(
                _loss_term(model, loss_fn, (x[i : i + size], rows(i, i + size))),
                min(size, n - i) / n,
            )
            for i in range(0, n, size)
        ]
    selected = selected if span is None else span.params(selected)
    refuse_random_modules(model, what=what, noun="loss")  # before a graph build updates them
    if size < n:
        _check_mean_loss(model, loss_fn, x, rows, selected, size, what)
    refuse_wrong_second_derivatives(model, what=what)
    op = HessianOperator(selected, terms, cache=chunk_size is None or cache_chunks)
    check_deterministic(model, what=what, fn=terms[0].fn, params=selected, value=op.first_value)
    refuse_kept_parameters(model, selected, (x, y), what, loss_fn)
    return op


def _target_rows(targets: Any, n: int) -> Callable[[int, int], Any] | None:
    """Return ``(a, b) ↦`` the targets of examples ``a:b``, or None where they are not per example.

    A tensor or array with ``n`` rows: its rows. A tuple or dict whose every entry splits so
    (heads, a tensor and a list of labels): each entry's. A list, or a tuple of ``n`` entries
    that do not (labels, per-example tensors): the sequence sliced. ``None``: as given.
    """
    if targets is None:
        return lambda a, b: None
    if isinstance(targets, Tensor | np.ndarray):
        rows = targets.ndim > 0 and targets.shape[0] == n
        return (lambda a, b: targets[a:b]) if rows else None
    if isinstance(targets, dict):
        parts = {key: _target_rows(value, n) for key, value in targets.items()}
        if any(part is None for part in parts.values()):
            return None
        return lambda a, b: {key: part(a, b) for key, part in parts.items()}  # pyright: ignore[reportOptionalCall]
    if isinstance(targets, tuple | list):
        parts = [_target_rows(value, n) for value in targets]
        heads = type(targets) is tuple and targets and all(part is not None for part in parts)
        if heads:
            return lambda a, b: tuple(part(a, b) for part in parts)  # pyright: ignore[reportOptionalCall]
        return (lambda a, b: targets[a:b]) if len(targets) == n else None
    return None


def _described(targets: object, n: int) -> str:
    """Say what keeps ``targets`` from being split by example: a tensor's shape, or their type."""
    for leaf in tree_leaves(targets):
        if isinstance(leaf, Tensor) and (leaf.dim() == 0 or leaf.shape[0] != n):
            return f"have shape {tuple(leaf.shape)}"
    entries = f" of {len(targets)} entries" if isinstance(targets, Sized) else ""
    return f"are a {type(targets).__name__}{entries}"


def _loss_term(model: nn.Module, loss_fn: LossFn, batch: Batch) -> Scalar:
    return lambda p: loss_at(model, p, loss_fn, batch)


def _check_mean_loss(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    rows: Callable[[int, int], Any],
    params: Params,
    size: int,
    what: str,
) -> None:
    """Raise unless the loss of every two consecutive chunks is the size-weighted mean of theirs.

    Chunks are weighted ``n_c/n``, which is right only for a mean over examples with equal
    weights: a ``"sum"`` loss gives ``L = L₁ + L₂``, and a weighted mean (class weights,
    ``ignore_index``, a mask) ``(W₁L₁ + W₂L₂)/(W₁ + W₂)`` with ``W_c`` the chunk's total weight.
    Equality on each consecutive pair forces equal mean weights in all chunks (where the pair's
    losses differ), which makes the ``n_c/n`` weighting exact for the whole batch; a check on the
    first chunks alone passes class-sorted data. The pair's loss is taken on the two chunks'
    outputs joined, not on a forward of its own: a forward of another batch size rounds
    differently (float32, a loss near its minimum: 1.5e-4 apart), which is no weighting; and in
    float64 where the loss takes it (a float32 mean of terms that cancel rounds far above its
    value). A model whose examples interact is refused (:func:`_refuse_coupled_chunks`). One
    pass over the batch without a graph, and one of the first two chunks.
    """
    n = x.shape[0]
    with torch.no_grad():
        detached = {name: p.detach() for name, p in params.items()}
        chunks = [(a, min(a + size, n)) for a in range(0, n, size)]
        outputs = [apply(model, detached, x[a:b]) for a, b in chunks]
        wide = _widened(loss_fn, outputs[0], rows(*chunks[0]))

        def loss(out: Any, a: int, b: int) -> float:
            y = rows(a, b)
            return float(scalar_loss(loss_fn(*((_wide(out), _wide(y)) if wide else (out, y)))))

        values = [loss(out, a, b) for out, (a, b) in zip(outputs, chunks, strict=True)]
        if len(chunks) > 1:
            _refuse_coupled_chunks(model, detached, x[: chunks[1][1]], outputs[:2], what)
        for i in range(1, len(chunks)):
            (a, m), b, first, second = chunks[i - 1], chunks[i][1], values[i - 1], values[i]
            whole = loss(_joined(outputs[i - 1], outputs[i]), a, b)
            mean = ((m - a) * first + (b - m) * second) / (b - a)
            scale = max(abs(first), abs(second))
            if not math.isclose(whole, mean, rel_tol=1e-4, abs_tol=1e-12 * scale):
                raise ValueError(
                    f"{what}: chunk_size needs a loss that is a mean over examples with equal "
                    "weights (reduction='mean', no class weights, ignore_index or mask); on "
                    f"examples {a}..{b - 1} it gave {whole!r}, the size-weighted mean of its two "
                    f"chunks {mean!r}; use chunk_size=None"
                )


def _refuse_coupled_chunks(
    model: nn.Module, params: Params, x: Tensor, outputs: list[Any], what: str
) -> None:
    """Raise if the first two chunks run together give other outputs than run apart.

    Such a model (a mean over the batch inside ``forward``) is another function of each chunk
    than of the batch, so no weighting of the chunks gives the batch's Hessian. Beyond rounding:
    :func:`~gdscope.probes._checks.coupling_gap`.
    """
    together, _ = tree_flatten(apply(model, params, x))
    apart, _ = tree_flatten(_joined(*outputs))
    for t, u in zip(together, apart, strict=True):
        if not (isinstance(t, Tensor) and t.is_floating_point()) or t.shape != u.shape:
            continue
        gap = coupling_gap(t, u)
        if gap is not None:
            raise ValueError(
                f"{what}: chunk_size would change the function: the model's outputs for the "
                f"first two chunks run together and apart differ by {gap:.3g} (an example's "
                "output depends on the others in its batch, e.g. a mean over axis 0); use "
                "chunk_size=None"
            )


def _wide(tree: Any) -> Any:
    """Every floating tensor of ``tree`` in float64."""
    leaves, spec = tree_flatten(tree)
    wide = [t.double() if isinstance(t, Tensor) and t.is_floating_point() else t for t in leaves]
    return tree_unflatten(wide, spec)


def _widened(loss_fn: LossFn, out: Any, y: Any) -> bool:
    """Whether ``loss_fn`` takes float64 outputs and targets (not one with float32 weights)."""
    try:
        loss_fn(_wide(out), _wide(y))
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _joined(first: Any, second: Any) -> Any:
    """Return the outputs of two chunks as those of one: every tensor's rows, one after the other."""
    leaves, spec = tree_flatten(first)
    others, _ = tree_flatten(second)
    return tree_unflatten([torch.cat([p, q]) for p, q in zip(leaves, others, strict=True)], spec)


@differentiating_operator
def span_operator(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    chunk_size: int | None,
    params: Selection,
    what: str,
) -> tuple[HessianOperator, DataSpan | None, Params]:
    """Return ``(operator, span or None, selected parameters)``: the Hessian on the data span.

    The operator is on the first layer's data span where one applies, for traces and spectral
    densities: ``tr ∇²L = tr ∇²L̃`` exactly (the spectra differ by zeros,
    :mod:`gdscope.probes._data_span`); a float32 span's rounding (``≈1e-7``) is far below any
    trace estimator's spread.
    """
    selected = select_params(model, params)
    span = data_span(model, batch[0], selected, FLOAT32_BASIS_TOL)
    op = build_operator(model, loss_fn, batch, chunk_size, False, what, selected, span)
    return op, span, selected
