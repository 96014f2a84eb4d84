"""Training: the network loop and the probes it schedules by name.

* :func:`train` (:mod:`~gdscope.training.loop`): full- or mini-batch training of any module with
  any ``torch.optim`` optimizer, probes on a schedule, stop criteria, and the divergence rule
  (a status, not a crash); returns a :class:`Trace`.
* :data:`PROBES` (:mod:`~gdscope.training.scheduled`): the probes ``train`` schedules by name,
  ``{name: fn(ProbeContext) -> {metric: value}}``, built on the pure instruments of
  :mod:`gdscope.probes`; :class:`ProbeContext` (:mod:`~gdscope.training.context`) shares work
  between the probes of one checkpoint.
"""

from gdscope.training.context import ProbeContext
from gdscope.training.loop import (
    DIVERGENCE_FACTOR,
    Stop,
    Trace,
    divergence_limit,
    probes_not_due,
    record_divergence,
    train,
)
from gdscope.training.scheduled import PROBES

__all__ = [
    "DIVERGENCE_FACTOR",
    "PROBES",
    "ProbeContext",
    "Stop",
    "Trace",
    "divergence_limit",
    "probes_not_due",
    "record_divergence",
    "train",
]
