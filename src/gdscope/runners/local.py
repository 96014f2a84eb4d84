"""Run trials on this machine: in-process one after another, or in a pool of worker processes.

``run_trials(trials, run_one, workers=N, on_result=...)`` calls ``run_one(config)`` for every
``(hash, config)`` pair and hands each outcome to ``on_result(hash, config, outcome)`` in the
calling process as soon as it is ready, so the caller stays the only writer to the store. The
outcome is the ``Trace`` or, for a trial that raised, a ``TrialError`` carrying the traceback text;
one failing trial never stops the others.

With ``groups`` and ``run_group``, each group of trial indices is one job: ``run_group(configs)``
returns one outcome per config (e.g. :func:`gdscope.ensemble.run_trial_group`, which trains
same-shaped networks together and returns exactly what ``run_one`` would); groups of one go
through ``run_one``. Outcomes are still reported per trial.

With ``workers > 1`` jobs run in a ``ProcessPoolExecutor`` with the ``spawn`` start method, and
each worker limits torch to one thread so N workers use N cores. ``run_one`` and the configs then
cross a process boundary by pickling: ``run_one`` must be a module-level function (not a lambda,
closure or bound method of an unpicklable object) and configs plain data.

A worker that dies (killed, out of memory, a crash in native code) breaks the whole executor, and
every job not finished fails with it. Those jobs are not results: they are resubmitted to a fresh
pool. Only the job that was running in the dead worker is blamed (each worker reports which job
it starts, and a dead worker is told from the ones stopped here by its exit status): a group is
split into one-trial jobs, a single trial counts a death. A trial whose worker died while
running it more than ``max_retries`` times is reported once, as a ``TrialError`` of type
``WorkerDied``. Trials are deterministic, so a retried trial gives the result it would have
given the first time. A worker that dies before it is ready (its initializer reports when it is)
is no trial's fault but a broken pool — typically a script calling gdscope at its top level, run
again by every worker that imports it: the run stops with a :class:`WorkerStartError` and no
trial is reported for it (those reported before are kept).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.queues import SimpleQueue
from typing import Any

from gdscope import _checks as check
from gdscope.runners._jobs import (
    Config,
    OnResult,
    Reporter,
    RunGroup,
    RunOne,
    TrialError,
    UserCode,
    WorkerStartError,
    exit_cause,
    init_worker,
    install_user_code,
    one_torch_thread,
    partition_jobs,
    refuse_while_importing_main,
    run_job,
    start_failed,
    user_code,
)

__all__ = ["TrialError", "WorkerPool", "WorkerStartError", "run_trials"]


def run_trials(
    trials: Sequence[tuple[str, Config]],
    run_one: RunOne,
    *,
    workers: int = 1,
    on_result: OnResult,
    progress: Callable[[int, int], None] | None = None,
    groups: Sequence[Sequence[int]] | None = None,
    run_group: RunGroup | None = None,
    pool: WorkerPool | None = None,
    max_retries: int = 2,
) -> None:
    """Run every trial and report each outcome to ``on_result`` as soon as it finishes.

    Args:
        trials: ``(hash, config)`` pairs; ``config`` is what ``run_one`` takes.
        run_one: ``run_one(config) -> Trace``. For ``workers > 1`` it must be picklable: a
            function defined at module level.
        workers: 1 runs in this process, in order; N > 1 runs N spawned worker processes,
            reporting in completion order. Either way a trial runs on one torch thread, so its
            results do not depend on ``workers``.
        on_result: ``on_result(hash, config, outcome)``, called in this process; ``outcome`` is
            the ``Trace`` or a ``TrialError`` (with traceback text) if the trial raised.
        progress: optional ``progress(done, total)``, called with ``done = 0`` before the first
            trial and after every reported outcome.
        groups: a partition of ``range(len(trials))`` into jobs (default: one trial a job).
        run_group: ``run_group(configs) -> outcomes`` for jobs of two or more trials (module
            level for ``workers > 1``); without it every trial goes through ``run_one``.
        pool: a :class:`WorkerPool` to run in (its size replaces ``workers``), kept alive for
            the caller's next call; default: a pool of ``workers`` for this call only.
        max_retries: how many times a trial whose worker process died is run again (the other
            unfinished trials are resubmitted without counting); after that its outcome is a
            ``TrialError`` of type ``WorkerDied``.

    Raises:
        ValueError: ``workers`` is not a positive integer, ``max_retries`` is negative, or
            ``groups`` is not a partition.
        TypeError: ``workers > 1`` and ``run_one`` cannot be pickled.
        WorkerStartError: a worker died before it was ready to run a trial (e.g. a script that
            calls this at its top level, which each worker imports), or this process is such a
            worker (:func:`~gdscope.runners._jobs.refuse_while_importing_main`).
        KeyboardInterrupt: interrupted; trials not yet started are cancelled, workers stopped.

    """
    refuse_while_importing_main("run_trials")
    workers = check.positive_int("workers", workers)
    max_retries = check.nonnegative_int("max_retries", max_retries)
    jobs = partition_jobs(len(trials), groups)
    report = Reporter(trials, on_result, progress)

    workers = pool.workers if pool is not None else workers
    if workers == 1 or len(jobs) <= 1:
        with one_torch_thread():
            for job in jobs:
                report(job, run_job(run_one, run_group, [trials[i][1] for i in job]))
        return
    _check_picklable(run_one, run_group)
    with contextlib.ExitStack() as own:
        if pool is None:
            pool = own.enter_context(WorkerPool(min(workers, len(jobs))))
        try:
            _run_in_pool(pool, trials, jobs, run_one, run_group, report, max_retries)
        except BaseException:
            pool.abort()
            raise


def _run_in_pool(
    pool: WorkerPool,
    trials: Sequence[tuple[str, Config]],
    jobs: list[list[int]],
    run_one: RunOne,
    run_group: RunGroup | None,
    report: Reporter,
    max_retries: int,
) -> None:
    """Run ``jobs`` in ``pool``, resubmitting those lost to a dead worker to a fresh pool.

    Every round submits the jobs left; a worker's death fails every unfinished job of the round
    at once. The job that ran in the dead worker is to blame: a group is split into one-trial
    jobs (which member killed it is unknown, and a smaller job may fit in memory), a single trial
    counts a death. The others are resubmitted as they are. Every round in which the pool broke
    blames at least one job, so the loop ends: if no job can be tied to a dead worker, every lost
    job that had started is blamed (or every lost job, when none had started). A worker that died
    before it was ready breaks the pool instead: :class:`WorkerStartError`, nothing blamed.
    """
    deaths = [0] * len(trials)
    causes: dict[int, int | None] = {}  # trial index -> exit code of its last dead worker
    todo = jobs
    while todo:
        executor = pool.executor()
        code = user_code()  # registrations made since the pool started travel with each job
        started: dict[int, int] = {}  # token -> pid of the worker that started the job
        lost: list[tuple[int, list[int]]] = []
        futures: dict[Future[list[Any]], tuple[int, list[int]]] = {}
        for job in todo:
            token = next(_TOKENS)
            try:
                future = executor.submit(
                    _pool_job, token, code, run_one, run_group, [trials[i][1] for i in job]
                )
            except BrokenProcessPool:  # broke while submitting: never started
                lost.append((token, job))
                continue
            futures[future] = (token, job)
        for future in as_completed(futures):
            token, job = futures[future]
            started.update(pool.started())  # drain often: the workers write to a pipe
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                lost.append((token, job))
                continue
            except Exception as error:  # e.g. a result that cannot be pickled
                outcomes = [TrialError.from_exception(error)] * len(job)
            report(job, outcomes)
        if not lost:
            return
        dead = pool.dead_workers()  # and stop the broken executor (reading the last reports)
        started.update(pool.started())
        unready = pool.never_ready(dead)
        if unready:  # not a trial's fault: no worker can start, a retry would die the same way
            raise start_failed(*next(iter(unready.items())))
        charged = {t for t, _ in lost if started.get(t) in dead}
        if not charged:  # no lost job ran in a dead worker: the started ones, else all
            charged = {t for t, _ in lost if t in started} or {t for t, _ in lost}
        todo = [job for token, job in lost if token not in charged]
        for token, job in lost:
            if token not in charged:
                continue
            if len(job) > 1:  # a group that died is split: its trials retry on their own
                todo.extend([index] for index in job)
                continue
            [index] = job
            deaths[index] += 1
            causes[index] = dead.get(started.get(token, -1))
            if deaths[index] <= max_retries:
                todo.append(job)
            else:
                report(job, [_worker_died(deaths[index], causes[index])])
        todo.sort()  # keep the submission order of the trials


def _worker_died(times: int, exitcode: int | None) -> TrialError:
    """Return the outcome of a trial whose worker died ``times`` times while running it."""
    message = (
        f"worker process died ({exit_cause(exitcode)}) while running this trial, "
        f"{times} time{'s' if times != 1 else ''}; not retried again"
    )
    return TrialError("WorkerDied", message, f"WorkerDied: {message}\n")


class WorkerPool:
    """Spawned worker processes (one torch thread each) that outlive one ``run_trials`` call.

    Starting a worker costs an interpreter and a torch import (seconds); ``gdscope run`` keeps one
    pool for all the studies it runs. A worker starts with the registrations (models, data
    sets, probes) of this process, and each job carries those of its submission: a name
    registered after the pool started is seen by the workers as by a fresh pool. A pool left broken by a dead worker is replaced by a fresh
    one at the next :meth:`executor` call. Use as a context manager.
    """

    def __init__(self, workers: int) -> None:
        self.workers = check.positive_int("workers", workers)
        self._executor: ProcessPoolExecutor | None = None
        self._started: SimpleQueue[tuple[int, int]] | None = None
        self._jobs: dict[int, int] = {}  # token -> pid, read from the queue, not yet returned
        self._ready: set[int] = set()  # pids of the executor's workers that are ready

    def executor(self) -> ProcessPoolExecutor:
        """Return the running executor, starting (or replacing a broken) one as needed.

        Raises:
            WorkerStartError: this process is a worker importing its parent's main script.

        """
        if self._executor is not None and getattr(self._executor, "_broken", False):
            self.abort()
        if self._executor is None:
            refuse_while_importing_main("WorkerPool.executor")
            self._jobs, self._ready = {}, set()
            context = multiprocessing.get_context("spawn")
            self._started = context.SimpleQueue()  # one per executor: a killed writer may
            self._executor = ProcessPoolExecutor(  # leave its lock held
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_pool_worker,
                initargs=(self._started, user_code()),
            )
        return self._executor

    def started(self) -> dict[int, int]:
        """Return ``{token: pid}`` of the jobs workers started since the last call."""
        self._drain()
        started, self._jobs = self._jobs, {}
        return started

    def never_ready(self, dead: dict[int, int | None]) -> dict[int, int | None]:
        """Return those of the ``dead`` workers (:meth:`dead_workers`) that were never ready.

        A worker is ready once its initializer ran (after the spawned process imported the
        parent's main script and gdscope, and installed the registered code).
        """
        return {pid: code for pid, code in dead.items() if pid not in self._ready}

    def _drain(self) -> None:
        """Read the workers' reports: a job's start, or (token ``_READY``) a worker ready."""
        while self._started is not None and not self._started.empty():
            token, pid = self._started.get()
            if token == _READY:
                self._ready.add(pid)
            else:
                self._jobs[token] = pid

    def dead_workers(self) -> dict[int, int | None]:
        """Stop a broken executor; return ``{pid: exit code}`` of the workers that died by themselves.

        A broken executor stops its remaining workers with SIGTERM; a worker whose exit status is
        anything else died on its own (killed, crashed, exited). Empty if the pool is not broken.
        """
        executor = self._executor
        if executor is None or not getattr(executor, "_broken", False):
            return {}
        processes = dict(getattr(executor, "_processes", None) or {})
        self._drain()  # the reports of workers now dead are kept for never_ready and started
        self.abort()  # joins the executor's manager thread, then the workers
        return {
            pid: process.exitcode
            for pid, process in processes.items()
            if process.exitcode is not None and process.exitcode != -signal.SIGTERM
        }

    def abort(self) -> None:
        """Cancel what has not started and stop the workers now."""
        if self._executor is not None:
            _abort(self._executor)
            self._executor = None
        if self._started is not None:
            self._started.close()
            self._started = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            self.abort()
        elif self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _abort(executor: ProcessPoolExecutor) -> None:
    """Cancel trials not yet started and stop the workers now.

    The executor's manager thread also reaps the workers once one dies, so it is joined before
    the processes: two threads waiting on one pid race, and the loser would see a dead worker
    as alive.
    """
    processes = list((getattr(executor, "_processes", None) or {}).values())
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)  # forgets both: read them first
    for process in processes:
        process.terminate()
    if manager is not None:
        manager.join(timeout=10)
    for process in processes:
        process.join(timeout=10)


_TOKENS = itertools.count()  # names each submitted job, for the worker to report it started
_READY = -1  # the token with which a worker reports that it is ready (initialized)
_started_queue: SimpleQueue[tuple[int, int]] | None = None  # in a pool worker: where to report


def _init_pool_worker(started: SimpleQueue[tuple[int, int]], code: UserCode) -> None:
    """Initialize a :class:`WorkerPool` worker (one torch thread, the start reports, user code).

    ``code``: the probes, models and data sets the parent registered (``gs.register_probe``,
    ``gs.register_model``, ``gs.register_dataset``; :func:`~gdscope.runners._jobs.user_code`),
    installed here.
    """
    global _started_queue
    _started_queue = started
    init_worker()
    install_user_code(code)
    started.put((_READY, os.getpid()))  # a worker dead before this broke the pool (no trial did)


def _pool_job(
    token: int, code: UserCode, run_one: RunOne, run_group: RunGroup | None, configs: list[Any]
) -> list[Any]:
    """Report that this worker starts job ``token``, install ``code``, run it (:func:`run_job`).

    The report is one small write to a pipe, so a worker killed at any moment leaves it whole
    or absent. ``code`` is the parent's registrations when it submitted the job: a worker that
    installed another snapshot (the parent registered, replaced or removed a name since the
    pool started) installs this one first, so a running pool sees what a fresh one would.
    """
    if _started_queue is not None:
        _started_queue.put((token, os.getpid()))
    install_user_code(code)
    return run_job(run_one, run_group, configs)


def _check_picklable(*functions: Callable[..., Any] | None) -> None:
    for function in functions:
        try:
            pickle.dumps(function)
        except Exception as error:
            raise TypeError(
                f"{function!r} cannot be sent to worker processes ({error}); "
                "define it as a module-level function, or use workers=1"
            ) from error
