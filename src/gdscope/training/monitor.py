"""``Monitor``: gdscope's scheduled probes inside a training loop the user writes.

The user keeps the loop (any optimizer, scheduler, AMP, gradient clipping) and calls
``mon.step(t, lr=...)`` once per step; ``gdscope.monitor`` builds the monitor and writes to the
results store (:mod:`gdscope.integrations`)::

    with gs.monitor(model, loss_fn, probe_batch, probes={"sharpness": 50}, run="my-run") as mon:
        for t, (x, y) in enumerate(loader):
            ...  # the user's own step
            mon.step(t, lr=scheduler.get_last_lr()[0])

At ``mon.step(t)`` the probes due at ``t`` (every ``k``-th step, :func:`~gdscope.training.loop.
due_probes`, as in ``gdscope.train``) measure the model *as it is then* on a fixed probe set,
through the :class:`~gdscope.training.context.ProbeContext` and ``PROBES`` of ``train`` (so
sharpness warm-starts from its last eigenvector, one NTK Gram serves every kernel probe). On a
clean exit every scheduled probe not due at the last step is measured there, as ``train``
measures all at its last checkpoint. ``lr`` and any other numbers passed are recorded as series.

Measuring leaves the user's run as it was: the model is put in ``eval()`` mode (dropout off,
batch-norm statistics read, not updated) and back; autocast is off and gradients on; the
probes never touch ``.grad``; the global RNG streams are restored (``torch.random.fork_rng``).

Divergence is the rule of ``train``: at a checkpoint whose probe-set loss is non-finite or above
``DIVERGENCE_FACTOR``·|L₀| (L₀ at the first checkpoint) the run is ``"diverged"``; the probes
stop, the user's loop goes on (``mon.diverged`` says so), nothing raises. An exception inside
the ``with`` ends the run ``"failed"`` (``"interrupted"`` for ``KeyboardInterrupt``), with the
series so far, and propagates.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from gdscope import _checks as check
from gdscope.functional import clone_params, params_of
from gdscope.training.context import ProbeContext
from gdscope.training.loop import (
    Trace,
    divergence_limit,
    due_probes,
    measure,
    record_divergence,
    validate_schedule,
)
from gdscope.training.scheduled import scheduled_metrics

__all__ = ["Monitor", "RunSink", "RunStatus", "check_probe_batch", "probe_set"]

RunStatus = Literal["new", "running", "completed", "diverged", "failed", "interrupted"]


class RunSink(Protocol):
    """Where a monitored run goes (e.g. :class:`gdscope.store.runs.RunWriter`)."""

    def begin(self, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Start a run of ``config``; return its key and the config as stored."""
        ...

    def append(self, rows: Sequence[tuple[int, str, float]]) -> None:
        """Add ``(step, metric, value)`` rows."""
        ...

    def finish(
        self, status: str, reason: str, error: str | None, steps: int | None, wall_time_s: float
    ) -> None:
        """Record how the run ended."""
        ...


def probe_set(
    batch: Any, size: int, device: torch.device, field: str = "probe_batch"
) -> tuple[tuple[Tensor, Tensor], str]:
    """Return the fixed ``(x, y)`` set a monitor probes, on ``device``, and where it came from.

    ``batch`` is an ``(x, y)`` pair of tensors (taken whole), or a ``DataLoader`` yielding
    ``(x, y)`` batches: its first ``size`` examples, drawn once with the global RNG restored
    afterwards (a shuffling loader then yields the same epochs as without the monitor).

    Raises:
        ValueError: anything else, batches that are no pairs, or an empty set (one line).

    """
    if isinstance(batch, DataLoader):
        xs, ys, n = [], [], 0
        with torch.random.fork_rng(devices=[]):
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


