"""Run trials on this machine: in-process one after another, or in a pool of worker processes.

``run_trials(trials, run_one, workers=N, on_result=...)`` calls ``run_one(config)`` for every
``(hash, config)`` pair and hands each outcome to ``on_result(hash, config, outcome)`` in the
calling process as soon as it is ready, so the caller stays the only writer to the store. The
outcome is the ``Trace`` or, for a trial that raised, a ``TrialError`` carrying the traceback text;
one failing trial never stops the others.

With ``workers > 1`` trials run in a ``ProcessPoolExecutor`` with the ``spawn`` start method, and
each worker limits torch to one thread so N workers use N cores. ``run_one`` and the configs then
cross a process boundary by pickling: ``run_one`` must be a module-level function (not a lambda,
closure or bound method of an unpicklable object) and configs plain data.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gdscope.training import Trace

__all__ = ["TrialError", "run_trials"]

Config = Mapping[str, Any]
RunOne = Callable[[Any], "Trace"]
OnResult = Callable[[str, Any, "Trace | BaseException"], None]


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


def run_trials(
    trials: Sequence[tuple[str, Config]],
    run_one: RunOne,
    *,
    workers: int = 1,
    on_result: OnResult,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run every trial and report each outcome to ``on_result`` as soon as it finishes.

    Args:
        trials: ``(hash, config)`` pairs; ``config`` is what ``run_one`` takes.
        run_one: ``run_one(config) -> Trace``. For ``workers > 1`` it must be picklable: a
            function defined at module level.
        workers: 1 runs in this process, in order; N > 1 runs N spawned worker processes
            (one torch thread each), reporting in completion order.
        on_result: ``on_result(hash, config, outcome)``, called in this process; ``outcome`` is
            the ``Trace`` or a ``TrialError`` (with traceback text) if the trial raised.
        progress: optional ``progress(done, total)``, called with ``done = 0`` before the first
            trial and after every reported outcome.

    Raises:
        ValueError: ``workers`` is not a positive integer.
        TypeError: ``workers > 1`` and ``run_one`` cannot be pickled.
        KeyboardInterrupt: interrupted; trials not yet started are cancelled, workers stopped.

    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    total = len(trials)
    if progress is not None:
        progress(0, total)
    if workers == 1 or total <= 1:
        for done, (hash, config) in enumerate(trials, 1):
            on_result(hash, config, _guarded(run_one, config))
            if progress is not None:
                progress(done, total)
        return
    _check_picklable(run_one)
    _run_pool(trials, run_one, min(workers, total), on_result, progress)


def _run_pool(
    trials: Sequence[tuple[str, Config]],
    run_one: RunOne,
    workers: int,
    on_result: OnResult,
    progress: Callable[[int, int], None] | None,
) -> None:
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )
    try:
        futures = {
            executor.submit(_guarded, run_one, config): (hash, config) for hash, config in trials
        }
        for done, future in enumerate(as_completed(futures), 1):
            hash, config = futures[future]
            on_result(hash, config, _outcome(future))
            if progress is not None:
                progress(done, len(trials))
    except BaseException:
        _abort(executor)
        raise
    executor.shutdown(wait=True)


def _guarded(run_one: RunOne, config: Config) -> Trace | TrialError:
    """Run one trial; an ``Exception`` becomes a ``TrialError`` (``KeyboardInterrupt`` passes)."""
    try:
        return run_one(config)
    except Exception as error:
        return TrialError.from_exception(error)


def _outcome(future: Future[Trace | TrialError]) -> Trace | TrialError:
    """Return the future's value; pool failures (a worker died, an unpicklable result) as ``TrialError``."""
    try:
        return future.result()
    except Exception as error:
        return TrialError.from_exception(error)


def _abort(executor: ProcessPoolExecutor) -> None:
    """Cancel trials not yet started and stop the workers now."""
    executor.shutdown(wait=False, cancel_futures=True)
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        process.terminate()


def _init_worker() -> None:
    """Limit each worker to one torch thread so that N workers use N cores."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already fixed in this process
        torch.set_num_interop_threads(1)


def _check_picklable(run_one: RunOne) -> None:
    try:
        pickle.dumps(run_one)
    except Exception as error:
        raise TypeError(
            f"run_one={run_one!r} cannot be sent to worker processes ({error}); "
            "define it as a module-level function, or use workers=1"
        ) from error
