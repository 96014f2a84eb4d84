"""``train_ensemble``: full-batch training of M models at once, one ``Trace`` per member.

Every member's ``Trace`` is the one :func:`gdscope.train` returns for that member alone: the same
checkpoints ``t = 0, …, steps`` (θ_t measured before the t-th update), the same probes on the
same schedule, and each member's checkpoints judged by its own
:class:`~gdscope.training.skeleton.Run` (the divergence rule watching the loss, then the stop
criteria, then the record), as the loop's are. A member that diverges or stops leaves the stack
at that step (its series end where the loop's would) and the others go on unaffected. The
stepping stays here, not in :func:`~gdscope.training.drive`: one batched update moves every
member still in the stack, and the stack shrinks as members end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gdscope import losses
from gdscope.ensemble._errors import NotBatchableError
from gdscope.ensemble._exact import _as_allocated
from gdscope.ensemble._optim import StackedSGD
from gdscope.ensemble._probes import BATCHED, BatchedProbes
from gdscope.ensemble._stack import Ensemble, aligned_stack
from gdscope.functional import clone_params, params_of
from gdscope.probes.infinite_dynamics import plain_gd_lr
from gdscope.training.context import ProbeContext
from gdscope.training.loop import LOSS, Stop, Trace, probes_not_due, validate_schedule
from gdscope.training.scheduled import PROBES
from gdscope.training.skeleton import Reading, Run

__all__ = ["train_ensemble"]

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]


@dataclass
class _Member:
    """What the loop keeps for one member of the ensemble."""

    index: int
    model: nn.Module
    data: Batch
    eval_data: Batch | None
    init: dict[str, Tensor]
    run: Run
    gd_step: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)


def train_ensemble(
    models: Sequence[nn.Module],
    optimizers: Sequence[torch.optim.Optimizer],
    data: Batch | Sequence[Batch],
    steps: int,
    *,
    loss_fn: LossFn = losses.mse,
    probes: Mapping[str, int] | None = None,
    stop: Stop | None = None,
    eval_data: Batch | Sequence[Batch | None] | None = None,
    exact: bool = True,
    compile: bool = False,
) -> list[Trace]:
    """Train structurally identical ``models`` together, full batch; return one ``Trace`` each.

    The update of member ``i`` is its own ``torch.optim.SGD`` (GD, heavy ball, Nesterov) with
    its own step size, momentum and weight decay, applied to the stacked tensors by
    :class:`StackedSGD`. One stacked update runs one set of torch's operations, so the members
    share which of momentum and weight decay are 0 (GD and heavy ball are two ensembles),
    dampening and Nesterov.

    Args:
        models: the members (see :class:`Ensemble` for what "identical" means).
        optimizers: member ``i``'s fresh ``torch.optim.SGD`` over ``models[i]``'s parameters.
        data: one ``(x, y)`` for all members, or one per member (same shapes).
        steps: number of updates (≥ 0).
        loss_fn: ``loss_fn(output, target) -> scalar``.
        probes: ``{probe name: every k steps}`` from ``gdscope.PROBES``; default ``{"loss": 1}``.
        stop: criteria that end a member's run with status ``"stopped"``.
        eval_data: held-out ``(x, y)``, shared or one per member, for the ``"test"`` probe.
        exact: bitwise the loop's numbers (matrix products per member); ``False`` batches
            everything (faster, equal up to rounding).
        compile: ``torch.compile`` the batched step (needs ``exact=False``; falls back to eager).

    Returns:
        ``traces[i]`` equal to ``gdscope.train(models[i], optimizers[i], data_i, steps, ...)``
        (with ``exact=True``; ``wall_time_s`` is the ensemble's time divided by M).

    Raises:
        NotBatchableError: the members cannot be trained as one ensemble (nothing is trained:
            structure and optimizers are checked first, and the first batched step is compared
            with each member alone before any update).
        ValueError: bad ``steps`` or probe schedule.

    Example:
        >>> import gdscope as gs
        >>> nets = [gs.models.two_layer(4, 16, seed=s) for s in range(3)]
        >>> opts = [torch.optim.SGD(n.parameters(), lr=lr) for n, lr in zip(nets, [0.1, 0.2, 0.4])]
        >>> x, y = gs.data.sphere(n=8, d=4, seed=0)
        >>> traces = train_ensemble(nets, opts, (x, y), steps=5)
        >>> [t.status for t in traces]
        ['completed', 'completed', 'completed']

    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    schedule = validate_schedule(probes, loss_fn=loss_fn)
    stop = stop or Stop()
    datas = _per_member(data, len(models), "data")
    evals = _per_member(eval_data, len(models), "eval_data")
    ensemble = Ensemble(models, exact=exact, compile=compile)
    params = [ensemble.member_params(i) for i in range(len(models))]
    optimizer = StackedSGD.from_members(optimizers, params, ensemble.params)
    members = [
        _Member(
            i,
            m,
            datas[i],
            evals[i],
            clone_params(params_of(m)),
            Run(steps, LOSS),
            plain_gd_lr(o, m),
        )
        for i, (m, o) in enumerate(zip(models, optimizers, strict=True))
    ]
    return _Loop(ensemble, optimizer, members, loss_fn, schedule, stop, steps).run()


def _per_member(value: Any, count: int, what: str) -> list[Any]:
    if value is None:
        return [None] * count
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Tensor):
        return [value] * count
    value = list(value)
    if len(value) != count:
        raise ValueError(f"{what}: expected one (x, y) pair or {count}, got {len(value)}")
    return value


