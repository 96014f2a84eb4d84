"""``train``: run a torch.optim optimizer on a model and record probes on a schedule.

The loop measures the state θ_t *before* the t-th update, for t = 0, 1, …, steps, so a run of
``steps`` updates yields ``steps + 1`` checkpoints. Full-batch training (``batch_size=None``) takes one
gradient of the whole-data loss per step and the recorded ``loss`` at t is exactly the loss of that
step; mini-batch training draws batches from a seeded permutation per epoch and evaluates scheduled
probes on the full training set.

A run ends with status ``"completed"`` (all steps done), ``"stopped"`` (a stop criterion was met) or
``"diverged"`` (the loss became non-finite or exceeded ``DIVERGENCE_FACTOR`` times the initial loss);
divergence is a result, not an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import torch
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope import losses
from gdscope.functional import clone_params, params_of
from gdscope.training.context import ProbeContext
from gdscope.training.scheduled import PROBES

Status = Literal["completed", "diverged", "stopped"]
DIVERGENCE_FACTOR = 1e6


def divergence_limit(initial: float, floor: float = 1e-30) -> float:
    """Return the value above which a run has diverged: ``DIVERGENCE_FACTOR · max(|initial|, floor)``.

    The one divergence rule of every trial kind (with :func:`diverged`): the watched quantity at
    the start sets the scale, and ``floor`` is the scale below which a start counts as zero — the
    loss of a network (``1e-30``, the default), the test objectives of seed 002 (``1``: their
    values are of order one), the lasso objective (``1e-12``), a relative residual (its start is 1).

    >>> divergence_limit(0.5), divergence_limit(0.0, floor=1.0)
    (500000.0, 1000000.0)
    """
    return DIVERGENCE_FACTOR * max(abs(initial), floor)


def diverged(value: float, limit: float) -> bool:
    """Return whether ``value`` is non-finite or above ``limit`` (:func:`divergence_limit`).

    >>> diverged(float("nan"), 1.0), diverged(2.0, 1.0), diverged(1.0, 1.0)
    (True, True, False)
    """
    return not math.isfinite(value) or value > limit


def record_divergence(
    trace: Trace, t: int, metrics: dict[str, float], watched: float | None, limit: float
) -> bool:
    """Record step ``t`` as the end of a diverged run if its loss is non-finite or above ``limit``.

    ``watched`` is the loss the training step computed (``None`` on mini-batch steps between
    checkpoints); ``metrics`` are the probes of the checkpoint. Returns whether the run diverged.
    """
    watch = [v for v in (watched, metrics.get("loss")) if v is not None]
    bad = next((v for v in watch if diverged(v, limit)), None)
    if bad is None:
        return False
    metrics.setdefault("loss", bad)
    trace.record(t, metrics)
    trace.status, trace.steps = "diverged", t
    trace.reason = f"loss {bad:.3e} at step {t} (non-finite or > {DIVERGENCE_FACTOR:.0e}× initial)"
    return True


@dataclass(frozen=True)
class Stop:
    """Stop criteria checked whenever the metric is measured (every step in full-batch mode).

    Args:
        loss_below: stop once the training loss is ≤ this value.
        accuracy_at_least: stop once the training accuracy is ≥ this value (e.g. 1.0).

    """

    loss_below: float | None = None
    accuracy_at_least: float | None = None

    def met_by(self, metrics: Mapping[str, float]) -> str | None:
        """Return the reason the criteria are met by ``metrics``, or ``None``."""
        loss = metrics.get("loss")
        if self.loss_below is not None and loss is not None and loss <= self.loss_below:
            return f"loss {loss:.3e} <= {self.loss_below:.3e}"
        acc = metrics.get("accuracy")
        if self.accuracy_at_least is not None and acc is not None and acc >= self.accuracy_at_least:
            return f"accuracy {acc:.4f} >= {self.accuracy_at_least:.4f}"
        return None


@dataclass
class Trace:
    """What one training run measured: ``records[metric] = (steps, values)``, and how it ended."""

    status: Status
    steps: int
    reason: str
    records: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    wall_time_s: float = field(default=0.0, compare=False)

    @property
    def metrics(self) -> list[str]:
        """Names of the recorded metrics."""
        return list(self.records)

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(steps, values)`` arrays of one metric."""
        if metric not in self.records:
            raise KeyError(
                f"metric {metric!r} was not recorded; recorded: {', '.join(self.records)}"
            )
        steps, values = self.records[metric]
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def final(self, metric: str) -> float:
        """Return the last recorded value of ``metric``."""
        return float(self.series(metric)[1][-1])

    def rows(self) -> list[tuple[int, str, float]]:
        """Return the records in long form ``(step, metric, value)``, the store's layout."""
        return [
            (step, metric, value)
            for metric, (steps, values) in self.records.items()
            for step, value in zip(steps, values, strict=True)
        ]

    def record(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append ``metrics`` measured at ``step``."""
        for name, value in metrics.items():
            steps, values = self.records.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))


ProbeFn = Callable[[ProbeContext], dict[str, float]]
"""A probe: ``fn(ctx) -> {metric: value}`` at one checkpoint."""


def validate_schedule(
    probes: Mapping[str, int] | None, extra: Mapping[str, ProbeFn] | None = None
) -> dict[str, int]:
    """Return ``probes`` as a ``{probe name: every k steps}`` dict; ``None`` is ``{"loss": 1}``.

    A name is one of ``PROBES`` or of ``extra`` (the probes of one run, :func:`train`).

    Raises:
        ValueError: a name not in ``PROBES`` (with the closest one), or a ``k`` that is not a
            positive integer; one line naming the field ``probes``, the value and the fix.

    """
    schedule = {"loss": 1} if probes is None else dict(probes)
    known = [*PROBES, *(name for name in (extra or {}) if name not in PROBES)]
    for name, every in schedule.items():
        if name not in known:
            raise ValueError(
                f"probes: unknown probe {name!r}; accepted: {', '.join(known)}"
                f"{check.did_you_mean(name, known)}"
            )
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(
                f"probes: probe {name!r} schedule must be a positive integer (measure every "
                f"k steps), got {every!r}"
            )
    return schedule


def due_probes(schedule: Mapping[str, int], step: int, last: int | None = None) -> list[str]:
    """Names of the probes of ``schedule`` due at ``step``: every ``k``-th step, and at ``last``.

    >>> due_probes({"loss": 1, "sharpness": 5}, 3), due_probes({"sharpness": 5}, 3, last=3)
    (['loss'], ['sharpness'])
    """
    return [name for name, every in schedule.items() if step % every == 0 or step == last]


def measure(
    names: list[str], ctx: ProbeContext, extra: Mapping[str, ProbeFn] | None = None
) -> dict[str, float]:
    """Run the probes ``names`` (in order) at ``ctx``'s checkpoint; return their metrics.

    A name in ``extra`` runs that function (it shadows a probe of ``PROBES`` of that name).
    """
    metrics: dict[str, float] = {}
    for name in names:
        probe = extra.get(name) if extra else None
        metrics.update((probe or PROBES[name])(ctx))
    return metrics


def _needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    return isinstance(optimizer, torch.optim.LBFGS) or bool(
        getattr(optimizer, "requires_closure", False)
    )


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[Tensor, Tensor],
    steps: int,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = losses.mse,
    probes: Mapping[str, int] | None = None,
    batch_size: int | None = None,
    stop: Stop | None = None,
    eval_data: tuple[Tensor, Tensor] | None = None,
    seed: int = 0,
    extra_probes: Mapping[str, ProbeFn] | None = None,
) -> Trace:
    """Train ``model`` with ``optimizer`` on ``data`` for up to ``steps`` updates; return a ``Trace``.

    Args:
        model: the network; its parameters must be the ones ``optimizer`` updates.
        optimizer: any ``torch.optim.Optimizer``.
        data: ``(x, y)`` training set, on the model's device and dtype.
        steps: number of optimizer updates (≥ 0).
        loss_fn: ``loss_fn(output, target) -> scalar``; default ``gdscope.losses.mse``.
        probes: ``{probe name: every k steps}`` from ``PROBES``; default ``{"loss": 1}``.
            Every probe is also measured at the last checkpoint: the last step, or the step
            where a ``stop`` criterion ends the run (so a final-over-initial ratio always
            compares the end of the run with its start).
        batch_size: ``None`` for full-batch gradient descent, else mini-batch size.
        stop: criteria that end the run early with status ``"stopped"``.
        eval_data: held-out ``(x, y)`` for the ``"test"`` probe.
        seed: seeds the mini-batch order (unused in full-batch mode).
        extra_probes: probes of this run only, ``{name: fn(ctx) -> {metric: value}}``,
            scheduled by name in ``probes``; a name here shadows a built-in or registered
            probe for this run. ``PROBES`` is not touched (no global state; safe in threads).

    Returns:
        A ``Trace`` whose ``status`` is ``"completed"``, ``"stopped"`` or ``"diverged"``.

    Raises:
        ValueError: bad ``steps``, ``batch_size`` or probe schedule (nothing is run).

    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    n = data[0].shape[0]
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] (the training set size), got {batch_size}"
        )
    schedule = validate_schedule(probes, extra_probes)
    stop = stop or Stop()
    full_batch = batch_size is None or batch_size == n
    checked = full_batch and stop != Stop()  # criteria checked on the full-batch loss each step
    order = _BatchOrder(n, batch_size or n, seed, data[0].device)
    init_params = clone_params(params_of(model))
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    trace = Trace(status="completed", steps=steps, reason=f"ran {steps} steps")
    limit: float | None = None
    memory: dict[str, object] = {}
    start = time.perf_counter()

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        return loss

    for t in range(steps + 1):
        params = {name: p.detach() for name, p in trainable}  # params_of, without the walk
        ctx = ProbeContext(
            model,
            params,
            init_params,
            loss_fn,
            data,
            eval_data,
            t,
            memory=memory,
            optimizer=optimizer,
        )
        due = due_probes(schedule, t, last=steps)
        if full_batch:
            xb, yb = data
            with torch.enable_grad():
                optimizer.zero_grad(set_to_none=True)
                output = model(xb)
                step_loss = loss_fn(output, yb)
                step_loss.backward()
            ctx.cache["train_output"] = output.detach()
            ctx.cache["train_grads"] = [
                p.grad.detach() if p.grad is not None else torch.zeros_like(p) for _, p in trainable
            ]
            watched = float(step_loss.detach())
            ctx.cache["loss"] = watched
        else:
            xb, yb = order.next_batch(data)
            watched = None
            if t < steps:
                step_loss = closure()
                watched = float(step_loss.detach())
        metrics = measure(due, ctx, extra_probes)
        if limit is None:
            initial = metrics.get("loss", watched)
            if initial is None:
                initial = ctx.loss()
            limit = divergence_limit(initial)
        if record_divergence(trace, t, metrics, watched, limit):
            break
        if checked:  # the accuracy only where a criterion reads it (it costs a pass)
            checks: dict[str, float] = {"loss": cast(float, watched)}  # set: full batch
            if stop.accuracy_at_least is not None:
                checks["accuracy"] = float(losses.accuracy(ctx.train_output(), yb))
        else:
            checks = metrics
        reason = stop.met_by(checks)
        if reason is not None:
            metrics.update(probes_not_due(schedule, due, ctx, extra_probes))
            if checked and "accuracy" not in checks:  # a stopped run records both
                checks["accuracy"] = float(losses.accuracy(ctx.train_output(), yb))
            metrics.update(checks)
            trace.record(t, metrics)
            trace.status, trace.steps, trace.reason = "stopped", t, reason
            break
        trace.record(t, metrics)
        if t == steps:
            break
        if _needs_closure(optimizer):
            optimizer.step(closure)  # type: ignore[arg-type]
        else:
            optimizer.step()
    trace.wall_time_s = time.perf_counter() - start
    return trace


def probes_not_due(
    schedule: Mapping[str, int],
    due: list[str],
    ctx: ProbeContext,
    extra: Mapping[str, ProbeFn] | None = None,
) -> dict[str, float]:
    """Measure the scheduled probes not already ``due`` at a checkpoint where the run stops."""
    return measure([name for name in schedule if name not in due], ctx, extra)


class _BatchOrder:
    """Mini-batches from a fresh seeded permutation each epoch (last partial batch kept)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = n

    def next_batch(self, data: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        if self.pos >= self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        idx = self.perm[self.pos : self.pos + self.batch_size].to(self.device)
        self.pos += self.batch_size
        return data[0][idx], data[1][idx]
