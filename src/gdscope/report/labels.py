"""Text for the report: numbers (``–`` for a missing or nan value), bands, reducers and trials.

Pure functions of data read from the store; the page escapes what they return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    "max_rise": "largest rise of {m}",
    "late_over_early": "median of last {f} / first {f} of {m}",
    "loglog_slope": "log–log slope of {m}",
    "spearman": "Spearman ρ of {m}",
    "steps_to_eps_r2": "R² of steps to ε against log(1/ε) of {m}",
}
_SIDES = {"at_least": "≥", "at_most": "≤"}


def number(value: Any) -> str:
    """Format a number to 4 significant digits; ``–`` for ``None``/nan, ``±∞`` for infinities.

    A reducer spec in a number's place (a ``reaches`` threshold or budget given as an expression,
    evaluated per trial) is shown by its label.
    """
    if isinstance(value, Mapping):
        return reducer(value)
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
        return expression(str(spec.get("expr", MISSING)))
    metric = str(spec.get("metric"))
    fraction = spec.get("fraction", 0.25)
    share = f"{fraction:.0%}" if finite(fraction) else str(fraction)
    text = _REDUCE_NAMES.get(kind, kind + " {m}").format(m=metric_name(metric), f=share)
    if kind == "max_rise" and spec.get("relative"):
        text = text.replace("largest rise", "largest relative rise", 1)
    if kind in ("loglog_slope", "spearman"):
        text += f" vs {metric_name(str(spec.get('versus', 'step')))}"
    window = spec.get("window")
    if isinstance(window, Sequence) and len(window) == 2:
        text += f" over steps {number(window[0])}–{number(window[1])}"
    for word, key in (("from", "window_from"), ("until", "window_until")):
        edge = crossing(spec.get(key), metric)
        if edge:
            text += f" {word} the first {edge}"
    return text


def crossing(spec: Any, default_metric: str) -> str:
    """Readable crossing of a reducer window, e.g. ``sharpness ≥ 0.95·2/η``; ``""`` if none."""
    if not isinstance(spec, Mapping):
        return ""
    side = next((k for k in _SIDES if spec.get(k) is not None), None)
    if side is None:
        return ""
    threshold = spec[side]
    level = expression(threshold) if isinstance(threshold, str) else number(threshold)
    return f"{metric_name(str(spec.get('metric') or default_metric))} {_SIDES[side]} {level}"


def expression(text: str) -> str:
    """Write a reducer expression for the report: ``0.95*2/optimizer.lr`` → ``0.95·2/η``."""
    text = re.sub(r"\boptimizer\.lr\b", "η", text)
    return text.replace("**", "^").replace("*", "·")


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


def short_keys(axes: Sequence[str]) -> dict[str, str]:
    """Name each swept key by its last dotted part when that is unambiguous (``model.width`` → ``width``).

    >>> short_keys(["model.width", "optimizer.lr", "data.n", "model.n"])
    {'model.width': 'width', 'optimizer.lr': 'lr', 'data.n': 'data.n', 'model.n': 'model.n'}
    """
    last = [k.rsplit(".", 1)[-1] for k in axes]
    return {k: s if last.count(s) == 1 else k for k, s in zip(axes, last, strict=True)}


def config_value(item: Any) -> str:
    """Write a config value for a legend: text as it is, numbers to 4 significant digits.

    >>> config_value("gd"), config_value(0.1), config_value(64), config_value(1e-4)
    ('gd', '0.1', '64', '0.0001')
    """
    return number(item) if finite(item) else str(item)


def group(record: TrialRecord, axes: Sequence[str]) -> str:
    """Name a trial's group (its swept values, seed apart) for a legend, e.g. ``width=32, lr=0.1``.

    ``""`` when nothing is swept (all trials differ only in their seed).
    """
    short = short_keys(axes)
    return ", ".join(
        f"{short[k]}={config_value(record.config[k])}" for k in axes if k in record.config
    )


def natural(value: Any) -> tuple[Any, ...]:
    """Sort key: numbers by value before text, text by its numbers' values (``w=32`` < ``w=128``).

    >>> sorted([128, 32, "w=128", "w=32", None, 64.0], key=natural)
    [32, 64.0, 128, None, 'w=32', 'w=128']
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    parts = re.split(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", str(value))
    return (1, 0.0, "", *((0, float(t), "") if i % 2 else (1, 0.0, t) for i, t in enumerate(parts)))


def record_order(axes: Sequence[str]) -> Callable[[TrialRecord], tuple[Any, ...]]:
    """Sort key of trials by their swept values, then seed, numerically (legend order)."""

    def key(record: TrialRecord) -> tuple[Any, ...]:
        return tuple(natural(record.config.get(k)) for k in [*axes, "seed"])

    return key


def shorten(text: str, limit: int = 48) -> str:
    """Cut ``text`` to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def set_note(overrides: Sequence[str] | None) -> str:
    """Say which ``--set`` overrides a stored study ran with; ``""`` for the study as written.

    What every place that names a stored study's verdicts adds (``gdscope show``, ``run``,
    ``verify``, the report): the verdicts are those of the study changed so, not as shipped.

    >>> set_note(["seeds=[0, 1]", "sweep.model.width=[16, 32]"])
    'run with --set seeds=[0, 1] --set sweep.model.width=[16, 32]'
    >>> set_note(())
    ''
    """
    return "run with " + " ".join(f"--set {o}" for o in overrides) if overrides else ""


def one_seed_warning(status: str, seeds: Sequence[Any] | None) -> str:
    """Return the warning a PASS or FAIL gets when it rests on one seed; ``""`` otherwise.

    What every place that shows a verdict says (``gdscope run``, ``verify``, ``show``, the
    report): one seed cannot tell a repeatable result from a lucky draw.

    >>> one_seed_warning("PASS", [3])
    'this PASS rests on one seed (seeds = [3]); run more seeds to see whether it repeats'
    >>> one_seed_warning("PASS", [0, 1]), one_seed_warning("INCONCLUSIVE", [0])
    ('', '')
    """
    if seeds is None or len(seeds) != 1 or status not in ("PASS", "FAIL"):
        return ""
    return (
        f"this {status} rests on one seed (seeds = {list(seeds)}); "
        "run more seeds to see whether it repeats"
    )


def format_against(
    value: float | None, threshold: float, fmt: Callable[[Any], str] = number
) -> str:
    """Format ``value`` as ``fmt`` does, with more digits where it would misread against ``threshold``.

    A number printed beside the threshold it is compared with must land on the same side:
    R² = 0.94997 to 4 significant digits is ``0.95``, which reads as meeting ``R² ≥ 0.95``.
    Significant digits are added until the printed number is on the value's side of
    ``threshold`` (and equal to it only where the value is).

    >>> format_against(0.94997, 0.95), format_against(0.9500004, 0.95), format_against(0.5, 0.95)
    ('0.94997', '0.9500004', '0.5')
    >>> format_against(0.099996, 0.1), format_against(0.95, 0.95), format_against(None, 1.0)
    ('0.099996', '0.95', '–')
    """
    first = fmt(value)
    if value is None or not math.isfinite(value) or value == threshold:
        return first
    for text in [first, *(f"{value:.{digits}g}" for digits in range(5, 18))]:
        try:
            shown = float(text)
        except ValueError:
            continue
        if shown != threshold and (shown < threshold) == (value < threshold):
            return text
    return repr(value)
