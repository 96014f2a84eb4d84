"""Helpers of the claim tests: synthetic trial records with known exponents, one claim judged."""

from __future__ import annotations

import math

import numpy as np
from pydantic import TypeAdapter

from gdscope.studies import TrialRecord
from gdscope.studies.claims import Claim

CLAIM = TypeAdapter(Claim)
WIDTHS = [8, 16, 32, 64, 128, 256]
SEEDS = [0, 1, 2]


def record(
    config: dict, series: dict | None = None, status: str = "completed", reason: str = ""
) -> TrialRecord:
    series = {
        k: (np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
        for k, (s, v) in (series or {}).items()
    }
    return TrialRecord(
        hash=f"h{abs(hash(tuple(sorted(config.items())))):x}",
        config=config,
        status=status,
        series=series,
        reason=reason,
    )


def power_records(
    exponent: float, *, noise: float = 0.02, widths=WIDTHS, extra: dict | None = None
) -> list[TrialRecord]:
    """``final(loss) = 3 · width^exponent · e^(noise)`` for every width and seed."""
    rng = np.random.default_rng(0)
    out = []
    for seed in SEEDS:
        for width in widths:
            y = 3.0 * width**exponent * math.exp(noise * rng.standard_normal())
            config = {"model.width": width, "seed": seed, **(extra or {})}
            out.append(record(config, {"loss": ([0, 10], [1.0, y])}))
    return out


def judge(spec: dict, records: list[TrialRecord]):
    return CLAIM.validate_python({"id": "c", **spec}).judge(records, ["model.width"])


POWER = {"kind": "power_law", "x": "model.width", "y": {"reduce": "final", "metric": "loss"}}
