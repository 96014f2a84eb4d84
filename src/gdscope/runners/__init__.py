"""Runners map trial configs to results: ``local`` in-process or in a process pool, ``ray``.

A runner never writes: each result goes to the caller's ``on_result`` callback in the calling
process, which is the only writer to the store. :class:`Runner` objects (``map(trials,
on_result, progress)``) are what :func:`gdscope.api.run_study` takes; :func:`run_trials` is the
local pool underneath.
"""

from gdscope.runners._jobs import TrialError
from gdscope.runners.base import RUNNERS, LocalRunner, RayRunner, Runner, make_runner
from gdscope.runners.local import WorkerPool, run_trials

__all__ = [
    "RUNNERS",
    "LocalRunner",
    "RayRunner",
    "Runner",
    "TrialError",
    "WorkerPool",
    "make_runner",
    "run_trials",
]
