"""Check, before anything runs, that every config key a claim reads exists in the study's trials.

A claim names config keys in ``where`` / ``where_a`` / ``where_b`` / ``baseline`` filters and in
``config`` reducers (``x = "model.width"``). A typo there would only show after training, as an
INCONCLUSIVE "config has no key"; this check turns it into an error at load time, naming the
claim, the field and the closest key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from gdscope._checks import did_you_mean
from gdscope.studies.errors import StudyError
from gdscope.studies.reducers import Reducer
from gdscope.studies.table import flatten_config

_FILTERS = ("where", "where_a", "where_b", "baseline")


def known_keys(configs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every dotted key (and every prefix of one) of the flattened trial configs."""
    keys: set[str] = set()
    for config in configs:
        for key in flatten_config(config):
            parts = key.split(".")
            keys.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return keys


def claim_config_keys(model: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(field path, config key)`` for every config key ``model`` (a claim) reads."""
    if isinstance(model, Reducer):
        if model.reduce == "config" and model.key is not None:
            yield path, str(model.key)
        return
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}" if path else name
        if name in _FILTERS and isinstance(value, Mapping):
            yield from ((f"{where}.{key}", str(key)) for key in value)
        elif isinstance(value, BaseModel):
            yield from claim_config_keys(value, where)


def check_claim_keys(claims: Iterable[Any], keys: set[str], origin: str) -> None:
    """Raise ``StudyError`` naming each claim field whose config key is not in ``keys``.

    ``keys`` is :func:`known_keys` of the study's trial configs.
    """
    problems = [
        f"claims[{claim.id}].{field}: no trial has config key {key!r}"
        f"{did_you_mean(key, sorted(keys))}"
        for claim in claims
        for field, key in claim_config_keys(claim)
        if key not in keys and key != "seed"
    ]
    if problems:
        raise StudyError(f"{origin}: " + "; ".join(dict.fromkeys(problems)))
