"""Text for the report: numbers (``–`` for a missing or nan value), bands, reducers and trials.

Pure functions of data read from the store; the page escapes what they return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from gdscope.studies.table import TrialRecord

MISSING = "–"
"""What the report shows for a number that is missing or nan."""

_METRIC_NAMES = {"kappa": "κ", "kernel_kappa": "kernel κ", "ntk_kappa": "NTK κ"}
_REDUCE_NAMES = {
    "initial": "initial {m}",
    "final": "final {m}",
    "min": "min {m}",
    "max": "max {m}",
    "rate": "rate of {m}",
    "one_minus_rate": "1 − rate of {m}",
    "final_over_initial": "final / initial {m}",
    "ratio_final_initial": "final / initial {m}",
    "steps_to_eps": "steps to ε of {m}",
    "median_window": "median {m}",
}


def number(value: Any) -> str:
    """Format a number to 4 significant digits; ``–`` for ``None``/nan, ``±∞`` for infinities."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return MISSING if value is None else str(value)
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.4g}"


def interval(pair: Sequence[Any] | None) -> str:
    """Format a ``(lo, hi)`` pair as ``[lo, hi]``; ``–`` when missing or both ends are nan."""
    if pair is None or len(pair) != 2:
        return MISSING
    lo, hi = pair
    if _missing(lo) and _missing(hi):
        return MISSING
    return f"[{number(lo)}, {number(hi)}]"


def finite(value: Any) -> TypeGuard[float]:
    """Whether ``value`` is a real, finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def metric_name(metric: str) -> str:
    """Readable metric name (``kappa`` → ``κ``)."""
    return _METRIC_NAMES.get(metric, metric)


def reducer(spec: Any) -> str:
    """Readable label of a reducer as stored in a study spec (a dict, or a bare key/expression)."""
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, Mapping):
        return MISSING
    kind = str(spec.get("reduce", ""))
    if kind == "config":
        return str(spec.get("key", MISSING))
    if kind == "expr":
        return str(spec.get("expr", MISSING))
    text = _REDUCE_NAMES.get(kind, kind + " {m}").format(m=metric_name(str(spec.get("metric"))))
    window = spec.get("window")
    if isinstance(window, Sequence) and len(window) == 2:
        text += f" over steps {number(window[0])}–{number(window[1])}"
    return text


def varying_keys(records: Iterable[TrialRecord]) -> list[str]:
    """Config keys (other than ``seed``) whose value differs between ``records``, sorted."""
    seen: dict[str, set[str]] = {}
    records = list(records)
    for record in records:
        for key, value in record.config.items():
            seen.setdefault(key, set()).add(repr(value))
    keys = [k for k, v in seen.items() if k != "seed" and (len(v) > 1)]
    keys = [k for k in keys if all(k in r.config for r in records)] or keys
    return sorted(k for k in keys if not k.startswith("probes."))


def trial(record: TrialRecord, axes: Sequence[str]) -> str:
    """Name a trial by its swept values and seed, e.g. ``model.width=64, seed=0``."""
    parts = [f"{k}={record.config[k]!r}" for k in axes if k in record.config]
    if "seed" in record.config:
        parts.append(f"seed={record.config['seed']!r}")
    return ", ".join(parts) or f"trial {record.hash[:8]}"


def shorten(text: str, limit: int = 48) -> str:
    """Cut ``text`` to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
