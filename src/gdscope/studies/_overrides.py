"""Dotted keys of a study: nesting a flat mapping and applying ``--set KEY=VALUE`` overrides.

``parse_override`` splits ``KEY=VALUE`` and parses the value as TOML; ``assign`` sets a dotted key
of a raw (unvalidated) study dict, ``base.*`` nested, ``sweep.<path>`` and ``scales.<scale>.<key>``
as one key, ``claims.<id>.<field>`` inside the claim of that id; ``nest`` turns dotted keys into
nested dicts. Used by :mod:`gdscope.studies.spec` for study files, scales and the command line.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

from gdscope._checks import did_you_mean
from gdscope.studies.errors import StudyError


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` and parse ``VALUE`` as a TOML value (a bare word is a string).

    Raises:
        StudyError: no ``=``, an empty key, or a value that is not TOML.

    """
    if "\n" in text or "\r" in text:
        raise StudyError(f"--set {text!r}: one KEY=VALUE per --set, without line breaks")
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise StudyError(f"--set {text!r}: expected KEY=VALUE, e.g. base.steps=100")
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][\w.\-]*", raw):
            return key, raw
        raise StudyError(
            f'--set {key}={raw}: the value must be a TOML value (100, 0.1, "text", [1, 2], true)'
        ) from None


def check_top(key: str, fields: Sequence[str], context: str = "") -> str:
    """Return the top-level field of the dotted ``key``, one of ``fields``.

    Raises:
        StudyError: ``key`` starts with none of ``fields`` (with a "did you mean").

    """
    top = key.split(".", 1)[0]
    if top not in fields:
        raise StudyError(
            f"{context}unknown key {key!r}{did_you_mean(top, fields)} (accepted: {', '.join(fields)})"
        )
    return top


def assign(data: dict[str, Any], key: str, value: Any, fields: Sequence[str]) -> None:
    """Set the dotted ``key`` of a raw study dict (``base.*`` nests, ``sweep.<path>`` does not).

    ``fields`` are the study's top-level keys an override may start with.
    """
    top = check_top(key, fields)
    rest = key[len(top) + 1 :]
    if not rest:
        data[top] = nest(value) if top == "base" and isinstance(value, Mapping) else value
    elif top == "base":
        set_nested(data.setdefault("base", {}), rest.split("."), value)
    elif top == "sweep":
        for group in data.get("sweep_zip") or []:
            if rest in group:
                group[rest] = value
                return
        data.setdefault("sweep", {})[rest] = value
    elif top == "scales":
        scale, _, inner = rest.partition(".")
        if inner:
            data.setdefault("scales", {}).setdefault(scale, {})[inner] = value
        elif isinstance(value, Mapping):  # the whole preset, e.g. scales.quick={}
            data.setdefault("scales", {})[scale] = dict(value)
        else:
            raise StudyError(
                f"--set {key}={value!r}: a scale takes a table of dotted overrides, e.g. "
                f'{key}={{"base.steps" = 100}}, or set one of them: {key}.base.steps=100'
            )
    elif top == "claims":
        _assign_claim(data, rest, value)
    else:
        raise StudyError(f"--set {key}: {top!r} takes a whole value, e.g. {top}=...")


def refuse_swept_base(
    overrides: Sequence[str], sweep: Mapping[str, Any], sweep_zip: Sequence[Mapping[str, Any]]
) -> None:
    """Raise if an override sets a ``base`` key the (scaled) study sweeps: it would change nothing.

    Every trial takes a swept key's value from the sweep (``sweep`` or ``sweep_zip``, as the
    run's scale leaves them), so ``--set base.model.width=8`` on a study sweeping
    ``model.width`` was accepted and ignored; so is a key inside a swept table
    (``base.probes.loss`` where ``probes`` is swept).

    >>> refuse_swept_base(["base.model.width=8"], {"model.width": [16, 32]}, [])
    Traceback (most recent call last):
    ...
    gdscope.studies.errors.StudyError: --set base.model.width=8: the study sweeps model.width \
at this scale, so every trial takes it from the sweep and base.model.width changes nothing; set \
the sweep: --set sweep.model.width=[...]
    """
    axes = {*sweep, *(key for group in sweep_zip for key in group)}
    for text in overrides:
        key = parse_override(text)[0]
        path = key[len("base.") :] if key.startswith("base.") else None
        axis = next((a for a in axes if path == a or str(path).startswith(a + ".")), None)
        if path is not None and axis is not None:
            raise StudyError(
                f"--set {text}: the study sweeps {axis} at this scale, so every trial takes it "
                f"from the sweep and base.{path} changes nothing; set the sweep: --set "
                f"sweep.{axis}=[...]"
            )


def _assign_claim(data: dict[str, Any], rest: str, value: Any) -> None:
    claim_id, _, path = rest.partition(".")
    claims = data.get("claims") or []
    ids = [str(c.get("id")) for c in claims if isinstance(c, Mapping)]
    for claim in claims:
        if isinstance(claim, dict) and claim.get("id") == claim_id and path:
            set_nested(claim, path.split("."), value)
            return
    raise StudyError(
        f"--set claims.{rest}: expected claims.<id>.<field> with id one of {', '.join(ids) or 'none'}"
        f"{did_you_mean(claim_id, ids)}"
    )


def set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``target[path[0]][path[1]]...`` to ``value``, creating missing inner dicts.

    Raises:
        StudyError: a key on the way holds a value that is not a table (``model = 5`` and then
            ``model.width``): it is never silently replaced.

    """
    _table_at(target, path)[path[-1]] = value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Nest dotted keys: ``{"model.width": 8, "steps": 5} -> {"model": {"width": 8}, "steps": 5}``.

    Raises:
        StudyError: a dotted key goes through a key that holds a value, not a table.

    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        value = nest(value) if isinstance(value, Mapping) else copy.deepcopy(value)
        path = str(key).split(".")
        parent = _table_at(out, path)
        if isinstance(value, dict) and isinstance(parent.get(path[-1]), dict):
            _merge(parent[path[-1]], value)
        else:
            parent[path[-1]] = value
    return out


def _table_at(target: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """Return the dict that holds ``path[-1]``, creating missing tables on the way."""
    for depth, part in enumerate(path[:-1]):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            where, full = ".".join(path[: depth + 1]), ".".join(path)
            raise StudyError(
                f"{full}: {where} is {child!r}, not a table, so it has no key "
                f"{path[depth + 1]!r}; give {where} as a table, e.g. {where}.{path[depth + 1]} = ..."
            )
        target = child
    return target


def _merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
