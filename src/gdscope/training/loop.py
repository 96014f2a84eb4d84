"""``train``: run a torch.optim optimizer on a model and record probes on a schedule.

The loop is the one of :mod:`gdscope.training.skeleton` (checkpoints ``t = 0, …, steps``, each
measuring θ_t *before* the t-th update; the divergence rule; the stop rule), watching the loss
(:data:`LOSS`) and stopping on the :class:`Stop` criteria. Full-batch training
(``batch_size=None``) takes one gradient of the whole-data loss per step and the recorded ``loss``
at t is exactly the loss of that step; mini-batch training draws batches from a seeded permutation
per epoch and evaluates scheduled probes on the full training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope import losses
from gdscope.functional import autocast_off, clone_params, params_of
from gdscope.probes.infinite_dynamics import plain_gd_lr
from gdscope.training.context import ProbeContext
from gdscope.training.scheduled import PROBES, scheduled_metrics
from gdscope.training.skeleton import (
    DIVERGENCE_FACTOR,
    Reading,
    Status,
    Trace,
    Watch,
    diverged,
    divergence_limit,
    drive,
    end_if_diverged,
)
from gdscope.training.train_arguments import (
    check_train_arguments,
    explain_dtype,
    unmeasured_stop,
)

__all__ = [
    "DIVERGENCE_FACTOR",
    "LOSS",
    "ProbeFn",
    "Status",
    "Stop",
    "Trace",
    "diverged",
    "divergence_limit",
    "due_probes",
    "measure",
    "probes_not_due",
    "record_divergence",
    "train",
    "validate_schedule",
]

LOSS = Watch("loss", "loss", f"{DIVERGENCE_FACTOR:.0e}× initial")
"""What the divergence rule watches in a network run: the loss, floor ``1e-30``."""


def record_divergence(
    trace: Trace, t: int, metrics: dict[str, float], watched: float | None, limit: float
) -> bool:
    """Record step ``t`` as the end of a diverged run if its loss is non-finite or above ``limit``.

    ``watched`` is the loss the training step computed (``None`` on mini-batch steps between
    checkpoints); ``metrics`` are the probes of the checkpoint. Returns whether the run diverged
    (:func:`~gdscope.training.skeleton.end_if_diverged`, watching :data:`LOSS`).
    """
    return end_if_diverged(trace, t, Reading((watched, metrics.get("loss")), metrics), LOSS, limit)


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


ProbeFn = Callable[[ProbeContext], dict[str, float]]
"""A probe: ``fn(ctx) -> {metric: value}`` at one checkpoint."""


def validate_schedule(
    probes: Mapping[str, int] | None,
    extra: Mapping[str, ProbeFn] | None = None,
    loss_fn: Callable[..., Tensor] | None = None,
) -> dict[str, int]:
    """Return ``probes`` as a ``{probe name: every k steps}`` dict; ``None`` is ``{"loss": 1}``.

    A name is one of ``PROBES`` or of ``extra`` (the probes of one run, :func:`train`).

    Raises:
        ValueError: a name not in ``PROBES`` (with the closest one), a ``k`` that is not a
            positive integer, or a probe of the square loss alone (``sandwich``) beside
            another ``loss_fn``; one line naming the field ``probes``, the value and the fix.

    """
    if probes is not None and not isinstance(probes, Mapping):
        raise ValueError(
            f"probes must be a mapping {{probe name: every k steps}}, got "
            f"{type(probes).__name__} {probes!r}; pass e.g. {{'loss': 1, 'sharpness': 10}}"
        )
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
        square_only = name in PROBES and name not in (extra or {}) and PROBES[name].square_loss_only
        if square_only and loss_fn is not None and not losses.is_mse(loss_fn):
            raise ValueError(
                f"probes: {name!r} holds for the square loss gs.losses.mse (½·mean over "
                "examples of the squared error summed over outputs) only, and the loss is "
                f"{getattr(loss_fn, '__name__', type(loss_fn).__name__)}; train with "
                "gs.losses.mse, or drop the probe"
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
        ValueError: bad ``steps``, ``batch_size`` or probe schedule, an optimizer over other
            tensors than the model's parameters, a mini-batch stop rule nothing measures
            (:mod:`~gdscope.training.train_arguments`; nothing is run); ``data`` of another
            dtype than the model, once the model failed on it.
        TypeError: ``data`` or ``eval_data`` not an ``(x, y)`` pair of tensors.

    """
    check_train_arguments(model, optimizer, data, eval_data)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    n = data[0].shape[0]
    if batch_size is not None and not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] (the training set size), got {batch_size}"
        )
    schedule = validate_schedule(probes, extra_probes, loss_fn)
    if not set(schedule) & set(extra_probes or {}):  # this run's own probes may record them
        why = unmeasured_stop(stop, scheduled_metrics(schedule), batch_size, n)
        if why:
            raise ValueError(why)
    run = _Network(model, optimizer, data, steps, loss_fn, schedule, extra_probes,
                   batch_size=batch_size, seed=seed, stop=stop or Stop(), eval_data=eval_data)  # fmt: skip
    try:
        return drive(steps, run.measure, run.update, watch=LOSS, stop=run.stop_reason)
    except RuntimeError as error:
        explain_dtype(model, data, error)
        raise


