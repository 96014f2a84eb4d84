"""What both runners share: a trial's error as data, jobs of trials, and reporting outcomes.

A *job* is a list of trial indices run together: one trial, or a group that
:func:`gdscope.ensemble.run_trial_group` trains as one ensemble. :func:`run_job` runs a job and
turns each trial's exception into a :class:`TrialError` (picklable data, with the traceback
text); :class:`Reporter` hands each outcome to the caller's ``on_result``, per trial, in the
calling process, which stays the only writer to the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gdscope.training import Trace

__all__ = [
    "MAIN_GUARD",
    "Config",
    "OnResult",
    "Reporter",
    "RunGroup",
    "RunOne",
    "TrialError",
    "UserCode",
    "WorkerStartError",
    "device_of",
    "exit_cause",
    "init_worker",
    "install_user_code",
    "main_script",
    "one_torch_thread",
    "partition_jobs",
    "refuse_while_importing_main",
    "run_job",
    "start_failed",
    "user_code",
    "uses_cuda",
]

Config = Mapping[str, Any]
RunOne = Callable[[Any], "Trace"]
RunGroup = Callable[[list[Any]], "Sequence[Trace | BaseException]"]
OnResult = Callable[[str, Any, "Trace | BaseException"], None]
UserCode = tuple[str, bytes]
"""A snapshot of the user code registered in a process: ``(sha256 digest, pickled payload)``."""


class TrialError(Exception):
    """A trial raised: the error's type name, message and traceback text (picklable as data).

    ``str(error)`` is ``"ValueError: message"``; ``error.traceback`` is the full traceback text as
    printed in the process that ran the trial. In-process, ``__cause__`` is the original exception.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message, self.traceback = type_name, message, traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (TrialError, (self.type_name, self.message, self.traceback))

    @classmethod
    def from_exception(cls, error: BaseException) -> TrialError:
        """Capture ``error`` with its traceback text."""
        text = "".join(traceback.format_exception(error))
        captured = cls(type(error).__name__, str(error), text)
        captured.__cause__ = error
        return captured


MAIN_GUARD = 'put the call under `if __name__ == "__main__":`'
"""The fix for a script whose top-level gdscope call runs again in every worker process."""


class WorkerStartError(RuntimeError):
    """Worker processes cannot start, typically a script that runs gdscope without a main guard.

    A spawned worker imports the parent's main script before anything else; a top-level
    ``run_study(..., workers=2)`` there runs again in every worker. Raised in such a worker by
    :func:`refuse_while_importing_main`, and in the parent when a pool's worker died before it
    was ready to run a trial (:func:`gdscope.runners.local.run_trials`: the pool is broken, no
    trial is reported as failed for it).
    """


def main_script() -> str:
    """Return the file of the main script being run (or imported by a worker), else a phrase."""
    for name in ("__mp_main__", "__main__"):  # a worker's import of the script, then this one
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            return str(path)
    return "the main script"


