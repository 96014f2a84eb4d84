"""``gs.diagnose``: which regime a network trains in, and what the theories predict for it.

One short run of the user's model and data (``"module:function"`` factories, as in a study:
:mod:`gdscope.factories`), built as a network :class:`~gdscope.config.TrialConfig` of kind
``custom`` and trained by ``gdscope.train`` with scheduled probes. :mod:`.measure` measures at
init and along the run, :mod:`.verdicts` checks each theory's assumptions, :mod:`.render` prints
the terminal summary, the JSON and the HTML page. With ``results``, the run's series go to the
store as a monitored run (:class:`gdscope.store.runs.RunWriter`, as ``gs.monitor`` writes them),
so ``gdscope show``, ``export`` and ``report`` read them. :mod:`.inputs` refuses bad options,
output paths and a network with nothing to train before anything trains; Ctrl-C raises
:class:`Interrupted` (a ``KeyboardInterrupt``) with what was measured (:mod:`.partial`), stored
as an ``interrupted`` run when there is a results directory.
"""

from gdscope.diagnose.measure import Measurements
from gdscope.diagnose.partial import Interrupted
from gdscope.diagnose.run import diagnose, diagnosis_config, network_parts, store, store_interrupted
from gdscope.diagnose.verdicts import Check, Diagnosis

__all__ = [
    "Check",
    "Diagnosis",
    "Interrupted",
    "Measurements",
    "diagnose",
    "diagnosis_config",
    "network_parts",
    "store",
    "store_interrupted",
]
