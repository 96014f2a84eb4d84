"""``gs.diagnose``: which regime a network trains in, and what the theories predict for it.

One short run of the user's model and data (``"module:function"`` factories, as in a study:
:mod:`gdscope.factories`), built as a network :class:`~gdscope.config.TrialConfig` of kind
``custom`` and trained by ``gdscope.train`` with scheduled probes. :mod:`.measure` measures at
init and along the run, :mod:`.verdicts` checks each theory's assumptions, :mod:`.render` prints
the terminal summary, the JSON and the HTML page. With ``results``, the run's series go to the
store as a monitored run (:class:`gdscope.store.runs.RunWriter`, as ``gs.monitor`` writes them),
so ``gdscope show``, ``export`` and ``report`` read them.
"""

from gdscope.diagnose.measure import Measurements
from gdscope.diagnose.run import diagnose, diagnosis_config, network_parts, store
from gdscope.diagnose.verdicts import Check, Diagnosis

__all__ = [
    "Check",
    "Diagnosis",
    "Measurements",
    "diagnose",
    "diagnosis_config",
    "network_parts",
    "store",
]