def refuse_while_importing_main(what: str) -> None:
    """Raise :class:`WorkerStartError` if this process is a worker importing its parent's script.

    A process started with the ``spawn`` (or ``forkserver``) start method imports the parent's
    main script again, as ``__mp_main__``, before it runs anything; a script that calls
    ``what`` at its top level, outside ``if __name__ == "__main__":``, would call it again in
    every worker (a second run on the same store, more worker processes), and the worker dies.

    How it is told: ``multiprocessing.current_process()._inheriting``, multiprocessing's own flag,
    is true exactly while a spawned process bootstraps (``multiprocessing.spawn._main`` sets it
    around importing the main script and unpickling the process object, and clears it before
    the process runs its target); multiprocessing reads it to refuse starting a process then
    (``spawn._check_not_importing_main``). The alternative, ``parent_process() is not None``
    with a main module named ``__mp_main__``, stays true in a worker after it started, so it
    would also refuse a legitimate call from the target of a user's own spawned process.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        script = main_script()
        raise WorkerStartError(
            f"{what}() was called while a worker process imports the main script {script} "
            f"(each spawned worker imports it before it starts); {MAIN_GUARD} in {script}"
        )


def start_failed(pid: int, exitcode: int | None) -> WorkerStartError:
    """Return the error of a pool whose worker ``pid`` died before it was ready: cause and fix."""
    return WorkerStartError(
        f"worker process {pid} died while starting ({exit_cause(exitcode)}), before it ran any "
        f"trial, so the process pool cannot run trials; if {main_script()} calls gdscope at its "
        f"top level, {MAIN_GUARD} (each worker imports the script; the worker's error is above). "
        "No trial was counted as failed: a rerun skips the trials already stored"
    )


def exit_cause(exitcode: int | None) -> str:
    """Say how a worker process ended, from its exit code (``None``: unknown)."""
    if exitcode is None:
        return "cause unknown"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = "?"
    hint = ", e.g. by the out-of-memory killer" if -exitcode == signal.SIGKILL else ""
    return f"killed by signal {-exitcode} ({name}){hint}"


class Reporter:
    """Hand each finished job's outcomes to ``on_result`` per trial and tick ``progress``.

    Created before the first job (``progress(0, total)`` is called then); shared by the runners.
    """

    def __init__(
        self,
        trials: Sequence[tuple[str, Config]],
        on_result: OnResult,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.trials, self.on_result, self.progress, self.done = trials, on_result, progress, 0
        if progress is not None:
            progress(0, len(trials))

    def __call__(self, job: Sequence[int], outcomes: Sequence[Trace | TrialError]) -> None:
        for index, outcome in zip(job, outcomes, strict=True):
            hash, config = self.trials[index]
            self.on_result(hash, config, outcome)
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, len(self.trials))


def device_of(config: Any) -> str:
    """Return the ``device`` of a trial config (a dict or a validated config), ``"cpu"`` if unset."""
    if isinstance(config, Mapping):
        return str(config.get("device", "cpu"))
    return str(getattr(config, "device", "cpu"))


def uses_cuda(configs: Sequence[Any]) -> bool:
    """Whether any trial config (a dict or a validated config) runs on a CUDA device."""
    return any(device_of(config).startswith("cuda") for config in configs)


def partition_jobs(count: int, groups: Sequence[Sequence[int]] | None) -> list[list[int]]:
    """Return the jobs: ``groups`` checked to partition ``range(count)``, or one trial a job."""
    if groups is None:
        return [[i] for i in range(count)]
    jobs = [list(group) for group in groups if len(group)]
    if sorted(i for job in jobs for i in job) != list(range(count)):
        raise ValueError(f"groups must partition range({count}) (each trial in exactly one group)")
    return jobs


def run_job(run_one: RunOne, run_group: RunGroup | None, configs: list[Any]) -> list[Any]:
    """Run one job (a group of trials); each trial's ``Exception`` becomes a ``TrialError``.

    ``run_group`` runs jobs of two or more trials; if it raises, the job's trials run one by one.
    """
    if run_group is None or len(configs) == 1:
        return [_guarded(run_one, config) for config in configs]
    try:
        outcomes = run_group(configs)
    except Exception:  # the group as a whole failed: run its trials one by one
        return [_guarded(run_one, config) for config in configs]
    return [
        TrialError.from_exception(o)
        if isinstance(o, BaseException) and not isinstance(o, TrialError)
        else o
        for o in outcomes
    ]


def _guarded(run_one: RunOne, config: Config) -> Trace | TrialError:
    """Run one trial; an ``Exception`` becomes a ``TrialError`` (``KeyboardInterrupt`` passes)."""
    try:
        return run_one(config)
    except Exception as error:
        return TrialError.from_exception(error)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run in-process trials on one torch thread, as the workers do, then restore the count.

    CPU kernels may sum in another order with another thread count, so this is what makes a
    trial's stored bits independent of ``workers``. scipy's BLAS (the NTK's symmetric Grams,
    ``gdscope.probes._gram``) gets one thread too.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def init_worker() -> None:
    """Limit each worker to one torch thread (and one BLAS thread) so that N workers use N cores."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    with contextlib.suppress(RuntimeError):  # already fixed in this process
        torch.set_num_interop_threads(1)


def user_code() -> UserCode:
    """Return this process's registrations as a worker installs them: ``(digest, payload)``.

    The payload is the pickled ``(probes, registrations)``
    (:func:`gdscope.training.user_probes.portable_probes`,
    :func:`gdscope.registration.registrations`): each function as its name, ``module:qualname``,
    file and file digest, so the SHA-256 of the payload changes whenever a name is registered,
    replaced or removed, or its file's code changes.

    Raises:
        TypeError: a registered probe that cannot be pickled (e.g. a partial of a lambda).

    """
    from gdscope.registration import registrations
    from gdscope.training.user_probes import portable_probes

    code = (portable_probes(), registrations())
    try:
        payload = pickle.dumps(code)
    except Exception as error:
        raise TypeError(
            f"the registered probes cannot be sent to worker processes ({error}); register "
            "functions defined at the top level of a module, or use workers=1"
        ) from error
    return hashlib.sha256(payload).hexdigest(), payload


_installed = ""
"""The digest of the :func:`user_code` installed in this (worker) process (``""``: none)."""


def install_user_code(code: UserCode) -> None:
    """Make this (worker) process's registrations those of ``code``, unless installed already.

    Only a digest not seen last unpickles the payload (loading each function: by import, else
    from its file); the probes, models and data sets are then exactly the snapshot's.
    """
    global _installed
    digest, payload = code
    if digest == _installed:
        return
    from gdscope.registration import install_registrations
    from gdscope.training.user_probes import install_portable_probes

    probes, registered = pickle.loads(payload)
    install_portable_probes(probes, only=True)
    install_registrations(registered, only=True)
    _installed = digest
