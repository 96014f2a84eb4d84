"""The Python API of studies: run a study, re-judge stored results, list the catalogue.

``run_study`` loads a study (a catalogue name or a TOML path), validates every trial of the chosen
scale before anything runs, skips trials whose config hash is already in the results store, runs the
rest with a runner, stores each finished trial in one transaction, then judges the claims on the
stored records and stores the verdicts. ``verify`` re-judges from the store alone, without training.

Both judge a study on every trial it expands to, wherever stored (another study may have run some),
each with this study's own config; if some are not stored (an interrupted run), every verdict is
INCONCLUSIVE and says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdscope import _checks as check
from gdscope.runners.local import WorkerPool, uses_cuda
from gdscope.store import DB_NAME, Store
from gdscope.studies import Study, StudyError, Verdict, judge_study, load_study
from gdscope.trial import run_config, validate_trial

CATALOG = Path(__file__).parent / "studies" / "catalog"
RUNNERS = ("local", "ray")
SCALES = ("quick", "paper", "smoke")


@dataclass(frozen=True)
class StudyResult:
    """What ``run_study`` or ``verify`` produced for one study at one scale.

    ``missing`` counts the trials of the study not in the store (an interrupted run; its verdicts
    are then INCONCLUSIVE).
    """

    study: Study
    scale: str
    verdicts: list[Verdict]
    trials: int
    ran: int
    failed: int
    wall_time_s: float
    missing: int = 0


@dataclass(frozen=True)
class StudyPlan:
    """What ``run_study`` would do for one study at one scale (from :func:`plan_study`).

    Attributes:
        study: the study with the scale and the overrides applied.
        scale: the scale.
        trials: trial configs at this scale (sweep points × seeds).
        stored: of those, how many the results store already holds finished (a run skips them).
        axes: every swept dotted key with its values at this scale, ``seed`` last.

    """

    study: Study
    scale: str
    trials: int
    stored: int
    axes: dict[str, list[Any]]

    @property
    def to_run(self) -> int:
        """Trials a run would train."""
        return self.trials - self.stored


def catalog() -> dict[str, Path]:
    """Return ``{study name: TOML path}`` for the built-in catalogue, sorted by name."""
    return {path.stem: path for path in sorted(CATALOG.glob("*.toml"))}


def resolve_study(name_or_path: str | Path) -> Path:
    """Return the TOML path of a catalogue name or an existing file (did-you-mean otherwise)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise StudyError(f"study file {str(path)!r} does not exist")
        return path
    studies = catalog()
    return studies[check.known("study", str(name_or_path), studies)]


