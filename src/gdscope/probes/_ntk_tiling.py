"""Tiling of an NTK Gram over examples (see :func:`gdscope.probes.ntk_gram`).

The Gram ``K[I, J]`` is assembled from blocks of examples whose features fit a memory budget;
a symmetric Gram ``K(x, x)`` computes only the blocks ``J ≥ I`` and mirrors the rest. A tile's
features are a plain stack's written-out pass, the hooked layers' inputs and signals, or the
Jacobian (:func:`features_fn`); :func:`bytes_per_example` sizes them for the budget.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import _ntk_jacobian as jac
from . import _ntk_structured as st
from ._ntk_plain import plain_features
from ._ntk_uses import UseTrace


def _tiles(n: int, tile: int) -> list[slice]:
    return [slice(s, min(s + tile, n)) for s in range(0, n, tile)]


def tiled(
    x1: Tensor,
    x2: Tensor | None,
    tile: int,
    features: Callable[[Tensor], object],
    pair: Callable[[object, object], Tensor],
    trace: bool,
    k: int,
    acc: torch.dtype,
    cache: bool,
) -> Tensor:
    """Assemble the Gram block by block; a symmetric Gram computes only blocks ``J ≥ I``."""
    symmetric = x2 is None
    xs2 = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], xs2.shape[0]
    rows, cols = _tiles(n1, tile), _tiles(n2, tile)
    store1: dict[int, object] = {}
    store2: dict[int, object] = store1 if symmetric else {}

    def get(store: dict[int, object], xs: Tensor, idx: int, part: slice) -> object:
        if idx in store:
            return store[idx]
        value = features(xs[part])
        if cache:
            store[idx] = value
        return value

    if len(rows) == 1 and len(cols) == 1:  # one tile: its block is the Gram
        f1 = features(x1)
        block = pair(f1, f1 if symmetric else features(xs2))
        return block if trace else block.reshape(n1 * k, n2 * k)
    shape = (n1, n2) if trace else (n1, k, n2, k)
    gram = torch.zeros(shape, dtype=acc, device=x1.device)
    for bi, r in enumerate(rows):
        f1 = get(store1, x1, bi, r)
        for bj, c in enumerate(cols):
            if symmetric and bj < bi:
                continue
            f2 = f1 if symmetric and bi == bj else get(store2, xs2, bj, c)
            block = pair(f1, f2)
            if trace:
                gram[r, c] = block
            else:
                gram[r, :, c] = block
            if symmetric and bj > bi:
                if trace:
                    gram[c, r] = block.T
                else:
                    gram[c, :, r] = block.permute(2, 3, 0, 1)
    return gram if trace else gram.reshape(n1 * k, n2 * k)


def features_fn(
    model: nn.Module, method: str, plain: bool, steps: list[nn.Module] | None, k: int
) -> Callable[[Tensor], object]:
    """Return the features of a tile of inputs: written out, hooked or the Jacobian."""
    if steps is not None:  # written out: no hooks, no graph (probes/_ntk_plain.py)
        return lambda x: _or_nothing(plain_features(steps, x), x, k)
    if method == "structured":
        return lambda x: _or_nothing(st.module_features(model, x, plain)[1], x, k)
    return lambda x: jac.tile_jacobian(model, x)


def _or_nothing(features: list[st.LayerFeatures], x: Tensor, k: int) -> list[st.LayerFeatures]:
    """``features``, or, where the forward reads no trainable parameter, one adding nothing (K = 0)."""
    if features:
        return features
    return [st.LayerFeatures(None, x.new_zeros(x.shape[0], k, 1, 1), None, None)]


def bytes_per_example(
    model: nn.Module, method: str, x: Tensor, k: int, use_trace: UseTrace | None
) -> int:
    """Bytes one example's features take, times 3 (the forward graph and gradients alive too)."""
    if method == "jacobian":
        return 3 * jac.jacobian_bytes_per_example(model, k)
    if use_trace is not None:  # counted in the traced forward of the method's check
        return 3 * x.element_size() * (use_trace.input_numel + k * use_trace.output_numel)
    features = st.module_features(model, x[:1])[1]
    held = sum(
        t.numel() * t.element_size()
        for f in features
        for t in (f.inputs, f.deltas)
        if t is not None
    )
    return 3 * held  # features plus the forward graph and gradients alive while they are built
