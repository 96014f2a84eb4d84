"""Runners map trial configs to results: ``local`` runs them in-process or in a process pool.

A runner never writes: each result goes to the caller's ``on_result`` callback in the calling
process, which is the only writer to the store.
"""

from gdscope.runners.local import TrialError, WorkerPool, run_trials

__all__ = ["TrialError", "WorkerPool", "run_trials"]
