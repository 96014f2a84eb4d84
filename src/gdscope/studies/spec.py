"""A study file (TOML) as data: what to sweep, at which scale, and which claims to judge.

``load_study`` parses and validates a study, applying ``--set KEY=VALUE`` overrides first;
``Study.expand(scale)`` returns the trial configs (base ⊕ grid point ⊕ zip point, ``seed`` set)
in a deterministic order and validates every one of them before anything runs. Dotted keys and
the ``--set`` overrides are applied by :mod:`gdscope.studies._overrides`. Nothing here trains,
imports torch, or writes a file.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

from gdscope._checks import did_you_mean
from gdscope.studies._factories import locate_factories
from gdscope.studies._overrides import assign, check_top, nest, parse_override
from gdscope.studies.claims import Claim
from gdscope.studies.errors import StudyError, format_errors
from gdscope.studies.expansion import (
    Expansion,
    TrialValidator,
    indent,
    trial_config,
    validate_trials,
)
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict

Scale = Literal["quick", "paper", "smoke"]
SCALES: tuple[Scale, ...] = get_args(Scale)


MAX_TRIALS = 100_000
"""The most trials a study may expand to unless the caller raises it (``--max-trials``)."""


def _nonempty(values: list[Any]) -> list[Any]:
    if len(values) == 0:
        raise ValueError("empty list; give at least one value")
    return values


Axis = Annotated[list[Any], AfterValidator(_nonempty)]
"""The values of one swept config key (at least one; a grid axis's values distinct)."""
Seed = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
"""A seed: a whole number (not true/false or 1.0) that fits the store's signed 64-bit column."""


class Study(BaseModel):
    """One study: a base trial config, a sweep over it, seeds, scales and the claims it judges.

    Attributes:
        name: unique id (``gdscope run NAME``).
        claim_ids: ids in the claims catalogue (docs/claims.md), e.g. ``["D1"]``.
        title: one line saying what is checked.
        seed_paper: the paper the claim comes from (``"003"``).
        reference: citation.
        provenance: ``"paper"`` when the setting is the paper's, ``"designed"`` when it is ours
            (the catalogue's), ``"user"`` (the default) for a researcher's own study. ``title``,
            ``seed_paper``, ``reference`` and ``provenance`` are the catalogue's bookkeeping:
            a user's study needs only ``name``, ``base`` and ``claims``.
        description: free text.
        seeds: seeds every sweep point runs with.
        base: one trial config (any kind), nested; dotted keys in the file are nested on load.
        sweep: grid axes, dotted config path → values; every combination runs.
        sweep_zip: groups of axes varied together (equal-length lists); groups combine as a grid.
        scales: ``"quick"`` / ``"paper"`` / ``"smoke"`` (the tests' tiny size) → dotted overrides (``"base.steps"``,
            ``"sweep.data.n"``, ``"seeds"``) applied by :meth:`with_scale`.
        claims: what the results must show (see :mod:`gdscope.studies.claims`).
        estimated_cost: per scale, what a run costs and where it was measured, e.g.
            ``{paper = "≈ 6 min on 2 CPU cores (measured 2026-12-04)"}``; printed by ``--dry-run``.
        overrides: the command line's ``--set`` overrides; re-applied after a scale so they win.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    claim_ids: list[str] = Field(default_factory=list)
    title: str = ""
    seed_paper: str = ""
    reference: str = ""
    provenance: Literal["paper", "designed", "user"] = "user"
    description: str = ""
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    base: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, Axis] = Field(default_factory=dict)
    sweep_zip: list[dict[str, Axis]] = Field(default_factory=list)
    scales: dict[Scale, dict[str, Any]] = Field(default_factory=dict)
    claims: list[Claim] = Field(default_factory=list)
    estimated_cost: dict[Scale, str] = Field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    source: str = Field(default="", exclude=True)
    """The study file it was loaded from (``""`` for TOML text); not part of the stored spec."""

    @field_validator("base", mode="before")
    @classmethod
    def _nest_base(cls, base: Any) -> Any:
        return nest(base) if isinstance(base, Mapping) else base

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("sweep")
    @classmethod
    def _distinct_values(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in sweep.items():
            seen = [repr(v) for v in values]
            twice = sorted({v for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(
                    f"sweep {key!r} lists {', '.join(twice)} twice; list each value once"
                )
        return sweep

    @field_validator("sweep_zip")
    @classmethod
    def _equal_lengths(cls, groups: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for group in groups:
            lengths = {key: len(values) for key, values in group.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"zipped axes must have equal lengths, got {lengths}")
        return groups

    @field_validator("scales")
    @classmethod
    def _known_override_keys(cls, scales: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for scale, overrides in scales.items():
            for key in overrides:
                check_top(key, _study_keys(), f"scales.{scale}: ")
        return scales

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        axes = list(self.sweep) + [key for group in self.sweep_zip for key in group]
        repeated = sorted({key for key in axes if axes.count(key) > 1})
        if repeated:
            raise ValueError(f"axes swept twice (sweep and sweep_zip): {', '.join(repeated)}")
        nested = sorted((a, b) for a in axes for b in axes if b.startswith(f"{a}."))
        if nested:
            outer, inner = nested[0]
            raise ValueError(
                f"axis {inner!r} lies inside axis {outer!r}: one replaces the other in every "
                "trial; sweep one of them"
            )
        if "seed" in axes:
            raise ValueError("sweep 'seed' through the `seeds` list, not as an axis")
        ids = [claim.id for claim in self.claims]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"claim ids must be unique; repeated: {', '.join(twice)}")
        return self

    @property
    def axes(self) -> list[str]:
        """The swept dotted config keys (grid axes first, then zipped), without ``seed``."""
        return list(self.sweep) + [key for group in self.sweep_zip for key in group]

    def with_scale(self, scale: str) -> Study:
        """Return this study with ``scales[scale]`` applied (then the ``--set`` overrides again).

        Raises:
            StudyError: unknown scale, or the overrides make the study invalid.

        """
        if scale not in SCALES:
            raise StudyError(
                f"unknown scale {scale!r}; scales: {', '.join(SCALES)}{did_you_mean(scale, SCALES)}"
            )
        if scale != "quick" and scale not in self.scales:
            raise StudyError(
                f"study {self.name!r} has no [scales.{scale}]; add one to the study file, or "
                "run the base as written with --scale quick"
            )
        data = self.model_dump(mode="python", exclude_unset=True)
        data["source"] = self.source
        for key, value in self.scales.get(scale, {}).items():
            assign(data, key, copy.deepcopy(value), _study_keys())
        for text in self.overrides:
            assign(data, *parse_override(text), _study_keys())
        return _validate(data, f"study {self.name!r} at scale {scale!r}")

    def expand(
        self,
        scale: str = "quick",
        validate_trial: TrialValidator | None = None,
        max_trials: int = MAX_TRIALS,
    ) -> list[dict[str, Any]]:
        """Return the trial configs at ``scale``: grid × zip × seeds, seeds innermost.

        The order is deterministic: grid axes in file order (last varies fastest), then the
        zipped groups, then the seeds. Each config is ``base`` with the point's dotted keys set
        and ``seed`` set.

        Args:
            scale: ``"quick"`` or ``"paper"``.
            validate_trial: called on every config (raises ``ValidationError`` / ``ValueError``
                for a bad one); all bad points are reported before anything runs. Unknown keys
                get a "did you mean" when it is a model's ``model_validate`` or has a ``model``
                attribute naming the pydantic model.
            max_trials: refuse a study that expands to more trials (counted before expanding).

        Raises:
            StudyError: unknown scale, too many trials, or a config ``validate_trial`` rejects
                (the message names the sweep point and the field).

        """
        study = self.with_scale(scale)
        trials = study._trials(scale, max_trials)
        if validate_trial is not None:
            validate_trials(study, scale, trials, validate_trial)
        return trials

    def validated(
        self, scale: str, validate_trial: TrialValidator, max_trials: int = MAX_TRIALS
    ) -> Expansion:
        """Return the study at ``scale`` with every trial validated once (an :class:`Expansion`).

        As :meth:`expand` (same order, same errors), keeping what ``validate_trial`` returned
        so that nothing downstream validates again, and the study with the scale applied, so
        that nothing applies it again.
        """
        study = self.with_scale(scale)
        trials = study._trials(scale, max_trials)
        checked = validate_trials(study, scale, trials, validate_trial)
        return Expansion(study, checked)

    def _trials(self, scale: str, max_trials: int) -> list[dict[str, Any]]:
        """Every trial config of this (scaled) study: grid × zip × seeds, seeds innermost."""
        count = math.prod(len(v) for v in self.sweep.values()) * len(self.seeds)
        count *= math.prod(len(next(iter(group.values()))) for group in self.sweep_zip if group)
        if count > max_trials:
            raise StudyError(
                f"study {self.name!r} at scale {scale!r} expands to {count:,} trials, more than "
                f"--max-trials {max_trials:,}; narrow the sweep or raise --max-trials"
            )
        return [
            trial_config(self.base, point, seed) for point in self._points() for seed in self.seeds
        ]

    def _points(self) -> list[dict[str, Any]]:
        grid = [
            dict(zip(self.sweep, values, strict=True))
            for values in itertools.product(*self.sweep.values())
        ]
        zipped = [
            [dict(zip(group, values, strict=True)) for values in zip(*group.values(), strict=True)]
            for group in self.sweep_zip
        ]
        points = []
        for combo in itertools.product(grid, *zipped):
            point: dict[str, Any] = {}
            for part in combo:
                point.update(part)
            points.append(point)
        return points


# ---------------------------------------------------------------------------------------------
# loading


def load_study(
    source: str | Path,
    *,
    overrides: Iterable[str] = (),
    validate_trial: TrialValidator | None = None,
) -> Study:
    """Parse, override and validate a study.

    Args:
        source: a path to a ``.toml`` file, or the TOML text itself (a string with a newline
            or an ``=`` in it).
        overrides: ``KEY=VALUE`` strings (``--set``); ``VALUE`` is a TOML value
            (``base.steps=100``, ``sweep.model.width=[256,1024]``, ``base.optimizer.name=nag``).
        validate_trial: if given, every trial of the ``quick`` and ``paper`` scales is
            validated with it now (see :meth:`Study.expand`).

    Returns:
        The validated :class:`Study`.

    Raises:
        StudyError: with a printable message naming the file:line:col, the field or the key.

    """
    text, origin = _read(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(_toml_error(origin, str(err))) from None
    overrides = tuple(overrides)
    for key in ("overrides", "source"):
        if key in data:
            raise StudyError(
                f"{origin}: {key!r} is set by gdscope (--set, the file's path), not the file"
            )
    if isinstance(data.get("base"), Mapping):
        data["base"] = nest(data["base"])
    for item in overrides:
        assign(data, *parse_override(item), _study_keys())
    data["overrides"] = overrides
    try:
        locate_factories(data, Path(origin).parent if origin != _TEXT else None, origin)
    except ValueError as err:
        raise StudyError(str(err)) from None
    if origin != _TEXT:
        data["source"] = origin
    given = "".join(f" --set {o}" for o in overrides)
    study = _validate(data, f"{origin} with{given}" if overrides else origin)
    if validate_trial is not None:
        for scale in SCALES:
            if scale == "quick" or scale in study.scales:
                study.expand(scale, validate_trial)
    return study


_TEXT = "<study text>"


def _read(source: str | Path) -> tuple[str, str]:
    if isinstance(source, str) and ("\n" in source or "=" in source):
        return source, _TEXT
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8-sig"), str(path)  # -sig: a leading BOM dropped
    except OSError as err:
        raise StudyError(f"{path}: cannot read the study file ({err.strerror})") from None


def _toml_error(origin: str, message: str) -> str:
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not found:
        return f"{origin}: invalid TOML: {message}"
    reason = message[: found.start()].strip()
    return f"{origin}:{found.group(1)}:{found.group(2)}: invalid TOML: {reason}"


def _validate(data: dict[str, Any], origin: str) -> Study:
    try:
        return Study.model_validate(data)
    except ValidationError as err:
        raise StudyError(
            f"{origin}: invalid study:\n{indent(format_errors(err, Study, data, whole='<study>'))}"
        ) from None


def _study_keys() -> list[str]:
    """Return the top-level study keys a dotted override may start with."""
    return [name for name in Study.model_fields if name not in ("overrides", "source")]


# ---------------------------------------------------------------------------------------------
# expansion


def judge_study(study: Study, records: Sequence[TrialRecord]) -> list[Verdict]:
    """Judge every claim of ``study`` on ``records`` (in the study's claim order)."""
    return [claim.judge(records, study.axes) for claim in study.claims]
