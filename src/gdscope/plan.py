"""Find, load and plan a study: the catalogue, ``load``, and what a run would do (``plan_study``).

``plan_study`` validates a study's trials at one scale, builds each distinct user model and data
set once (:func:`check_study_code`), and counts what a results store already holds, without
creating or writing anything: ``gdscope run --dry-run``. :mod:`gdscope.api` runs what it plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdscope import _checks as check
from gdscope.store import DB_NAME, Store
from gdscope.studies import Study, StudyError, load_study
from gdscope.studies._overrides import refuse_swept_base
from gdscope.studies.spec import MAX_TRIALS, SCALES
from gdscope.trials.trial import validate_trial
from gdscope.trials.user_code import check_user_code

CATALOG = Path(__file__).parent / "studies" / "catalog"


@dataclass(frozen=True)
class StudyPlan:
    """What ``run_study`` would do for one study at one scale (from :func:`plan_study`).

    Attributes:
        study: the study with the scale and the overrides applied.
        scale: the scale.
        trials: trial configs at this scale (sweep points × seeds).
        stored: of those, how many the results store already holds finished (a run skips them).
        axes: every swept dotted key with its values at this scale, ``seed`` last (the keys of
            a ``sweep_zip`` group vary together: :attr:`groups` says which).
        overrides: the ``--set`` overrides applied to the study as shipped (``()``: none).

    """

    study: Study
    scale: str
    trials: int
    stored: int
    axes: dict[str, list[Any]]
    overrides: tuple[str, ...] = ()

    @property
    def to_run(self) -> int:
        """Trials a run would train."""
        return self.trials - self.stored

    def unjudgeable(self) -> list[str]:
        """Say which claims cannot be judged at this scale, one line each.

        Their ``x``, a config key, takes fewer values than the claim fits over (``min_points``;
        2 for an ordering), so they could only be INCONCLUSIVE. A dry run prints these (a run
        would find out after training).
        """
        out = []
        for claim in self.study.claims:
            x = getattr(claim, "x", None)
            key = getattr(x, "key", None) if getattr(x, "reduce", None) == "config" else None
            if not key:
                continue
            values = {repr(v) for v in self.axes.get(key, ["one"])}
            needed = getattr(claim, "min_points", 2)
            if len(values) < needed:
                out.append(
                    f"claim {claim.id} reads y against {key}, which takes {len(values)} "
                    f"value(s) at scale {self.scale!r} where it needs {needed}: it can only be "
                    f"INCONCLUSIVE; sweep {key} (--set sweep.{key}=[...])"
                )
        return out

    @property
    def groups(self) -> list[dict[str, list[Any]]]:
        """The sweep's factors: each grid axis alone, each ``sweep_zip`` group together, seed last.

        A group's keys vary together (their values paired position by position), so the trials
        are the product of the groups' lengths (a group's length is that of each of its lists).
        """
        zipped = [list(group) for group in self.study.sweep_zip if group]
        together = {key for keys in zipped for key in keys}
        grid = [[key] for key in self.axes if key not in together and key != "seed"]
        return [{key: self.axes[key] for key in keys} for keys in [*grid, *zipped, ["seed"]]]


def catalog() -> dict[str, Path]:
    """Return ``{study name: TOML path}`` for the built-in catalogue, sorted by name."""
    return {path.stem: path for path in sorted(CATALOG.glob("*.toml"))}


def resolve_study(name_or_path: str | Path) -> Path:
    """Return the TOML path of a catalogue name or an existing file (did-you-mean otherwise)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise StudyError(
                f"study file {str(path)!r} is a folder; give a .toml file or a catalogue name "
                "(gdscope list claims names each study)"
            )
        if not path.is_file():
            raise StudyError(f"study file {str(path)!r} does not exist")
        return path
    studies = catalog()
    return studies[check.known("study", str(name_or_path), studies)]


def load(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Load and validate a study; its trials are validated when it expands at a scale.

    A study file other than the catalogue's own may not take a catalogue study's name: the store
    keys a study by name, so its verdicts would stand for the catalogue's.

    (:func:`run_study` and :func:`plan_study` expand the scale they run, before writing anything.)
    """
    path = resolve_study(name_or_path)
    try:
        study = load_study(path, overrides=list(overrides))
    except ValueError as err:
        raise StudyError(str(err)) from None
    return _own_name(study)


def _own_name(study: Study) -> Study:
    """Return ``study``; raise if a file other than the catalogue's takes a catalogue name."""
    shipped = catalog().get(study.name)
    if shipped is not None and study.source and Path(study.source).resolve() != shipped.resolve():
        raise StudyError(
            f"study file {study.source!r} is named {study.name!r}, as a catalogue study: in a "
            "results store its verdicts would replace the catalogue's; give it a name of its "
            f'own (name = "my-{study.name}")'
        )
    return study


def once(studies: Sequence[Study]) -> list[Study]:
    """Return ``studies``; raise if two have one name (a store keeps one study per name).

    Or if one from a file other than the catalogue's takes a catalogue study's name.
    """
    names = [_own_name(study).name for study in studies]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise StudyError(f"study {twice!r} is given twice; give each study once")
    return list(studies)


def plan_study(
    name_or_path: str | Path,
    *,
    scale: str = "quick",
    results: str | Path = "gdscope-results",
    overrides: Sequence[str] = (),
    max_trials: int = MAX_TRIALS,
) -> StudyPlan:
    """Say what ``run_study`` would run, without running, creating or writing anything.

    The study and every trial config at ``scale`` are validated as by ``run_study``; the trials
    already finished in ``results`` (by any study: a run reuses them) are counted as stored.

    Raises:
        StudyError: the study, an override or a trial config is invalid.
        StoreError: ``results`` exists but is not a directory, or holds an unreadable store.

    """
    check.one_of("scale", scale, SCALES)
    study = load(name_or_path, overrides)
    expansion = study.validated(scale, validate_trial, max_trials)
    refuse_swept_base(study.overrides, expansion.study.sweep, expansion.study.sweep_zip)
    check_study_code(study, expansion.validated)
    scaled, hashes = expansion.study, expansion.hashes
    if (Path(results) / DB_NAME).is_file():
        done = Store(results, read_only=True).finished_hashes()
    else:
        done = set()
    axes = {**scaled.sweep, **{key: v for group in scaled.sweep_zip for key, v in group.items()}}
    return StudyPlan(
        scaled,
        scale,
        len(hashes),
        sum(digest in done for digest in hashes),
        {**{key: list(values) for key, values in axes.items()}, "seed": list(scaled.seeds)},
        tuple(overrides),
    )


def check_study_code(study: Study, validated: list[Any]) -> None:
    """Build each distinct user model and data set once (``trial.check_user_code``)."""
    try:
        check_user_code(validated)
    except (ValueError, OSError) as error:  # OSError: a data file missing or unreadable
        raise StudyError(f"{study.source or f'study {study.name!r}'}: {error}") from None