class Monitor:
    """Scheduled probes on a fixed probe set while the user's own loop trains ``model``.

    Args:
        model: the network the loop trains; probes read it in place.
        loss_fn: ``loss_fn(model(x), y) -> scalar``, the loss probed (e.g. the training loss).
        probe_batch: an ``(x, y)`` pair, or a ``DataLoader`` of which the first ``probe_size``
            examples are drawn once (:func:`probe_set`); moved to the model's device.
        probes: ``{probe name: every k steps}`` from ``PROBES``; default ``{"loss": 1}``.
        probe_size: examples drawn from a ``DataLoader`` ``probe_batch`` (default 256).
        eval_batch: held-out ``(x, y)`` or ``DataLoader`` for the ``"test"`` probe.
        run: the run's name (default: the model's class name).
        sink: where the run goes (:class:`RunSink`); ``None`` keeps it in :attr:`trace` only.
        flush_every_s: seconds between writes to ``sink`` (and at the end).

    Raises:
        ValueError: an unknown probe, a bad schedule, a ``probe_batch`` of the wrong type, a
            model without parameters, a bad ``run`` name (one line, nothing written).

    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        probe_batch: Any,
        *,
        probes: Mapping[str, int] | None = None,
        probe_size: int = 256,
        eval_batch: Any = None,
        run: str | None = None,
        sink: RunSink | None = None,
        flush_every_s: float = 5.0,
    ) -> None:
        self.schedule = validate_schedule(probes)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("model has no trainable parameters; nothing for the probes to read")
        size = check.positive_int("probe_size", probe_size)
        self.model, self.loss_fn, self.device = model, loss_fn, trainable[0].device
        self.data, source = probe_set(probe_batch, size, self.device)
        self.eval_data = None
        if eval_batch is not None:
            self.eval_data = probe_set(eval_batch, size, self.device, "eval_batch")[0]
        if "test" in self.schedule and self.eval_data is None:
            raise ValueError("probes: 'test' needs held-out data; pass eval_batch=(x, y)")
        self.run = _run_name(type(model).__name__ if run is None else run)
        self.sink = sink
        self.flush_every_s = check.nonnegative_float("flush_every_s", flush_every_s)
        self.config: dict[str, Any] = {
            "kind": "monitor",
            "run": self.run,
            "model": {"class": type(model).__qualname__, "parameters": _count(trainable)},
            "loss_fn": getattr(loss_fn, "__name__", type(loss_fn).__name__),
            "probes": dict(self.schedule),
            "probe_set": {"source": source, "examples": int(self.data[0].shape[0])},
        }
        if self.eval_data is not None:
            self.config["eval_set"] = {"examples": int(self.eval_data[0].shape[0])}
        self.key: str | None = None
        self.status: RunStatus = "new"
        self.trace = Trace(status="completed", steps=0, reason="")
        self.last_step: int | None = None
        self._last_due: list[str] = []
        self._reserved = scheduled_metrics(self.schedule) | {"lr", "loss"}
        self._flushed: dict[str, int] = {}
        self._limit: float | None = None
        self._memory: dict[str, object] = {}
        self._init_params = clone_params(params_of(model))
        self._start = self._last_flush = 0.0

    # -- the run ---------------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        """Start the run: store its config (``sink.begin``); return the monitor."""
        if self.status != "new":
            raise RuntimeError(f"monitor of run {self.run!r} was started already; make a new one")
        if self.sink is not None:
            self.key, self.config = self.sink.begin(self.config)
        self.status = "running"
        self._start = self._last_flush = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        """End the run (final probes on a clean exit); an exception is recorded, not swallowed."""
        self.close(exc)
        return False

    @property
    def diverged(self) -> bool:
        """Whether the probe-set loss diverged (the probes then stop; the loop may go on)."""
        return self.trace.status == "diverged"

    def step(self, step: int, *, lr: float | None = None, **values: float) -> None:
        """Record step ``step``: ``lr``, ``values``, and the probes due at ``step``.

        Args:
            step: the step number (an integer larger than the last one given).
            lr: the learning rate of this step, recorded as the series ``lr``.
            **values: other numbers to record as series (e.g. ``batch_loss=loss.item()``);
                names may not be ``lr`` or a scheduled probe's metric.

        Raises:
            ValueError: a step not after the last one, or a value that is no number.
            RuntimeError: called outside the ``with`` block.

        """
        if self.status != "running":
            raise RuntimeError(
                f"mon.step({step!r}) outside the run (status {self.status!r}); call it inside "
                "`with gs.monitor(...) as mon:`"
            )
        t = check.nonnegative_int("step", step)
        if self.last_step is not None and t <= self.last_step:
            raise ValueError(
                f"step must increase: got {t} after {self.last_step}; pass a global step "
                "counter (e.g. epoch * len(loader) + i)"
            )
        given = {"lr": lr} if lr is not None else {}
        for name in values:
            if check.records(self._reserved, name):
                raise ValueError(
                    f"mon.step: value {name!r} clashes with lr, loss or a scheduled probe's metric; "
                    "rename it"
                )
        given.update(values)
        self.trace.record(t, {name: _number(name, v) for name, v in given.items()})
        self.last_step = t
        due = [] if self.diverged else due_probes(self.schedule, t)
        if due:
            self._checkpoint(t, due)
            self._last_due = due
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def close(self, error: BaseException | None = None) -> None:
        """End the run and write everything left; a no-op once closed.

        On a clean end (``error`` None) the probes not due at the last step are measured there
        and the status is ``completed`` (or ``diverged``); with ``error`` it is ``failed``, or
        ``interrupted`` for a ``KeyboardInterrupt``.
        """
        if self.status != "running":
            return
        if error is None and not self.diverged and self.last_step is not None:
            rest = [name for name in self.schedule if name not in self._last_due]
            try:
                if rest:
                    self._checkpoint(self.last_step, rest)
            except BaseException as err:  # the final probes failed: the run failed
                self._end(err)
                raise
        self._end(error)

    def flush(self) -> None:
        """Write the records not yet written to the sink."""
        self._last_flush = time.monotonic()
        if self.sink is None:
            return
        rows = []
        for metric, (steps, values) in self.trace.records.items():
            done = self._flushed.get(metric, 0)
            rows += [(s, metric, v) for s, v in zip(steps[done:], values[done:], strict=True)]
            self._flushed[metric] = len(steps)
        if rows:
            self.sink.append(rows)

    # -- internals -------------------------------------------------------------------------

    def _checkpoint(self, t: int, due: list[str]) -> None:
        """Measure ``due`` at ``t``; first the loss, which decides divergence."""
        with self._measuring():
            ctx = ProbeContext(
                self.model,
                params_of(self.model),
                self._init_params,
                self.loss_fn,
                self.data,
                self.eval_data,
                t,
                memory=self._memory,
            )
            loss = ctx.loss()
            if self._limit is None:
                self._limit = divergence_limit(loss)
            if record_divergence(self.trace, t, {}, loss, self._limit):
                return
            metrics = measure(due, ctx)
        self.trace.record(t, metrics)

    @contextmanager
    def _measuring(self) -> Iterator[None]:
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            autocast_off = (
                torch.autocast(self.device.type, enabled=False)
                if self.device.type in ("cpu", "cuda", "mps", "xpu")
                else contextlib.nullcontext()
            )
            with torch.random.fork_rng(devices=devices), torch.enable_grad(), autocast_off:
                yield
        finally:
            for module, mode in modes:
                module.training = mode

    def _end(self, error: BaseException | None) -> None:
        if error is None:
            self.status = "diverged" if self.diverged else "completed"
            reason = self.trace.reason if self.diverged else self._summary()
            text = None
        else:
            self.status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            text = "".join(traceback.format_exception(error))
            where = f" after step {self.last_step}" if self.last_step is not None else ""
            said = str(error).strip().splitlines()
            reason = type(error).__name__ + (f": {said[0]}" if said else "") + where
        self.trace.reason = reason
        if self.last_step is not None and not self.diverged:
            self.trace.steps = self.last_step
        wall = time.monotonic() - self._start
        self.trace.wall_time_s = wall
        self.flush()
        if self.sink is not None:
            steps = self.trace.steps if self.last_step is not None else None
            self.sink.finish(self.status, reason, text, steps, wall)

    def _summary(self) -> str:
        if self.last_step is None:
            return "no step was recorded"
        first = min(steps[0] for steps, _ in self.trace.records.values())
        return f"monitored steps {first} to {self.last_step}"


def _run_name(run: Any) -> str:
    if not isinstance(run, str) or not run.strip() or not run.isprintable() or len(run) > 200:
        raise ValueError(
            f"run must be a non-empty one-line name of at most 200 characters, got {run!r}"
        )
    return run


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"mon.step: {name} must be a number, got {value!r}") from None


def _count(parameters: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)
