"""A diagnosis cut short by Ctrl-C: what it had measured, to say so and to store it.

:class:`RunLog` keeps every number as it is measured (the values at init, and each probe of
the run as its checkpoint is measured: :meth:`RunLog.wrap` wraps the run's probes, which
``gdscope.train`` runs as ``extra_probes``, so nothing global is touched and the results are
the same bits). On a ``KeyboardInterrupt`` :func:`gdscope.diagnose.measure.measure` raises
:class:`Interrupted` (a ``KeyboardInterrupt``) carrying a :class:`Partial`: the phase, the
steps done and the series so far, which :func:`gdscope.diagnose.run.diagnose` stores as an
``interrupted`` monitored run when it has a results directory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from gdscope.config import TrialConfig
from gdscope.training import PROBES, ProbeContext
from gdscope.training.loop import ProbeFn

__all__ = ["Interrupted", "Partial", "RunLog"]

Records = dict[str, tuple[list[int], list[float]]]


@dataclass(frozen=True)
class Partial:
    """What an interrupted diagnosis measured: the series so far and where it stopped.

    ``phase`` is ``"init"`` (measuring at init, before the first update), ``"training"`` or
    ``"end"`` (after the last update, measuring the final kernel); ``steps`` counts the
    updates done (the last checkpoint measured).
    """

    config: TrialConfig
    parameters: int
    n_train: int
    ntk_examples: int
    hessian_examples: int
    loss: str
    schedule: dict[str, int]
    phase: str
    steps: int
    records: Records
    wall_time_s: float

    @property
    def last_loss(self) -> float | None:
        """The training loss at the last checkpoint measured (``None``: none was)."""
        values = self.records.get("loss", ([], []))[1]
        return values[-1] if values else None

    def summary(self) -> str:
        """Where the diagnosis stopped, e.g. ``"after 864 of 2000 steps (last loss 5.9e-10)"``."""
        total = self.config.steps
        if self.phase == "init":
            return f"while measuring at init, before the first of {total} steps"
        last = "" if self.last_loss is None else f" (last loss {self.last_loss:.4g})"
        if self.phase == "end":
            return f"after all {self.steps} steps{last}, while measuring the final NTK"
        return f"after {self.steps} of {total} steps{last}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`gdscope.diagnose.diagnose`; ``partial`` holds what was measured.

    ``stored`` is the name of the monitored run it was stored under (``None``: not stored).
    """

    def __init__(self, partial: Partial) -> None:
        super().__init__(f"diagnose interrupted {partial.summary()}")
        self.partial = partial
        self.stored: str | None = None


class RunLog:
    """Every number a diagnosis measured so far, by metric: ``records[metric] = (steps, values)``."""

    def __init__(self) -> None:
        self.records: Records = {}
        self.phase = "init"
        self.started = time.perf_counter()

    def record(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append ``metrics`` measured at ``step``."""
        for name, value in metrics.items():
            steps, values = self.records.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))

    def wrap(self, schedule: Mapping[str, int], extra: Mapping[str, ProbeFn]) -> dict[str, ProbeFn]:
        """Return each probe of ``schedule`` (one of ``extra``, else of ``PROBES``) logged here."""

        def logged(probe: ProbeFn) -> ProbeFn:
            def run(ctx: ProbeContext) -> dict[str, float]:
                metrics = probe(ctx)
                self.record(ctx.step, metrics)
                return metrics

            return run

        return {name: logged(extra.get(name) or PROBES[name]) for name in schedule}

    def interrupted(
        self,
        config: TrialConfig,
        *,
        parameters: int,
        n_train: int,
        ntk_examples: int,
        hessian_examples: int,
        loss: str,
        schedule: dict[str, int],
        lr: float,
    ) -> Interrupted:
        """Return the :class:`Interrupted` of what was logged (``lr`` at the sharpness steps)."""
        records = {k: (list(s), list(v)) for k, (s, v) in self.records.items()}
        loss_steps = records.get("loss", ([], []))[0]
        lr_steps = sorted({0, *records.get("sharpness", ([], []))[0]})
        records.setdefault("lr", (lr_steps, [lr] * len(lr_steps)))
        partial = Partial(
            config=config,
            parameters=parameters,
            n_train=n_train,
            ntk_examples=ntk_examples,
            hessian_examples=hessian_examples,
            loss=loss,
            schedule=dict(schedule),
            phase=self.phase if loss_steps or self.phase != "training" else "init",
            steps=loss_steps[-1] if loss_steps else 0,
            records=records,
            wall_time_s=time.perf_counter() - self.started,
        )
        return Interrupted(partial)
