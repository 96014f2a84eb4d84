"""A study at one scale with its trials validated once: what a run, a plan and ``verify`` use.

:meth:`gdscope.studies.Study.validated` returns it, so that the scale is applied once and every
trial config is validated and hashed once per run. :func:`trial_config` builds one trial of a
sweep point and :func:`validate_trials` validates all of a study's, naming each bad point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from gdscope.studies._claim_keys import check_claim_keys, known_keys
from gdscope.studies._claim_metrics import check_claim_metrics
from gdscope.studies._overrides import set_nested
from gdscope.studies.errors import StudyError, format_errors

TrialValidator = Callable[[dict[str, Any]], object]


@dataclass(frozen=True)
class Expansion:
    """A study at one scale and its trials, validated once (:meth:`Study.validated`).

    Attributes:
        study: the study with the scale (and its overrides) applied.
        validated: what the validator returned for each trial (what the runner runs).

    """

    study: Any  # the Study (typed loosely: spec imports this module, not the reverse)
    validated: list[Any]

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Each validated config in full, as JSON (what the store keeps and the judge reads).

        Every key the study file sets, with the same value, and every default it leaves out, so
        that a trial two studies share is stored and judged with one config whichever stored it
        first; a user's factory with its file and code digest.
        """
        return [config.model_dump(mode="json") for config in self.validated]

    @property
    def hashes(self) -> list[str]:
        """Each validated config's content hash (the store's key of the trial)."""
        return [config.content_hash() for config in self.validated]


_MAX_REPORTED = 5
"""Distinct problems a refused study lists (each with its first trial and a count of the rest)."""


def indent(text: str) -> str:
    """Indent every line of ``text`` by two spaces."""
    return "\n".join(f"  {line}" for line in text.splitlines())


def trial_config(base: Mapping[str, Any], point: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Return one trial's config: ``base`` with the sweep point's dotted keys and ``seed`` set."""
    trial = copy.deepcopy(dict(base))
    for key, value in point.items():
        set_nested(trial, key.split("."), copy.deepcopy(value))
    trial["seed"] = seed
    return trial


def validate_trials(
    study: Any, scale: str, trials: list[dict[str, Any]], validate: TrialValidator
) -> list[Any]:
    """Validate every trial; return what ``validate`` returned, or raise naming each bad point."""
    fixed = getattr(validate, "__self__", None) or getattr(validate, "model", None)
    fixed = fixed if isinstance(fixed, type) and issubclass(fixed, BaseModel) else None
    class_of = getattr(validate, "config_class", None)  # e.g. gdscope.trials.trial.validate_trial
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
        lines.append(f"  {points[0]}{more}:\n{indent(indent(message))}")
    raise StudyError(
        f"study {study.name!r} at scale {scale!r}: invalid trial configs:\n" + "\n".join(lines)
    )


def _point_label(study: Any, trial: dict[str, Any], index: int, total: int) -> str:
    values = []
    for key in [*study.axes, "seed"]:
        node: Any = trial
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        values.append(f"{key}={node!r}")
    return f"trial {index + 1}/{total} ({', '.join(values)})"