class _Loop:
    """The training loop of :func:`gdscope.train` (full batch), run for a shrinking stack."""

    def __init__(
        self,
        ensemble: Ensemble,
        optimizer: StackedSGD,
        members: list[_Member],
        loss_fn: LossFn,
        schedule: dict[str, int],
        stop: Stop,
        steps: int,
    ) -> None:
        self.ensemble, self.optimizer, self.members = ensemble, optimizer, members
        self.loss_fn, self.schedule, self.stop, self.steps = loss_fn, schedule, stop, steps
        self.shared = all(_equal(m.data, members[0].data) for m in members)
        self.init = {n: aligned_stack([m.init[n] for m in members]) for n in ensemble.names}
        self.batched_probes = BatchedProbes()
        self._stack_data()

    def _stack_data(self) -> None:
        active = [self.members[i] for i in self.ensemble.active]
        if self.shared:
            self.x, self.y = active[0].data
        else:
            self.x = aligned_stack([m.data[0] for m in active])
            self.y = aligned_stack([m.data[1] for m in active])

    def run(self) -> list[Trace]:
        start = time.perf_counter()
        for t in range(self.steps + 1):
            result = self._first_step() if t == 0 else self._step()
            finished = self._checkpoint(t, result)
            keep = [s for s in range(len(self.ensemble)) if s not in finished]
            if t == self.steps or not keep:
                break
            grads = result[2]
            if finished:
                index = self.ensemble.keep(keep)
                self.optimizer.keep(index, list(self.ensemble.params.values()))
                self.init = {n: aligned_stack(list(v[index])) for n, v in self.init.items()}
                grads = {n: g[index] for n, g in grads.items()}
                self.batched_probes.reset()
                self._stack_data()
            for name, p in self.ensemble.params.items():  # no gradient: no weight decay either
                p.grad = None if name in self.ensemble.ungraded else grads[name]
            self.optimizer.step()
        share = (time.perf_counter() - start) / len(self.members)
        for member in self.members:
            member.run.trace.wall_time_s = share
        return [m.run.trace for m in self.members]

    def _step(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return self.ensemble.loss_and_grad(
            self.loss_fn, self.x, self.y, batched_data=not self.shared
        )

    def _first_step(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Run the first batched step and check it against every member alone."""
        try:
            result = self._step()
        except Exception as error:  # e.g. data-dependent control flow that vmap cannot batch
            raise NotBatchableError(f"the batched step failed: {error}") from error
        active = [self.members[i].data for i in self.ensemble.active]
        self.ensemble.check_against_loop(self.loss_fn, active, result)
        return result

    def _checkpoint(self, t: int, result: tuple[Tensor, Tensor, dict[str, Tensor]]) -> set[int]:
        """Record checkpoint ``t`` of every active member; return the slots that finished."""
        loss, out, grads = result
        due = [name for name, every in self.schedule.items() if t % every == 0 or t == self.steps]
        contexts = [
            self._context(t, slot, out, grads, bool(due)) for slot in range(len(self.ensemble))
        ]
        watched = loss.tolist()
        for slot, ctx in enumerate(contexts):
            ctx.cache["loss"] = watched[slot]
        metrics: list[dict[str, float]] = [{} for _ in contexts]
        stacked = (self.ensemble.params, self.init, grads)
        for name in due:
            if name in BATCHED:

                def one(slot: int, name: str = name) -> dict[str, float]:
                    return PROBES[name](contexts[slot])

                values = self.batched_probes.evaluate(name, stacked, one, len(contexts))
            else:
                values = [PROBES[name](ctx) for ctx in contexts]
            for record, value in zip(metrics, values, strict=True):
                record.update(value)
        finished = set()
        for slot, ctx in enumerate(contexts):
            member = self.members[self.ensemble.active[slot]]
            if self._record(member, t, ctx, watched[slot], metrics[slot], due):
                finished.add(slot)
        return finished

    def _context(
        self, t: int, slot: int, out: Tensor, grads: dict[str, Tensor], due: bool
    ) -> ProbeContext:
        member = self.members[self.ensemble.active[slot]]
        model = member.model
        ctx = ProbeContext(
            model,
            params_of(model),
            member.init,
            self.loss_fn,
            member.data,
            member.eval_data,
            t,
            memory=member.memory,
            gd_step=member.gd_step,  # an ensemble trains full batch
        )
        if due or self.stop != Stop():
            ctx.cache["train_output"] = _as_allocated(out[slot])
            ctx.cache["train_grads"] = [_as_allocated(grads[n][slot]) for n in grads]
        return ctx

    def _record(
        self,
        member: _Member,
        t: int,
        ctx: ProbeContext,
        watched: float,
        metrics: dict[str, float],
        due: list[str],
    ) -> bool:
        """Judge one member's checkpoint as ``gdscope.train`` does; True when its run ends."""
        start = metrics.get("loss", watched)
        reading = Reading((watched, metrics.get("loss")), metrics, start)

        def stop(t: int, reading: Reading) -> str | None:
            if self.stop == Stop():
                return None
            accuracy = float(losses.accuracy(ctx.train_output(), member.data[1]))
            checks: Mapping[str, float] = {"loss": watched, "accuracy": accuracy}
            reason = self.stop.met_by(checks)
            if reason is not None:
                reading.metrics.update(probes_not_due(self.schedule, due, ctx))
                reading.metrics.update(checks)
            return reason

        return member.run.checkpoint(t, reading, stop) or t == self.steps


def _equal(a: Batch, b: Batch) -> bool:
    return all(
        u.shape == v.shape and u.dtype == v.dtype and torch.equal(u, v)
        for u, v in zip(a, b, strict=True)
    )
