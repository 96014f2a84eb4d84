"""The fixed probe set of a monitored run, drawn once from tensors or a ``DataLoader``.

Drawing from a user's ``DataLoader`` must leave their training as it would have been: the
global random streams are restored (``torch.random.fork_rng``) and so is every
``torch.Generator`` the loader draws from (its own ``generator=``, its sampler's, its batch
sampler's sampler's), so a shuffling loader yields the same epochs as without the monitor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

__all__ = ["check_probe_batch", "probe_set"]


def probe_set(
    batch: Any, size: int, device: torch.device, field: str = "probe_batch"
) -> tuple[tuple[Tensor, Tensor], str]:
    """Return the fixed ``(x, y)`` set a monitor probes, on ``device``, and where it came from.

    ``batch`` is an ``(x, y)`` pair of tensors (taken whole), or a ``DataLoader`` yielding
    ``(x, y)`` batches: its first ``size`` examples, drawn once with the random streams it
    reads restored afterwards (a shuffling loader then yields the same epochs as without the
    monitor).

    Raises:
        ValueError: anything else, batches that are no pairs, or an empty set (one line).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.arange(10.0)[:, None], torch.zeros(10, 1))
        >>> loader = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator())
        >>> before = loader.generator.get_state()
        >>> (x, y), source = probe_set(loader, 6, torch.device("cpu"))
        >>> x.shape, source, bool((loader.generator.get_state() == before).all())
        (torch.Size([6, 1]), 'DataLoader', True)

    """
    if isinstance(batch, DataLoader):
        xs, ys, n = [], [], 0
        with torch.random.fork_rng(devices=[]), _generators_restored(batch):
            for drawn in batch:
                x, y = _pair(drawn, f"{field} (a batch of the DataLoader)")
                xs.append(x)
                ys.append(y)
                n += x.shape[0]
                if n >= size:
                    break
        if n == 0:
            raise ValueError(f"{field}: the DataLoader yielded no examples; give it data")
        x, y = torch.cat(xs)[:size], torch.cat(ys)[:size]
        source = "DataLoader"
    else:
        x, y = _pair(batch, field)
        source = "tensors"
    return (x.to(device), y.to(device)), source


def check_probe_batch(batch: Any, field: str = "probe_batch") -> None:
    """Check that ``batch`` is an ``(x, y)`` pair of tensors or a ``DataLoader`` (draws nothing).

    Raises:
        ValueError: anything else (one line naming ``field``, what was seen and the fix).

    """
    if not isinstance(batch, DataLoader):
        _pair(batch, field)


@contextmanager
def _generators_restored(loader: DataLoader) -> Iterator[None]:
    """Put back the state of every ``torch.Generator`` the loader and its samplers hold."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    holders = (loader, loader.sampler, getattr(batch_sampler, "sampler", None))
    found = (getattr(holder, "generator", None) for holder in holders)
    generators = {id(g): g for g in found if isinstance(g, torch.Generator)}
    states = [(g, g.get_state()) for g in generators.values()]
    try:
        yield
    finally:
        for generator, state in states:
            generator.set_state(state)


def _pair(batch: Any, field: str) -> tuple[Tensor, Tensor]:
    ok = isinstance(batch, tuple | list) and len(batch) == 2
    if not (ok and all(isinstance(t, Tensor) for t in batch)):
        seen = f"{type(batch).__name__}" + (
            f" of {len(batch)} items" if isinstance(batch, tuple | list) else ""
        )
        raise ValueError(
            f"{field} must be an (x, y) pair of tensors or a torch.utils.data.DataLoader of "
            f"(x, y) batches, got {seen}; pass (x, y) or the DataLoader"
        )
    x, y = batch
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"{field}: x and y need the same positive number of examples (first dimension), "
            f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y
