"""Check, before anything trains, that every metric a claim reads is recorded by some trial.

A claim reads recorded series by name: a reducer's ``metric``, ``versus`` and ``rate_window``,
a threshold claim's ``metric``, a crossing's ``metric``, and the names in expressions (``expr``,
``then``, a crossing's threshold, ``budget = "40*sqrt(kappa)"``) that are not config keys. Each
trial config declares what its run records (``recorded_metrics()``: the scheduled probes'
metrics, the tuned hyper-parameters, a trial kind's fixed series). A name no trial of the study
records would only show after training, as an INCONCLUSIVE "no metric"; this check refuses the
study when it loads, naming the claim, the field, the closest recorded name and, for a network
trial, the probe that records it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from gdscope._checks import did_you_mean, records
from gdscope.studies import _expressions
from gdscope.studies._windows import Crossing
from gdscope.studies.errors import StudyError
from gdscope.studies.reducers import Reducer

_NAME_FIELDS = ("metric", "versus", "rate_window")
"""Fields whose string value names a recorded series."""


def _expression_names(text: str, bound: Iterable[str] = ()) -> list[str]:
    tree = ast.parse(text, mode="eval").body
    return [name for name in _expressions.names(tree) if name not in set(bound)]


def claim_metrics(model: BaseModel, path: str = "") -> Iterator[tuple[str, str, bool]]:
    """Yield ``(field path, name, in_expression)`` for every series name ``model`` (a claim) reads.

    ``in_expression`` marks a name read in an expression, which may be a config key instead.

    >>> r = Reducer(reduce="final", metric="loss", then="value / initial_loss")
    >>> list(claim_metrics(r, "y"))
    [('y.metric', 'loss', False), ('y.then', 'initial_loss', True)]
    """
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}" if path else name
        if name in _NAME_FIELDS and isinstance(value, str):
            yield where, value, False
        elif isinstance(value, str) and (
            (isinstance(model, Reducer) and name == "expr")
            or (isinstance(model, Crossing) and name in ("at_least", "at_most"))
        ):
            yield from ((where, found, True) for found in _expression_names(value))
        elif isinstance(model, Reducer) and name == "then" and isinstance(value, str):
            yield from ((where, found, True) for found in _expression_names(value, ["value"]))
        elif isinstance(value, BaseModel):
            yield from claim_metrics(value, where)


def check_claim_metrics(
    claims: Iterable[Any], configs: Iterable[Any], keys: set[str], origin: str
) -> None:
    """Raise ``StudyError`` naming each claim field whose metric no trial config records.

    ``configs`` are validated trial configs; the check is skipped unless each declares
    ``recorded_metrics()`` (a study validated by a caller's own validator). ``keys`` are the
    config keys of the trials (:func:`~gdscope.studies._claim_keys.known_keys`): a name in an
    expression that is one of them reads the config, not a metric.
    """
    configs = list(configs)
    if not configs or not all(hasattr(config, "recorded_metrics") for config in configs):
        return
    recorded = set().union(*(config.recorded_metrics() for config in configs))
    keys = keys | {"seed"}
    problems = [
        f"claims[{claim.id}].{field}: no trial records metric {name!r}{_hint(name, recorded)}"
        for claim in claims
        for field, name, in_expression in claim_metrics(claim)
        if not records(recorded, name) and not (in_expression and name in keys)
    ]
    if problems:
        raise StudyError(f"{origin}: " + "; ".join(dict.fromkeys(problems)))


def _hint(name: str, recorded: set[str]) -> str:
    from gdscope.training.scheduled import PROBES  # only on an error: loading stays torch-free

    probe = next((probe for probe, p in PROBES.items() if records(p.metrics, name)), None)
    if probe is not None:
        return f" (schedule the probe: probes.{probe} = <every k steps>)"
    return did_you_mean(name, sorted(recorded)) or f"; recorded: {', '.join(sorted(recorded))}"
