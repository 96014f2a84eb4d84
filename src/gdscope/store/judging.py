"""A study judged on its stored trials: which trials the store links to it, and its verdicts.

What a run and ``verify`` (:mod:`gdscope.api`) share: :func:`linked` reads the trials the store
links to a study at one scale (``study_trials``: those of its latest run, kept by
:meth:`~gdscope.store.Store.record_study`), :func:`stored_count` how many of some hashes are
stored, and :func:`judge` judges the claims on records and stores the verdicts, each
INCONCLUSIVE where fewer trials are stored than the study has. Nothing here reads a user's file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from gdscope.store import rows as _rows
from gdscope.store.connection import connect
from gdscope.store.database import Store
from gdscope.studies.spec import Study, judge_study
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict

__all__ = ["judge", "linked", "partial", "stored_count"]


def linked(store: Store, study: str, scale: str) -> set[str]:
    """Return the hashes of the trials the store links to ``study`` at ``scale``."""
    with connect(store.path, read_only=store.read_only) as conn:
        rows = conn.execute(
            "SELECT hash FROM study_trials WHERE study = ? AND scale = ?", (study, scale)
        )
        return {row[0] for row in rows}


def stored_count(store: Store, hashes: Iterable[str]) -> int:
    """Return how many of ``hashes`` are stored (failed trials included), reading no series."""
    where, args = _rows.membership(None, None, hashes)
    with connect(store.path, read_only=store.read_only) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM trials t WHERE 1 {where}", args).fetchone()[0]


def judge(
    store: Store, study: Study, scale: str, records: Sequence[TrialRecord], trials: int
) -> list[Verdict]:
    """Judge ``study`` on ``records`` of its ``trials``; store the verdicts unless read-only.

    With fewer records than ``trials`` (an interrupted run), every verdict is INCONCLUSIVE and
    says how many are stored (:func:`partial`).
    """
    verdicts = judge_study(study, records)
    if len(records) < trials:
        verdicts = [partial(verdict, len(records), trials) for verdict in verdicts]
    if not store.read_only:
        store.record_verdicts(study.name, scale, verdicts)
    return verdicts


def partial(verdict: Verdict, stored: int, trials: int) -> Verdict:
    """Return ``verdict`` as INCONCLUSIVE, its reason saying that only ``stored`` of ``trials`` are."""
    reason = (
        f"only {stored} of {trials} trials are stored (run the study again to finish it); "
        f"{verdict.reason}"
    )
    return dataclasses.replace(verdict, status="INCONCLUSIVE", reason=reason)
