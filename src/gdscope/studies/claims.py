r"""Claim kinds: what a study's results must show, declared as data and judged on records.

Every kind is a frozen pydantic model (``kind`` is the discriminator) with
``judge(records, axes=()) -> Verdict``. Common fields: ``id``, ``description``, ``reference``,
``where`` (keep records whose config matches, e.g. ``{"optimizer.name" = "gd"}``; a list value
means "one of") and ``allow_diverged`` (reduce diverged / failed trials too, instead of making
the claim INCONCLUSIVE). Bands are data: the code never moves them.

=============  ==========================================================================
kind           PASS when
=============  ==========================================================================
power_law      the bootstrap CI of the median log–log exponent (over seeds) ⊂ ``band``
slope          the same for a linear slope (``log_x`` / ``log_y`` optional)
bound          ``lhs ≤ rhs·(1 + slack) + atol`` at every common checkpoint of every trial
monotone       median Spearman ρ of y vs x ≥ ``rho_min`` (≤ −``rho_min`` when decreasing)
reaches        ``metric`` crosses ``threshold`` within ``budget`` in ≥ ``fraction`` of trials
compare        CI of statistic(A) − statistic(B) (or its absolute value) ⊂ ``band``
paired_compare the same for groups measured on the same seeds: CI (over seeds) of the median
               per-seed difference of the two groups' fitted exponents / slopes ⊂ ``band``
agrees         ``|y1 − y2| ≤ atol + rtol·|y2|`` for every trial
within         the reduction ``y`` lies in ``band`` for every trial
optimum_shift  CI of the spread (octaves) of the per-group argmin ``x*`` ⊂ ``band``
seed_spread    per-group statistic over seeds (cv, min/mean, mean): CI of its log–log
               exponent vs the group ⊂ ``band``, or every group's value in ``band``
threshold      per (group, seed) the smallest ``x`` from which ``y`` reaches ``level``
               (e.g. the width that fits); CI of its log–log exponent vs the group ⊂ ``band``
               (a cell not bracketed by the grid bounds the exponent, never dropped)
=============  ==========================================================================

FAIL when the CI lies outside the band (or the inequality / fraction is not met);
INCONCLUSIVE when the evidence cannot decide: too few points, too short a range, a poor fit, a
nan reduction (diverged run, rejected rate fit) — the reason names the trials.

The kinds live in :mod:`~gdscope.studies.fitted` (power_law, slope, compare),
:mod:`~gdscope.studies.checkpoints` (bound, reaches), :mod:`~gdscope.studies.monotone`,
:mod:`~gdscope.studies.pointwise` (agrees, within), :mod:`~gdscope.studies.optimum`,
:mod:`~gdscope.studies.spread` and :mod:`~gdscope.studies.threshold`; this module gathers them
into the ``Claim`` union.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from gdscope.studies.checkpoints import BoundClaim, ReachesClaim
from gdscope.studies.fitted import (
    CompareClaim,
    Measure,
    MedianMeasure,
    PowerLawClaim,
    PowerLawMeasure,
    SlopeClaim,
    SlopeMeasure,
)
from gdscope.studies.monotone import MonotoneClaim
from gdscope.studies.optimum import OptimumShiftClaim
from gdscope.studies.paired import PairedCompareClaim
from gdscope.studies.pointwise import AgreesClaim, WithinClaim
from gdscope.studies.spread import SeedSpreadClaim
from gdscope.studies.threshold import ThresholdClaim

__all__ = [
    "CLAIM_KINDS",
    "AgreesClaim",
    "BoundClaim",
    "Claim",
    "ClaimModel",
    "CompareClaim",
    "Measure",
    "MedianMeasure",
    "MonotoneClaim",
    "OptimumShiftClaim",
    "PairedCompareClaim",
    "PowerLawClaim",
    "PowerLawMeasure",
    "ReachesClaim",
    "SeedSpreadClaim",
    "SlopeClaim",
    "SlopeMeasure",
    "ThresholdClaim",
    "WithinClaim",
]


ClaimModel = (
    PowerLawClaim
    | SlopeClaim
    | BoundClaim
    | MonotoneClaim
    | ReachesClaim
    | CompareClaim
    | PairedCompareClaim
    | AgreesClaim
    | WithinClaim
    | OptimumShiftClaim
    | SeedSpreadClaim
    | ThresholdClaim
)
Claim = Annotated[ClaimModel, Field(discriminator="kind")]
CLAIM_KINDS: dict[str, type[BaseModel]] = {
    "power_law": PowerLawClaim,
    "slope": SlopeClaim,
    "bound": BoundClaim,
    "monotone": MonotoneClaim,
    "reaches": ReachesClaim,
    "compare": CompareClaim,
    "paired_compare": PairedCompareClaim,
    "agrees": AgreesClaim,
    "within": WithinClaim,
    "optimum_shift": OptimumShiftClaim,
    "seed_spread": SeedSpreadClaim,
    "threshold": ThresholdClaim,
}
