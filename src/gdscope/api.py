"""The Python API of studies: run a study, re-judge stored results, list the catalogue.

``run_study`` loads a study (a catalogue name or a TOML path), validates every trial of the chosen
scale before anything runs, skips trials whose config hash is already in the results store, runs the
rest with a runner, stores each finished trial in one transaction, then judges the claims on the
stored records and stores the verdicts. ``verify`` re-judges from the store alone, without training.

Both judge a study on every trial it expands to, wherever stored (another study may have run some),
each with this study's own config; if some are not stored (an interrupted run), every verdict is
INCONCLUSIVE and says so. Where a user's factory file changed or is gone since the run, ``verify``
judges the trials the store links to the study instead, as they were stored.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdscope import _checks as check
from gdscope.config.trial import canonical_hash
from gdscope.plan import (
    CATALOG,
    StudyPlan,
    catalog,
    check_study_code,
    load,
    once,
    plan_study,
    refuse_swept_base,
    resolve_study,
)
from gdscope.runners import Runner, make_runner
from gdscope.runners._jobs import refuse_while_importing_main
from gdscope.runners.queue import QueueEntry, TrialQueue
from gdscope.store import Store, StoreError, judging
from gdscope.studies import Study, StudyError, Verdict
from gdscope.studies.spec import MAX_TRIALS, SCALES
from gdscope.trials.trial import validate_stored_trial, validate_trial
from gdscope.trials.user_code import changed_factories, names_factory_file

__all__ = [  # the planning half lives in gdscope.plan; re-exported as the one Python API
    "CATALOG",
    "StudyPlan",
    "StudyResult",
    "catalog",
    "load",
    "once",
    "plan_study",
    "report",
    "resolve_study",
    "run_studies",
    "run_study",
    "verify",
]


@dataclass(frozen=True)
class StudyResult:
    """What ``run_study`` or ``verify`` produced for one study at one scale.

    ``missing`` counts the trials of the study not in the store (an interrupted run; its verdicts
    are then INCONCLUSIVE). ``errors`` has one line per trial of this study that failed in this
    run: its hash prefix and the error (``"3f2a9c1b0d4e ValueError: ..."``); the traceback is in
    the store.
    """

    study: Study
    scale: str
    verdicts: list[Verdict]
    trials: int
    ran: int
    failed: int
    wall_time_s: float
    missing: int = 0
    errors: tuple[str, ...] = ()
    rerun: str = ""
    """Why trials stored for this study before were run again (a user's factory changed)."""


def run_study(
    study: Study | str | Path,
    *,
    scale: str = "quick",
    runner: Runner | str = "local",
    results: str | Path | Store = "gdscope-results",
    workers: int = 1,
    address: str | None = None,
    batch: bool | None = None,
    overrides: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    max_trials: int = MAX_TRIALS,
) -> StudyResult:
    """Run one study at ``scale`` into the results directory and judge its claims.

    Args:
        study: a loaded :class:`Study` (:func:`load`), a catalogue name (``gdscope list
            claims``) or a TOML file.
        scale: ``"quick"`` (CPU, about a minute) or ``"paper"``.
        runner: a :class:`~gdscope.runners.Runner` object (kept open: the caller closes it), or
            a name for :func:`~gdscope.runners.make_runner` with ``workers``, ``address`` and
            ``batch``: ``"local"`` (in-process, or a process pool with ``workers > 1``) or
            ``"ray"`` (Ray tasks with retries; see :mod:`gdscope.runners.ray`).
        results: the results directory (created; a SQLite store inside), or an open ``Store``
            (whose write lock the caller may already hold).
        workers: processes for the local runner (with Ray, only the split of ensembles).
        address: the Ray cluster for ``runner="ray"`` (``None``: start a local instance;
            ``"auto"`` or ``"ray://host:10001"``: an existing cluster).
        batch: train trials that differ only in seed, learning rate or init scale together as
            one ensemble (:func:`gdscope.ensemble.run_trial_group`), split into ``workers``
            parts; the stored results are the same bits as one by one. ``None`` (auto): only
            trials on a CUDA device — on the CPU the exact ensemble path measured no faster
            than one trial after another (benchmarks/README.md, W3 and the catalogue).
        overrides: dotted ``KEY=VALUE`` overrides, e.g. ``"sweep.width=[256,1024]"``, for a
            study given by name or path (a loaded ``Study`` already carries its own).
        progress: ``callback(done, total)`` after each trial.
        max_trials: refuse a study that expands to more trials than this (nothing is written).

    Returns:
        A ``StudyResult`` with the verdicts.

    Raises:
        StudyError: the study, an override or a trial config is invalid (nothing is written).
        StoreBusy: another process is writing to ``results``.
        AddressError: ``runner="ray"`` and the cluster at ``address`` cannot be reached
            (nothing is written; :class:`gdscope.runners.ray.AddressError`, a ``ValueError``).
        WorkerStartError: called at the top level of a script that each worker process imports
            (put the call under ``if __name__ == "__main__":``), seen in a worker or as a worker
            of the pool that died before it was ready; the trials stored so far are kept.

    """
    refuse_while_importing_main("run_study")
    [result] = run_studies(
        [study],
        scale=scale,
        runner=runner,
        results=results,
        workers=workers,
        address=address,
        batch=batch,
        overrides=overrides,
        progress=progress,
        max_trials=max_trials,
    )
    return result


def run_studies(
    studies: Sequence[Study | str | Path],
    *,
    scale: str = "quick",
    runner: Runner | str = "local",
    results: str | Path | Store = "gdscope-results",
    workers: int = 1,
    address: str | None = None,
    batch: bool | None = None,
    overrides: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    on_study: Callable[[StudyResult], None] | None = None,
    on_trial: Callable[[str], None] | None = None,
    max_trials: int = MAX_TRIALS,
) -> list[StudyResult]:
    """Run several studies through one trial queue; judge each as soon as its trials are stored.

    Every study is loaded and its trials at ``scale`` validated before anything is written. The
    trials of all studies then go to the runner as one queue (in study order; a trial shared by
    studies runs once and is stored under the first), so no study waits for another's slowest
    trial. Arguments as in :func:`run_study`; ``progress(done, total)`` counts the trials of
    the whole queue, ``on_trial(status)`` is called as each trial is stored (``"completed"``,
    ``"stopped"``, ``"diverged"`` or ``"failed"``), and ``on_study(result)`` as each study is
    judged.

    The runner connects (``runner.connect()``: a Ray cluster is joined) after the trials are
    validated and before the store is created, so an unreachable cluster writes nothing either.

    Returns:
        One ``StudyResult`` per study, in the order given. ``wall_time_s`` is the time from the
        start of the run to the study's verdicts.

    """
    refuse_while_importing_main("run_studies")
    check.one_of("scale", scale, SCALES)
    built = isinstance(runner, str)
    runner = make_runner(runner, workers=workers, address=address, batch=batch) if built else runner
    start = time.perf_counter()
    queue = TrialQueue([_scaled_trials(s, scale, overrides, runner, max_trials) for s in studies])
    once([entry.scaled for entry in queue.studies])  # one stored study per name
    store, joined = _connect_then_open(runner, results, close=built)
    out: dict[int, StudyResult] = {}
    errors: dict[int, list[str]] = {}
    reruns: dict[int, str] = {}

    def finish(index: int) -> None:
        entry = queue.studies[index]
        verdicts, missing = _judge(store, entry.scaled, scale, entry.configs, entry.hashes)
        ran, failed = queue.ran[index], queue.failed[index]
        elapsed = time.perf_counter() - start
        out[index] = StudyResult(
            entry.study,
            scale,
            verdicts,
            len(entry.configs),
            ran,
            failed,
            elapsed,
            missing,
            tuple(errors.get(index, ())),
            reruns.get(index, ""),
        )
        if on_study is not None:
            on_study(out[index])

    def on_result(digest: str, _validated: Any, outcome: Any) -> None:
        owner, *others = queue.sharing(digest)
        if isinstance(outcome, BaseException):
            line = " ".join(str(outcome).split())  # one line, however long the message
            errors.setdefault(owner, []).append(f"{digest[:12]} {line}")
        store.record_trial(queue.name(owner), scale, queue.config(digest), digest, outcome)
        for index in others:
            store.link_trial(queue.name(index), scale, digest)
        if on_trial is not None:
            failed = isinstance(outcome, BaseException)
            on_trial("failed" if failed else str(getattr(outcome, "status", "completed")))
        for index in queue.stored(digest, failed=isinstance(outcome, BaseException)):
            finish(index)

    # a runner built here is closed after the run; one of the caller's leaves what this joined
    leaving = runner if built or joined else contextlib.nullcontext()
    with leaving, store.writer():
        for index, entry in enumerate(queue.studies):
            spec = entry.study.model_dump(mode="json", exclude_defaults=True)
            stale = store.record_study(entry.study.name, scale, spec, entry.hashes)
            reruns[index] = changed_factories(stale, entry.configs)
        done = store.finished_hashes()
        for index, digest in queue.already_stored(done):
            store.link_trial(queue.name(index), scale, digest)
        for index in queue.complete():
            finish(index)
        runner.map(queue.todo(done), on_result=on_result, progress=progress)
        for index in range(len(queue.studies)):  # a trial the runner did not report: missing
            if index not in out:
                finish(index)
    return [out[index] for index in range(len(queue.studies))]


def _connect_then_open(
    runner: Runner, results: str | Path | Store, *, close: bool
) -> tuple[Store, bool]:
    """Connect ``runner`` (e.g. join its Ray cluster), then open (create) the store ``results``.

    A runner that cannot connect raises before anything is written; one built here (``close``)
    or connected by this call is closed again if the store cannot be opened. Returns the store
    and whether this call connected the runner.
    """
    joined = runner.connect()
    try:
        return (results if isinstance(results, Store) else Store(results)), joined
    except BaseException:
        if close or joined:
            runner.close()
        raise


def _scaled_trials(
    study: Study | str | Path,
    scale: str,
    overrides: Sequence[str],
    runner: Runner,
    max_trials: int = MAX_TRIALS,
) -> QueueEntry:
    """Load ``study``, expand it at ``scale`` and validate each trial once.

    The runner gets the validated configs (nothing validates them again); the store and the
    judge get their full JSON (:attr:`~gdscope.studies.expansion.Expansion.configs`).
    """
    if isinstance(study, Study):
        if overrides:
            raise StudyError("overrides are for a study given by name or path; load() applies them")
    else:
        study = load(study, overrides)
    expansion = study.validated(scale, validate_trial, max_trials)
    refuse_swept_base(study.overrides, expansion.study.sweep, expansion.study.sweep_zip)
    try:
        runner.check_devices(expansion.validated)
    except ValueError as error:
        raise StudyError(str(error)) from None
    check_study_code(study, expansion.validated)
    return QueueEntry(
        study, expansion.study, expansion.configs, expansion.validated, expansion.hashes
    )


def _judge(
    store: Store, study: Study, scale: str, configs: list[dict[str, Any]], hashes: list[str]
) -> tuple[list[Verdict], int]:
    """Judge ``study`` on its stored trials, store the verdicts; return them and the missing count.

    Each record carries this study's validated config of its hash, not the stored one (a store
    written before configs were stored validated keeps the first study's, which may lack a
    default this study's claims read). Trials not stored (of the distinct hashes; a failed one
    is stored) make every verdict INCONCLUSIVE (:func:`~gdscope.store.judging.partial`).
    """
    own = dict(zip(hashes, configs, strict=True))
    records = store.records(hashes=hashes, configs=own)
    return judging.judge(store, study, scale, records, len(own)), len(own) - len(records)


def _writable_or_read_only(results: str | Path) -> Store:
    """Open ``results`` to write; where this user cannot write it, read-only (nothing stored)."""
    try:
        return Store(results, create=False)
    except PermissionError:  # a folder this user cannot write
        return Store(results, read_only=True)
    except StoreError as err:  # a store this user cannot write; not a busy or broken one
        if "readonly" not in str(err):
            raise
        return Store(results, read_only=True)


def report(
    results: str | Path = "gdscope-results",
    output: str | Path | None = None,
    *,
    markdown: bool = False,
    figures: str | Path | None = None,
) -> Path:
    """Write the HTML report of ``results`` (default ``results/report.html``); return its path.

    See :mod:`gdscope.report`: verdict table, per-claim figures, environment, one file. With
    ``markdown=True`` write the verdicts page instead (default ``results/verdicts.md``). With
    ``figures``, also write every figure as SVG and PDF files into that folder.

    Raises:
        StoreError: ``results`` holds no gdscope store.

    """
    refuse_while_importing_main("report")
    from gdscope.report import write_figures, write_report

    default = "verdicts.md" if markdown else "report.html"
    target = Path(output) if output is not None else Path(results) / default
    written = write_report(results, target, fmt="markdown" if markdown else "html")
    if figures is not None:
        write_figures(results, figures)
    return written


def verify(results: str | Path) -> list[StudyResult]:
    """Re-judge every study stored in ``results`` from the stored trials alone (no training).

    A study whose run was interrupted (some of its trials not stored) gets INCONCLUSIVE verdicts
    that say how many trials are stored; its ``StudyResult.missing`` counts the others. A study
    on a user's factory file that changed or is gone since its run is judged on the trials the
    store links to it, with their stored configs (:func:`_rejudge`); the file is not read.
    """
    refuse_while_importing_main("verify")
    store = _writable_or_read_only(results)
    out = []
    with store.writer() if not store.read_only else contextlib.nullcontext(store):
        for row in store.studies():
            start = time.perf_counter()
            study = Study.model_validate(row["spec"])
            trials, verdicts, missing = _rejudge(store, study, row["scale"])
            elapsed = time.perf_counter() - start
            out.append(StudyResult(study, row["scale"], verdicts, trials, 0, 0, elapsed, missing))
    return out


def _rejudge(store: Store, study: Study, scale: str) -> tuple[int, list[Verdict], int]:
    """Judge the stored ``study`` at ``scale``; return its trial count, verdicts, missing count.

    As a run judges it (:func:`_judge`), unless the study names a user's factory file that is
    gone or changed since the run (its trials hash anew: fewer found stored than the store links
    to the study); then the linked trials are judged with their stored configs, and the spec's
    distinct trials (counted without reading a file) give the missing ones.
    """
    linked = judging.linked(store, study.name, scale)
    try:
        expansion, raw = study.validated(scale, validate_stored_trial), None
    except StudyError:  # e.g. a user's factory file cannot be read
        expansion, raw = None, study.expand(scale, max_trials=sys.maxsize)  # reads no file
        if not names_factory_file(raw):
            raise
    if expansion is not None:
        hashes = expansion.hashes
        found = linked <= set(hashes) or judging.stored_count(store, hashes) >= len(linked)
        if found or not names_factory_file(expansion.configs):
            verdicts, missing = _judge(store, expansion.study, scale, expansion.configs, hashes)
            return len(hashes), verdicts, missing
    raw = raw or study.expand(scale, max_trials=sys.maxsize)
    count = len({canonical_hash(config) for config in raw})  # a trial swept twice counts once
    records = store.records(study.name, scale)
    verdicts = judging.judge(store, study.with_scale(scale), scale, records, count)
    return count, verdicts, max(count - len(records), 0)
