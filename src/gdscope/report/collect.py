"""What the report shows, read from a results store through ``Store``'s public methods.

One :class:`StudyView` per stored ``(study, scale)``: the study's spec, its trials (rows and
series) and one :class:`ClaimView` per claim, pairing the claim's spec (its kind and fields) with
its stored verdict. Claims judged but missing from the spec, and spec claims not judged yet, are
kept too, so nothing stored is left out of the page. Monitored runs (``gdscope.monitor``) come
after the studies, one view per run name (scale ``"monitor"``, its attempts as trials, no claims).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gdscope.report import labels
from gdscope.store import Store
from gdscope.studies import Study, StudyError
from gdscope.studies.table import TrialRecord


@dataclass(frozen=True)
class ClaimView:
    """One claim of a study: its spec (``{}`` if unknown) and its stored verdict (or ``None``)."""

    claim_id: str
    spec: Mapping[str, Any]
    verdict: Mapping[str, Any] | None

    @property
    def kind(self) -> str:
        """The claim kind (``power_law``, ``within``...), ``""`` when the spec is unknown."""
        return str(self.spec.get("kind", ""))

    @property
    def status(self) -> str:
        """``PASS``/``FAIL``/``INCONCLUSIVE``/``REPORTED``, or ``NOT JUDGED`` without a verdict."""
        return str(self.verdict["status"]) if self.verdict else "NOT JUDGED"

    @property
    def evidence(self) -> list[dict[str, Any]]:
        """The verdict's evidence rows (dicts only)."""
        rows = self.verdict.get("evidence") if self.verdict else None
        return [e for e in rows if isinstance(e, dict)] if isinstance(rows, list) else []

    @property
    def description(self) -> str:
        """The claim's description from the spec."""
        return str(self.spec.get("description") or "")

    @property
    def role(self) -> str:
        """``"paper"``, or ``"sanity"`` for an instrument check (from the spec)."""
        return str(self.spec.get("role") or "paper")

    @property
    def finding(self) -> str:
        """The study file's explanation of a FAIL or INCONCLUSIVE, ``""`` if none."""
        return " ".join(str(self.spec.get("finding") or "").split())


@dataclass(frozen=True)
class StudyView:
    """One study at one scale, as stored."""

    name: str
    scale: str
    spec: Mapping[str, Any]
    claims: list[ClaimView]
    records: list[TrialRecord] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    runs: Mapping[str, Any] = field(default_factory=dict)
    """``{"first_run", "last_run"}``: when the study's first and latest runs started."""

    @property
    def title(self) -> str:
        """The study's title (may be empty)."""
        return str(self.spec.get("title") or "")

    @property
    def reference(self) -> str:
        """The study's reference (may be empty)."""
        return str(self.spec.get("reference") or "")

    @property
    def provenance(self) -> str:
        """Where the claim comes from: ``paper`` or ``designed`` (may be empty)."""
        return str(self.spec.get("provenance") or "")

    @property
    def description(self) -> str:
        """The study's description (may be empty)."""
        return str(self.spec.get("description") or "")

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``--set`` overrides the study ran with (none: as written)."""
        return tuple(str(o) for o in self.spec.get("overrides") or ())

    @property
    def seeds(self) -> list[int] | None:
        """The seeds of the study at this scale (:func:`scaled_seeds`)."""
        return scaled_seeds(self.spec, self.scale)

    @property
    def axes(self) -> list[str]:
        """Config keys that vary between the study's trials (seed aside)."""
        return labels.varying_keys(self.records)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Trial rows with status ``failed``."""
        return [t for t in self.trials if t.get("status") == "failed"]


def scaled_seeds(spec: Mapping[str, Any], scale: str) -> list[int] | None:
    """Return the seeds a stored study spec runs with at ``scale`` (scale and ``--set`` applied).

    ``None`` where the spec is missing or no longer valid (verdicts stored without it).
    """
    if not spec:
        return None
    try:
        return list(Study.model_validate(spec).with_scale(scale).seeds)
    except (ValueError, StudyError):
        return None


def collect(store: Store) -> list[StudyView]:
    """Read every stored study (and every study that only has verdicts), then every monitored run."""
    return _studies(store) + _monitor_runs(store)


def _monitor_runs(store: Store) -> list[StudyView]:
    return [
        StudyView(
            name=row["name"],
            scale=row["scale"],
            spec=row.get("spec") or {},
            claims=[],
            records=store.records(row["name"], row["scale"]),
            trials=store.trials(row["name"], row["scale"]),
            runs={k: row.get(k) for k in ("first_run", "last_run")},
        )
        for row in store.studies(monitored=True)
    ]


def _studies(store: Store) -> list[StudyView]:
    rows = store.studies()
    specs = {(s["name"], s["scale"]): s.get("spec") or {} for s in rows}
    runs = {(s["name"], s["scale"]): {k: s.get(k) for k in ("first_run", "last_run")} for s in rows}
    verdicts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in store.verdicts():
        verdicts.setdefault((row["study"], row["scale"]), []).append(row)
    keys = sorted(set(specs) | set(verdicts))
    return [
        StudyView(
            name=name,
            scale=scale,
            spec=specs.get((name, scale), {}),
            claims=_claims(specs.get((name, scale), {}), verdicts.get((name, scale), [])),
            records=store.records(name, scale),
            trials=store.trials(name, scale),
            runs=runs.get((name, scale), {}),
        )
        for name, scale in keys
    ]


def _claims(spec: Mapping[str, Any], verdicts: list[dict[str, Any]]) -> list[ClaimView]:
    """Spec claims in spec order with their verdicts, then verdicts of claims not in the spec."""
    by_id = {str(v["claim_id"]): v for v in verdicts}
    specs = [c for c in spec.get("claims") or [] if isinstance(c, Mapping)]
    out = [ClaimView(str(c.get("id", "")), c, by_id.pop(str(c.get("id", "")), None)) for c in specs]
    out += [ClaimView(claim_id, {}, v) for claim_id, v in by_id.items()]
    return out
