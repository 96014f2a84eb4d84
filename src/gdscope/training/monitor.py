"""``Monitor``: gdscope's scheduled probes inside a training loop the user writes.

The user keeps the loop (any optimizer, scheduler, AMP, gradient clipping) and calls
``mon.step(t, lr=...)`` with ``t`` the number of updates made so far, as ``gdscope.train``
counts its checkpoints: once before the first update (step 0, the initial weights) and once
after each update; ``gdscope.monitor`` builds the monitor and writes to the results store
(:mod:`gdscope.integrations`)::

    with gs.monitor(model, loss_fn, probe_batch, probes={"sharpness": 50}, run="my-run") as mon:
        mon.step(0, lr=scheduler.get_last_lr()[0])
        for t, (x, y) in enumerate(loader, start=1):
            ...  # the user's own update (and scheduler step)
            mon.step(t, lr=scheduler.get_last_lr()[0])  # the lr of the next update

At ``mon.step(t)`` the probes due at ``t`` (every ``k``-th step, :func:`~gdscope.training.loop.
due_probes`, as in ``gdscope.train``) measure the model *as it is then* on a fixed probe set,
through the :class:`~gdscope.training.context.ProbeContext` and ``PROBES`` of ``train`` (so
sharpness warm-starts from its last eigenvector, one NTK Gram serves every kernel probe). The
baselines of the probes that compare with the start (``dist_from_init``, ``ntk_drift``,
``relative_residual``, the linearization) are the weights at the first ``mon.step``; a first
``mon.step(0)`` after the weights moved warns. When the set of trainable parameters changes
(a layer unfrozen), the monitor warns and its warm starts and kernel baselines start again
there. On a clean exit every scheduled probe not measured at the last step is measured there,
as ``train`` measures all at its last checkpoint. ``lr`` and any other numbers passed are
recorded as series.

Measuring leaves the user's run as it was: the model is put in ``eval()`` mode (dropout off,
batch-norm statistics read, not updated) and back; autocast and inference mode are off and
gradients on; the probes never touch ``.grad``; the global RNG streams are restored
(``torch.random.fork_rng``).

Divergence is the rule of ``train``: at a checkpoint whose probe-set loss is non-finite or above
``DIVERGENCE_FACTOR``·|L₀| (L₀ at the first checkpoint) the run is ``"diverged"``; the probes
stop, the user's loop goes on (``mon.diverged`` says so), nothing raises. An exception inside
the ``with`` ends the run ``"failed"`` (``"interrupted"`` for ``KeyboardInterrupt``), with the
series so far, and propagates.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope.functional import autocast_off, clone_params, params_of
from gdscope.training.context import ProbeContext
from gdscope.training.loop import (
    Trace,
    divergence_limit,
    due_probes,
    measure,
    record_divergence,
    validate_schedule,
)
from gdscope.training.probe_set import probe_set
from gdscope.training.scheduled import PROBES, scheduled_metrics

__all__ = ["Monitor", "RunSink", "RunStatus"]

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
        optimizer: the optimizer of the loop, for probes that read its state
            (``preconditioned_sharpness``).

    Raises:
        ValueError: an unknown probe, a bad schedule, a ``probe_batch`` of the wrong type, a
            model without parameters, a bad ``run`` name, a probe that reads the optimizer
            without one (one line, nothing written).

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
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.schedule = validate_schedule(probes, loss_fn=loss_fn)
        for name in self.schedule:
            if optimizer is None and PROBES[name].needs_optimizer:
                raise ValueError(
                    f"probes: {name!r} reads the optimizer's state; pass optimizer= (the "
                    "optimizer your loop steps)"
                )
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
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
        self._init_params = _all_params(model)  # the baselines: retaken at the first step
        self._trainable: tuple[str, ...] | None = None
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
            lr: the learning rate of the next update (``scheduler.get_last_lr()`` after
                the scheduler step), recorded as the series ``lr``.
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
        if self.last_step is None:
            self._first_step(t)
        self.trace.record(t, {name: _number(name, v) for name, v in given.items()})
        self.last_step = t
        due = [] if self.diverged else due_probes(self.schedule, t)
        self._last_due = due
        if due:
            self._checkpoint(t, due)
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
        rows, written = [], {}
        for metric, (steps, values) in self.trace.records.items():
            done = self._flushed.get(metric, 0)
            rows += [(s, metric, v) for s, v in zip(steps[done:], values[done:], strict=True)]
            written[metric] = len(steps)
        if rows:
            self.sink.append(rows)
        self._flushed.update(written)  # only once written: a failed write is tried again

    # -- internals -------------------------------------------------------------------------

    def _first_step(self, t: int) -> None:
        """Take the baselines at the first step; warn when step 0 comes after the weights moved."""
        now = _all_params(self.model)
        before = self._init_params.items()
        if t == 0 and any(not torch.equal(now[k], v) for k, v in before if k in now):
            warnings.warn(
                "mon.step(0) after the weights moved: a step counts the updates made, so call "
                "mon.step(0) before the first update and mon.step(t) after the t-th",
                stacklevel=3,
            )
        self._init_params = now

    def _checkpoint(self, t: int, due: list[str]) -> None:
        """Measure ``due`` at ``t``; first the loss, which decides divergence."""
        params = params_of(self.model)
        if self._trainable is not None and tuple(params) != self._trainable:
            warnings.warn(
                f"the trainable parameters changed before step {t}; the monitor's warm starts "
                "and kernel baselines start again here",
                stacklevel=3,
            )
            self._memory.clear()
        self._trainable = tuple(params)
        for name in params.keys() - self._init_params.keys():  # a parameter added: starts here
            self._init_params[name] = params[name].clone()
        init = {name: self._init_params[name] for name in params}
        with self._measuring():
            ctx = ProbeContext(
                self.model,
                params,
                init,
                self.loss_fn,
                self.data,
                self.eval_data,
                t,
                memory=self._memory,
                optimizer=self.optimizer,
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
            with (
                torch.random.fork_rng(devices=devices),
                torch.inference_mode(False),
                torch.enable_grad(),
                autocast_off(),
            ):
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
        try:
            self.flush()
        finally:  # the run's row is closed even where the last write failed
            if self.sink is not None:
                steps = self.trace.steps if self.last_step is not None else None
                self.sink.finish(self.status, reason, text, steps, wall)

    def _summary(self) -> str:
        if self.last_step is None or not self.trace.records:
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


def _all_params(model: nn.Module) -> dict[str, Tensor]:
    """Return a copy of every parameter, frozen ones too (a layer unfrozen later has a start)."""
    return clone_params(dict(model.named_parameters()))
