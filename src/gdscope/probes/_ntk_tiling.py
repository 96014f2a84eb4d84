"""Tiling of an NTK Gram over examples (see :func:`gdscope.probes.ntk_gram`).

The Gram ``K[I, J]`` is assembled from blocks of examples whose features fit a memory budget;
a symmetric Gram ``K(x, x)`` computes only the blocks ``J ≥ I`` and mirrors the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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