def load(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Load and validate a study (every trial of every scale is validated on expansion)."""
    try:
        return load_study(
            resolve_study(name_or_path), overrides=list(overrides), validate_trial=validate_trial
        )
    except ValueError as err:
        raise StudyError(str(err)) from None


def run_study(
    name_or_path: str | Path,
    *,
    scale: str = "quick",
    runner: str = "local",
    results: str | Path | Store = "gdscope-results",
    workers: int = 1,
    address: str | None = None,
    batch: bool | None = None,
    pool: WorkerPool | None = None,
    overrides: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Run one study at ``scale`` into the results directory and judge its claims.

    Args:
        name_or_path: a catalogue name (``gdscope list claims``) or a TOML file.
        scale: ``"quick"`` (CPU, about a minute) or ``"paper"``.
        runner: ``"local"`` (in-process, or a process pool with ``workers > 1``) or ``"ray"``
            (Ray tasks with retries; see :mod:`gdscope.runners.ray`).
        results: the results directory (created; a SQLite store inside), or an open ``Store``
            (whose write lock the caller may already hold, e.g. across several studies).
        workers: processes for the local runner (with Ray, only the split of ensembles).
        address: the Ray cluster for ``runner="ray"`` (``None``: start a local instance;
            ``"auto"`` or ``"ray://host:10001"``: an existing cluster).
        batch: train trials that differ only in seed, learning rate or init scale together as
            one ensemble (:func:`gdscope.ensemble.run_trial_group`), split into ``workers``
            parts (with Ray: one task per part); the stored results are the same bits as one
            by one. ``None`` (auto): only trials on a CUDA device — on the CPU the exact
            ensemble path measured no faster than one trial after another (benchmarks/README.md,
            W3 and the catalogue).
        pool: a :class:`~gdscope.runners.WorkerPool` shared by several calls (it replaces
            ``workers``; its processes start once instead of once per study).
        overrides: dotted ``KEY=VALUE`` overrides, e.g. ``"sweep.width=[256,1024]"``.
        progress: ``callback(done, total)`` after each trial.

    Returns:
        A ``StudyResult`` with the verdicts.

    Raises:
        StudyError: the study, an override or a trial config is invalid (nothing is written).
        StoreBusy: another process is writing to ``results``.

    """
    check.one_of("scale", scale, SCALES)
    workers = check_runner(runner, workers, address)
    start = time.perf_counter()
    study = load(name_or_path, overrides)
    scaled = study.with_scale(scale)
    configs = scaled.expand(scale)  # load() already validated every trial of every scale
    check_devices(configs, runner)
    hashes = _trial_hashes(configs)
    store = results if isinstance(results, Store) else Store(results)
    with store.writer():
        store.record_study(study.name, scale, study.model_dump(mode="json", exclude_defaults=True))
        done = store.finished_hashes()
        todo = [(h, c) for h, c in zip(hashes, configs, strict=True) if h not in done]
        for digest in set(hashes) & done:  # stored by an earlier run, possibly of another study
            store.link_trial(study.name, scale, digest)
        failed = 0

        def on_result(digest: str, config: dict[str, Any], result: Any) -> None:
            nonlocal failed
            failed += isinstance(result, BaseException)
            store.record_trial(study.name, scale, config, digest, result)

        share = pool.workers if pool is not None else workers
        groups, run_group = _ensembles(todo, share, batch) if batch is not False else (None, None)
        if runner == "ray":
            from gdscope.runners.ray import run_trials as run_on_ray

            run_on_ray(
                todo,
                run_config,
                address=address,
                on_result=on_result,
                progress=progress,
                groups=groups,
                run_group=run_group,
            )
        else:
            from gdscope.runners.local import run_trials

            run_trials(
                todo,
                run_config,
                workers=workers,
                on_result=on_result,
                progress=progress,
                groups=groups,
                run_group=run_group,
                pool=pool,
            )
        verdicts, missing = _judge(store, scaled, scale, configs, hashes)
    return StudyResult(
        study,
        scale,
        verdicts,
        len(configs),
        len(todo),
        failed,
        time.perf_counter() - start,
        missing,
    )


def _ensembles(
    todo: list[tuple[str, dict[str, Any]]], workers: int, batch: bool | None
) -> tuple[list[list[int]] | None, Any]:
    """Group ``todo`` into ensembles, split so that every worker gets a share.

    With ``batch=None`` only groups on a CUDA device stay together; the rest run one by one.
    """
    if batch is None and not uses_cuda([config for _, config in todo]):
        return None, None
    from gdscope.ensemble import group_trials, run_trial_group

    share = max(1, -(-len(todo) // workers))
    groups = group_trials([config for _, config in todo], max_size=share)
    if batch is None:
        on_gpu = [uses_cuda([todo[g[0]][1]]) for g in groups]
        groups = [
            part
            for g, gpu in zip(groups, on_gpu, strict=True)
            for part in ([g] if gpu else [[i] for i in g])
        ]
    return groups, run_trial_group


def plan_study(
    name_or_path: str | Path,
    *,
    scale: str = "quick",
    results: str | Path = "gdscope-results",
    overrides: Sequence[str] = (),
) -> StudyPlan:
    """Say what ``run_study`` would run, without running, creating or writing anything.

    The study and every trial config at ``scale`` are validated as by ``run_study``; the trials
    already finished in ``results`` (by any study: a run reuses them) are counted as stored.

    Raises:
        StudyError: the study, an override or a trial config is invalid.
        StoreError: ``results`` exists but is not a directory, or holds an unreadable store.

    """
    check.one_of("scale", scale, SCALES)
    scaled = load(name_or_path, overrides).with_scale(scale)
    hashes = _trial_hashes(scaled.expand(scale))
    if (Path(results) / DB_NAME).is_file():
        done = Store(results, create=False).finished_hashes()
    else:
        done = set()
    axes = {**scaled.sweep, **{key: v for group in scaled.sweep_zip for key, v in group.items()}}
    return StudyPlan(
        scaled,
        scale,
        len(hashes),
        sum(digest in done for digest in hashes),
        {**{key: list(values) for key, values in axes.items()}, "seed": list(scaled.seeds)},
    )


def _trial_hashes(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Return the store key of each trial config: the content hash of its validated form."""
    return [validate_trial(config).content_hash() for config in configs]


def check_devices(configs: Sequence[dict[str, Any]], runner: str) -> None:
    """Refuse CUDA trials for the local runner on a machine where torch sees no GPU.

    (With Ray the workers' GPUs count, not the driver's; the Ray runner checks the cluster.)

    Raises:
        StudyError: naming the device and the fix; nothing has been written.

    """
    if runner != "local" or not uses_cuda(list(configs)):
        return
    import torch

    if not torch.cuda.is_available():
        raise StudyError(
            "the trials ask for device 'cuda' but torch sees no GPU on this machine "
            "(torch.cuda.is_available() is False); run them where there is one, or "
            'use --set base.device="cpu"'
        )


def check_runner(runner: str, workers: int, address: str | None) -> int:
    """Validate the runner choice; return ``workers``.

    Raises:
        ValueError: unknown runner, ``workers`` not a positive integer, or an ``address``
            without ``runner="ray"``.

    """
    check.one_of("runner", runner, RUNNERS)
    workers = check.positive_int("workers", workers)
    if address is not None and runner != "ray":
        raise ValueError(f"address={address!r} is for runner='ray', not runner={runner!r}")
    return workers


def _judge(
    store: Store, study: Study, scale: str, configs: list[dict[str, Any]], hashes: list[str]
) -> tuple[list[Verdict], int]:
    """Judge ``study`` on its stored trials, store the verdicts; return them and the missing count.

    Each record carries this study's config of its hash (``configs[i]`` hashed to ``hashes[i]``),
    not the stored one, which another study may have written first without a key this study's
    claims read. Trials not in the store at all (of the distinct hashes; a failed trial is stored
    and judged as failed, as by the run that stored it) make every verdict INCONCLUSIVE
    (:func:`_partial`).
    """
    own = dict(zip(hashes, configs, strict=True))
    records = store.records(hashes=hashes, configs=own)
    verdicts = judge_study(study, records)
    missing = len(own) - len(records)
    if missing:
        verdicts = [_partial(verdict, len(records), len(own)) for verdict in verdicts]
    store.record_verdicts(study.name, scale, verdicts)
    return verdicts, missing


def _partial(verdict: Verdict, stored: int, trials: int) -> Verdict:
    """Return ``verdict`` as INCONCLUSIVE, its reason saying that only ``stored`` of ``trials`` are."""
    reason = (
        f"only {stored} of {trials} trials are stored (run the study again to finish it); "
        f"{verdict.reason}"
    )
    return dataclasses.replace(verdict, status="INCONCLUSIVE", reason=reason)


def report(
    results: str | Path = "gdscope-results",
    output: str | Path | None = None,
    *,
    markdown: bool = False,
) -> Path:
    """Write the HTML report of ``results`` (default ``results/report.html``); return its path.

    See :mod:`gdscope.report`: verdict table, per-claim figures, environment, one file. With
    ``markdown=True`` write the verdicts page instead (default ``results/verdicts.md``).

    Raises:
        StoreError: ``results`` holds no gdscope store.

    """
    from gdscope.report import write_report

    default = "verdicts.md" if markdown else "report.html"
    target = Path(output) if output is not None else Path(results) / default
    return write_report(results, target, fmt="markdown" if markdown else "html")


def verify(results: str | Path) -> list[StudyResult]:
    """Re-judge every study stored in ``results`` from the stored trials alone (no training).

    A study whose run was interrupted (some of its trials not stored) gets INCONCLUSIVE verdicts
    that say how many trials are stored; its ``StudyResult.missing`` counts the others.
    """
    store = Store(results, create=False)
    out = []
    with store.writer():
        for row in store.studies():
            start = time.perf_counter()
            study = Study.model_validate(row["spec"])
            scaled = study.with_scale(row["scale"])
            configs = scaled.expand(row["scale"], validate_trial)
            hashes = _trial_hashes(configs)
            verdicts, missing = _judge(store, scaled, row["scale"], configs, hashes)
            elapsed = time.perf_counter() - start
            out.append(
                StudyResult(study, row["scale"], verdicts, len(hashes), 0, 0, elapsed, missing)
            )
    return out
