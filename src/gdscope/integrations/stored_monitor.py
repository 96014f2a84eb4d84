"""``gs.monitor``: a :class:`~gdscope.training.monitor.Monitor` that writes to a results store.

The monitor lives in ``training`` (below the store) and writes through a sink; this module,
above both, joins it to :class:`gdscope.store.runs.RunWriter`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gdscope.store.runs import RunWriter
from gdscope.training.monitor import Monitor

__all__ = ["monitor"]


def monitor(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    probe_batch: Any,
    *,
    probes: Mapping[str, int] | None = None,
    results: str | os.PathLike[str] | None = "gdscope-results",
    run: str | None = None,
    probe_size: int = 256,
    eval_batch: Any = None,
    flush_every_s: float = 5.0,
    optimizer: torch.optim.Optimizer | None = None,
) -> Monitor:
    """Monitor a training loop of your own with gdscope's scheduled probes; record it in ``results``.

    Use it as a context manager and call ``mon.step(t, lr=...)`` with ``t`` the number of
    updates made: step 0 before the first update, step ``t`` after the ``t``-th, as
    ``gdscope.train`` counts (see :mod:`gdscope.training.monitor` for what is measured when)::

        with gs.monitor(model, loss_fn, (x, y), probes={"sharpness": 50}, run="my-run") as mon:
            mon.step(0, lr=scheduler.get_last_lr()[0])
            for t, (xb, yb) in enumerate(loader, start=1):
                ...  # your own update: any optimizer, scheduler, AMP, clipping
                mon.step(t, lr=scheduler.get_last_lr()[0])  # the lr of the next update

    The probes measure the model in ``eval()`` mode (dropout off, batch-norm running
    statistics), on the fixed probe set.

    The run is stored as it goes (every ``flush_every_s`` seconds and at the end) in the store
    that ``gdscope run`` writes, as a monitored run (:mod:`gdscope.store.runs`): a trial of kind
    ``"monitor"`` whose config names the run, its attempt, the model class, the parameter count
    and the probe schedule; ``gdscope show``, ``export`` and ``report`` show it (the report
    draws sharpness against 2/η of the recorded ``lr``, an adaptive optimizer's preconditioned
    sharpness against its own threshold), ``verify`` leaves it alone. Nothing
    stored is touched: running again under the same ``run`` name records a new attempt.

    Args:
        model: the network your loop trains.
        loss_fn: ``loss_fn(model(x), y) -> scalar`` on the probe set.
        probe_batch: an ``(x, y)`` pair of tensors, or a ``DataLoader`` whose first
            ``probe_size`` examples are drawn once as the fixed probe set.
        probes: ``{probe name: every k steps}`` (``gdscope list probes``); default
            ``{"loss": 1}``.
        results: the results directory (created if missing); ``None`` stores nothing (read
            ``mon.trace``).
        run: the run's name (default: the model's class name).
        probe_size: examples drawn from a ``DataLoader`` probe set.
        eval_batch: held-out ``(x, y)`` or ``DataLoader`` for the ``"test"`` probe.
        flush_every_s: seconds between writes to the store.
        optimizer: the optimizer your loop steps, for probes that read its state
            (``preconditioned_sharpness``).

    Returns:
        The :class:`~gdscope.training.monitor.Monitor`; nothing is written before ``with``.

    Raises:
        ValueError: an unknown probe, a bad schedule, a ``probe_batch`` of the wrong type, or
            a probe that reads the optimizer without one (one line naming the field, the value
            and the fix).

    Example:
        >>> import torch, gdscope as gs
        >>> net = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with gs.monitor(net, gs.losses.mse, (x, y), probes={"loss": 2}, results=None) as mon:
        ...     mon.step(0, lr=0.1)
        ...     for t in range(1, 6):
        ...         opt.zero_grad()
        ...         gs.losses.mse(net(x), y).backward()
        ...         opt.step()
        ...         mon.step(t, lr=0.1)
        >>> mon.status, mon.trace.series("loss")[0].tolist()
        ('completed', [0, 2, 4, 5])

    """
    sink = RunWriter(results) if results is not None else None
    return Monitor(
        model,
        loss_fn,
        probe_batch,
        probes=probes,
        probe_size=probe_size,
        eval_batch=eval_batch,
        run=run,
        sink=sink,
        flush_every_s=flush_every_s,
        optimizer=optimizer,
    )
