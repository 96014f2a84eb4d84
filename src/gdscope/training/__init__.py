"""Training: the one loop skeleton, the network loop and the probes it schedules by name.

* :func:`drive` (:mod:`~gdscope.training.skeleton`): the loop every kind of run shares, its
  checkpoint schedule (the last step included), the one divergence rule and the stop rule; a
  run measures a :class:`Reading` per checkpoint and the divergence rule watches a :class:`Watch`.
* :func:`train` (:mod:`~gdscope.training.loop`): full- or mini-batch training of any module with
  any ``torch.optim`` optimizer, probes on a schedule, stop criteria, and the divergence rule
  (a status, not a crash); returns a :class:`Trace`.
* :data:`PROBES` (:mod:`~gdscope.training.scheduled`): the probes ``train`` schedules by name,
  ``{name: fn(ProbeContext) -> {metric: value}}``, built on the pure instruments of
  :mod:`gdscope.probes`; :class:`ProbeContext` (:mod:`~gdscope.training.context`) shares work
  between the probes of one checkpoint.
* :class:`Monitor` (:mod:`~gdscope.training.monitor`): the same probes inside a training loop
  the user writes (``mon.step(t, lr=...)``), recorded through a sink (``gs.monitor`` writes the
  results store); :func:`due_probes` and :func:`measure` are what it shares with ``train``.
"""

from gdscope.training.context import ProbeContext
from gdscope.training.loop import (
    DIVERGENCE_FACTOR,
    Stop,
    Trace,
    diverged,
    divergence_limit,
    due_probes,
    measure,
    probes_not_due,
    record_divergence,
    train,
    validate_schedule,
)
from gdscope.training.monitor import Monitor
from gdscope.training.scheduled import PROBES
from gdscope.training.skeleton import Reading, Run, Watch, drive

__all__ = [
    "DIVERGENCE_FACTOR",
    "PROBES",
    "Monitor",
    "ProbeContext",
    "Reading",
    "Run",
    "Stop",
    "Trace",
    "Watch",
    "diverged",
    "divergence_limit",
    "drive",
    "due_probes",
    "measure",
    "probes_not_due",
    "record_divergence",
    "train",
    "validate_schedule",
]
