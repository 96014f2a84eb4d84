"""Adapters that bring gdscope's probes to training loops gdscope does not run.

* :func:`monitor` (``gs.monitor``): a :class:`~gdscope.training.monitor.Monitor` that records
  into a results store (:class:`gdscope.store.runs.RunWriter`), so that ``gdscope show``,
  ``export`` and ``report`` on that directory show the run beside the studies.
* :mod:`gdscope.integrations.lightning`: a PyTorch Lightning callback around the same monitor
  (the ``lightning`` extra: ``pip install 'gdscope[lightning]'``; imported only there).

The monitor lives in ``training`` (below the store) and writes through a sink; this layer, above
both, joins them.
"""

from gdscope.integrations.stored_monitor import monitor
from gdscope.training.monitor import Monitor

__all__ = ["Monitor", "monitor"]