class _Network:
    """The checkpoints and updates of one :func:`train` run, for :func:`drive`.

    ``batch_size`` ``None`` (or ``n``) trains full-batch, else on mini-batches in a ``seed``-ed
    order; ``stop`` ends the run early; ``eval_data`` is the held-out set of the ``"test"`` probe.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: tuple[Tensor, Tensor],
        steps: int,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        schedule: dict[str, int],
        extra: Mapping[str, ProbeFn] | None,
        *,
        batch_size: int | None,
        seed: int,
        stop: Stop,
        eval_data: tuple[Tensor, Tensor] | None,
    ) -> None:
        self.model, self.optimizer, self.data, self.steps = model, optimizer, data, steps
        self.loss_fn, self.schedule, self.extra = loss_fn, schedule, extra
        self.stop, self.eval_data = stop, eval_data
        n = data[0].shape[0]
        self.full_batch = batch_size is None or batch_size == n
        self.gd_step = plain_gd_lr(optimizer, model) if self.full_batch else None
        self.gd_groups = len(optimizer.param_groups)
        self.order = _BatchOrder(n, batch_size or n, seed, data[0].device)
        self.checked = self.full_batch and stop != Stop()  # criteria read the step's full batch
        self.init_params = clone_params(params_of(model))
        self.trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.memory: dict[str, object] = {}
        self.batch = data
        self.due: list[str] = []
        self.watched: float | None = None

    def _gd_step(self) -> float | None:
        """``η`` while the run is still plain full-batch GD at the step it started with.

        The full check (:func:`plain_gd_lr`) ran at the start; each step checks only that no
        group was added and no ``lr`` changed (about a microsecond). Once one has, it stays
        ``None``: a rate put back later does not undo the steps taken at another.
        """
        groups = self.optimizer.param_groups
        if self.gd_step is not None and (
            len(groups) != self.gd_groups or any(g["lr"] != self.gd_step for g in groups)
        ):
            self.gd_step = None
        return self.gd_step

    def measure(self, t: int) -> Reading:
        """One forward-backward at θ_t (full batch: the step's own), then the probes due."""
        params = {name: p.detach() for name, p in self.trainable}  # params_of, without the walk
        ctx = ProbeContext(
            self.model,
            params,
            self.init_params,
            self.loss_fn,
            self.data,
            self.eval_data,
            t,
            memory=self.memory,
            optimizer=self.optimizer,
            gd_step=self._gd_step(),  # every step: a stop may run the probes not due here
        )
        self.ctx, self.due = ctx, due_probes(self.schedule, t, last=self.steps)
        if self.full_batch:
            self.batch = xb, yb = self.data
            with torch.enable_grad():
                self.optimizer.zero_grad(set_to_none=True)
                output = self.model(xb)
                step_loss = self.loss_fn(output, yb)
                step_loss.backward()
            ctx.cache["train_output"] = output.detach()
            ctx.cache["train_grads"] = [
                p.grad.detach() if p.grad is not None else torch.zeros_like(p)
                for _, p in self.trainable
            ]
            self.watched = float(step_loss.detach())
            ctx.cache["loss"] = self.watched
        else:
            self.batch = self.order.next_batch(self.data)
            self.watched = None
            if t < self.steps:
                self.watched = float(self.closure().detach())
        if self.watched is not None and not math.isfinite(self.watched):
            metrics = {"loss": self.watched}  # the run ends here, diverged: nothing to measure
        else:
            with autocast_off():  # the probes measure the model in its dtype (the step may not)
                metrics = measure(self.due, ctx, self.extra)
        start = metrics.get("loss", self.watched) if t == 0 else None
        if t == 0 and start is None:
            start = ctx.loss()
        return Reading((self.watched, metrics.get("loss")), metrics, start)

    def stop_reason(self, t: int, reading: Reading) -> str | None:
        """Apply the :class:`Stop` criteria; a stopped checkpoint records every scheduled probe."""
        stop, ctx, labels, checked = self.stop, self.ctx, self.batch[1], self.checked
        if checked:  # the accuracy only where a criterion reads it (it costs a pass)
            checks: dict[str, float] = {"loss": cast(float, self.watched)}  # set: full batch
            if stop.accuracy_at_least is not None:
                checks["accuracy"] = float(losses.accuracy(ctx.train_output(), labels))
        else:
            checks = reading.metrics
        reason = stop.met_by(checks)
        if reason is not None:
            reading.metrics.update(probes_not_due(self.schedule, self.due, ctx, self.extra))
            if checked and "accuracy" not in checks:  # a stopped run records both
                checks["accuracy"] = float(losses.accuracy(ctx.train_output(), labels))
            reading.metrics.update(checks)
        return reason

    def closure(self) -> Tensor:
        """Return the loss of the current batch, with its gradient in ``.grad``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.batch[0]), self.batch[1])
        loss.backward()
        return loss

    def update(self, t: int) -> None:
        """One optimizer step (with the closure where the optimizer needs one)."""
        if _needs_closure(self.optimizer):
            self.optimizer.step(self.closure)  # type: ignore[arg-type]
        else:
            self.optimizer.step()


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
