"""``Verdict``: what judging one claim on a study's records concluded, and why.

Also the small shared pieces of judging: selecting records with ``where``, naming a trial in a
reason, and turning a confidence interval and a band into a status.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gdscope.studies.table import TrialRecord

Status = Literal["PASS", "FAIL", "INCONCLUSIVE", "REPORTED"]
Role = Literal["paper", "sanity"]
_LISTED = 3


@dataclass(frozen=True)
class Verdict:
    """The judgement of one claim.

    Attributes:
        claim_id: the claim's id.
        status: ``"PASS"``, ``"FAIL"`` or ``"INCONCLUSIVE"``; ``"REPORTED"`` for an exploratory
            claim (``gate = false``), whose reason says what its band would give.
        statistic: the number the claim is judged on (median exponent, worst ratio, fraction...).
        ci: its confidence interval over seeds, or ``None`` for kinds without one.
        band: the claimed band (data from the study file), or ``None``.
        n_points: number of trials (or points) that entered the statistic.
        reason: why this status, always filled.
        evidence: the points used (``{"x": .., "y": .., "seed": .., "trial": ..}`` and so on).
        reference: the claim's reference, if any.
        description: the claim's description.
        role: ``"paper"``, or ``"sanity"`` for an instrument check (an identity or a closed-form
            recursion), counted apart from the paper claims.
        finding: the study file's explanation of a FAIL or INCONCLUSIVE, if any.

    """

    claim_id: str
    status: Status
    statistic: float
    ci: tuple[float, float] | None
    band: tuple[float, float] | None
    n_points: int
    reason: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    reference: str | None = None
    description: str = ""
    role: Role = "paper"
    finding: str | None = None


def select(records: Sequence[TrialRecord], where: Mapping[str, Any]) -> list[TrialRecord]:
    """Return the records whose config matches ``where`` (value equal, or in a given list)."""
    return [r for r in records if all(_matches(r.config, k, v) for k, v in where.items())]


def pair_with_baseline(
    records: Sequence[TrialRecord], baseline: Mapping[str, Any]
) -> list[tuple[TrialRecord, TrialRecord | None]] | None:
    """Pair every record not matching ``baseline`` with its baseline record, or None.

    A record's baseline is the record matching ``baseline`` whose config is the same except for
    the baseline's keys (e.g. residual = false at the same depth and seed). Returns None when no
    record matches ``baseline`` at all.
    """
    bases = select(records, baseline)
    if not bases:
        return None

    def rest(config: Mapping[str, Any]) -> str:
        return json.dumps(
            {k: v for k, v in config.items() if k not in baseline}, sort_keys=True, default=str
        )

    by_rest = {rest(b.config): b for b in bases}
    return [(r, by_rest.get(rest(r.config))) for r in records if all(r is not b for b in bases)]


def _matches(config: Mapping[str, Any], key: str, wanted: Any) -> bool:
    if key not in config:
        return False
    if isinstance(wanted, list):
        return config[key] in wanted
    return config[key] == wanted


def no_match_reason(records: Sequence[TrialRecord], where: Mapping[str, Any]) -> str:
    """Say that nothing matched ``where``, listing the values each key has in the records."""
    if not records:
        return "no trial records to judge"
    seen = []
    for key in where:
        values = sorted({repr(r.config[key]) for r in records if key in r.config})
        seen.append(f"{key} ∈ {{{', '.join(values)}}}" if values else f"{key}: not a config key")
    return f"no trial matches where={dict(where)!r} ({'; '.join(seen)})"


def label(record: TrialRecord, axes: Sequence[str]) -> str:
    """Name a trial by its swept values and seed, e.g. ``data.n=8, seed=0``."""
    keys = [k for k in axes if k in record.config]
    if "seed" in record.config:
        keys.append("seed")
    if not keys:
        return f"trial {record.hash[:8]}"
    return ", ".join(f"{k}={record.config[k]!r}" for k in keys)


def listing(problems: Sequence[str]) -> str:
    """Join the first few problems, counting the rest."""
    shown = "; ".join(problems[:_LISTED])
    more = len(problems) - _LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def band_status(lo: float, hi: float, band: tuple[float, float]) -> tuple[Status, str]:
    """Judge a confidence interval ``[lo, hi]`` against a band ``(a, b)``; say where it lies.

    PASS when the CI lies inside the band, FAIL when it lies entirely outside, INCONCLUSIVE
    when it straddles an edge or is NaN. ``±inf`` makes a band one-sided (``(-inf, -0.3)``:
    "slope ≤ −0.3").

    >>> band_status(-1.05, -0.95, (-1.1, -0.9))
    ('PASS', 'inside')
    >>> band_status(-1.0, -0.8, (-1.1, -0.9))
    ('INCONCLUSIVE', 'straddles an edge of')

    Raises:
        ValueError: if the band is not an ordered pair, or ``lo > hi``.

    """
    a, b = band
    if not a <= b:
        raise ValueError(f"band must be (low, high) with low ≤ high, got {band!r}")
    if math.isnan(lo) or math.isnan(hi):
        return "INCONCLUSIVE", "undefined vs"
    if lo > hi:
        raise ValueError(f"lo must be ≤ hi, got lo={lo!r}, hi={hi!r}")
    if a <= lo and hi <= b:
        return "PASS", "inside"
    if hi < a or lo > b:
        return "FAIL", "outside"
    return "INCONCLUSIVE", "straddles an edge of"


def fmt(value: float) -> str:
    """Short number for reasons."""
    return f"{value:.4g}"


def fmt_band(band: tuple[float, float]) -> str:
    """Format a band as ``[a, b]`` (``±inf`` spelled out)."""
    return f"[{fmt(band[0])}, {fmt(band[1])}]"
