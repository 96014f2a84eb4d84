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
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

from gdscope._checks import did_you_mean
from gdscope.studies._claim_keys import check_claim_keys, known_keys
from gdscope.studies._claim_metrics import check_claim_metrics
from gdscope.studies._overrides import assign, check_top, nest, parse_override, set_nested
from gdscope.studies.claims import Claim
from gdscope.studies.errors import StudyError, format_errors
from gdscope.studies.expansion import Expansion
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict

Scale = Literal["quick", "paper", "smoke"]
SCALES: tuple[Scale, ...] = get_args(Scale)
TrialValidator = Callable[[dict[str, Any]], object]
_MAX_REPORTED = 5


def _nonempty(values: list[Any]) -> list[Any]:
    if len(values) == 0:
        raise ValueError("empty list; give at least one value")
    return values


Axis = Annotated[list[Any], AfterValidator(_nonempty)]
"""The values of one swept config key (at least one)."""


class Study(BaseModel):
    """One study: a base trial config, a sweep over it, seeds, scales and the claims it judges.

    Attributes:
        name: unique id (``gdscope run NAME``).
        claim_ids: ids in the claims catalogue (CLAIMS.md), e.g. ``["D1"]``.
        title: one line saying what is checked.
        seed_paper: the paper the claim comes from (``"003"``).
        reference: citation.
        provenance: ``"paper"`` when the setting is the paper's, ``"designed"`` when it is ours.
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
    title: str
    seed_paper: str
    reference: str
    provenance: Literal["paper", "designed"]
    description: str = ""
    seeds: list[NonNegativeInt] = Field(min_length=1)
    base: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, Axis] = Field(default_factory=dict)
    sweep_zip: list[dict[str, Axis]] = Field(default_factory=list)
    scales: dict[Scale, dict[str, Any]] = Field(default_factory=dict)
    claims: list[Claim] = Field(default_factory=list)
    estimated_cost: dict[Scale, str] = Field(default_factory=dict)
    overrides: tuple[str, ...] = ()

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
        data = self.model_dump(mode="python", exclude_unset=True)
        for key, value in self.scales.get(scale, {}).items():
            assign(data, key, copy.deepcopy(value), _study_keys())
        for text in self.overrides:
            assign(data, *parse_override(text), _study_keys())
        return _validate(data, f"study {self.name!r} at scale {scale!r}")

    def expand(
        self, scale: str = "quick", validate_trial: TrialValidator | None = None
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

        Raises:
            StudyError: unknown scale, or a config ``validate_trial`` rejects (the message
                names the sweep point and the field).

        """
        study = self.with_scale(scale)
        trials = study._trials()
        if validate_trial is not None:
            _validate_trials(study, scale, trials, validate_trial)
        return trials

    def validated(self, scale: str, validate_trial: TrialValidator) -> Expansion:
        """Return the study at ``scale`` with every trial validated once (an :class:`Expansion`).

        As :meth:`expand` (same order, same errors), keeping what ``validate_trial`` returned
        so that nothing downstream validates again, and the study with the scale applied, so
        that nothing applies it again.
        """
        study = self.with_scale(scale)
        trials = study._trials()
        checked = _validate_trials(study, scale, trials, validate_trial)
        return Expansion(study, trials, checked)

    def _trials(self) -> list[dict[str, Any]]:
        """Every trial config of this (scaled) study: grid × zip × seeds, seeds innermost."""
        return [_trial(self.base, point, seed) for point in self._points() for seed in self.seeds]

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
    if "overrides" in data:
        raise StudyError(
            f"{origin}: 'overrides' is set from the command line (--set), not the file"
        )
    if isinstance(data.get("base"), Mapping):
        data["base"] = nest(data["base"])
    for item in overrides:
        assign(data, *parse_override(item), _study_keys())
    data["overrides"] = overrides
    study = _validate(data, origin)
    if validate_trial is not None:
        for scale in SCALES:
            study.expand(scale, validate_trial)
    return study


def _read(source: str | Path) -> tuple[str, str]:
    if isinstance(source, str) and ("\n" in source or "=" in source):
        return source, "<study text>"
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
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
            f"{origin}: invalid study:\n{_indent(format_errors(err, Study, data, whole='<study>'))}"
        ) from None


def _study_keys() -> list[str]:
    """Return the top-level study keys a dotted override may start with."""
    return [name for name in Study.model_fields if name != "overrides"]


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


# ---------------------------------------------------------------------------------------------
# expansion


def _trial(base: Mapping[str, Any], point: Mapping[str, Any], seed: int) -> dict[str, Any]:
    trial = copy.deepcopy(dict(base))
    for key, value in point.items():
        set_nested(trial, key.split("."), copy.deepcopy(value))
    trial["seed"] = seed
    return trial


def _validate_trials(
    study: Study, scale: str, trials: list[dict[str, Any]], validate: TrialValidator
) -> list[Any]:
    """Validate every trial; return what ``validate`` returned, or raise naming each bad point."""
    fixed = getattr(validate, "__self__", None) or getattr(validate, "model", None)
    fixed = fixed if isinstance(fixed, type) and issubclass(fixed, BaseModel) else None
    class_of = getattr(validate, "config_class", None)  # e.g. gdscope.trial.validate_trial
    problems: dict[str, list[str]] = {}
    configs: list[Any] = []
    validated: list[dict[str, Any]] = []
    for index, trial in enumerate(trials):
        try:
            config = validate(trial)
            configs.append(config)
            validated.append(
                config.model_dump(mode="json") if isinstance(config, BaseModel) else trial
            )
        except ValidationError as err:
            found = class_of(trial) if callable(class_of) else None
            root = fixed or (
                found if isinstance(found, type) and issubclass(found, BaseModel) else None
            )
            message = format_errors(err, root, trial)
        except ValueError as err:
            message = str(err)
        else:
            continue
        problems.setdefault(message, []).append(_point_label(study, trial, index, len(trials)))
    if not problems:
        origin = f"study {study.name!r} at scale {scale!r}"
        keys = known_keys([*trials, *validated])  # once, for both checks
        check_claim_keys(study.claims, keys, origin)
        check_claim_metrics(study.claims, configs, keys, origin)
        return configs
    lines = []
    for message, points in list(problems.items())[:_MAX_REPORTED]:
        more = f" (and {len(points) - 1} more)" if len(points) > 1 else ""
        lines.append(f"  {points[0]}{more}:\n{_indent(_indent(message))}")
    raise StudyError(
        f"study {study.name!r} at scale {scale!r}: invalid trial configs:\n" + "\n".join(lines)
    )


def _point_label(study: Study, trial: dict[str, Any], index: int, total: int) -> str:
    values = []
    for key in [*study.axes, "seed"]:
        node: Any = trial
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        values.append(f"{key}={node!r}")
    return f"trial {index + 1}/{total} ({', '.join(values)})"


def judge_study(study: Study, records: Sequence[TrialRecord]) -> list[Verdict]:
    """Judge every claim of ``study`` on ``records`` (in the study's claim order)."""
    return [claim.judge(records, study.axes) for claim in study.claims]
