"""``gdscope list claims|probes|models|datasets|optimizers``: what gdscope knows, one row each.

``list claims`` reads the catalogue's study files with :mod:`tomllib` and the last verdicts from
the store (read-only), never importing torch, so it answers in a fraction of a second. Names are
never cut: a long cell wraps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import tomllib
import typer
from rich.markup import escape
from rich.table import Table

from gdscope.cli.app import STATUS_STYLE, stdout


def catalogue_claims() -> list[dict[str, Any]]:
    """Every claim of the built-in catalogue: ``claim, study, seed, kind, role, finding``."""
    import gdscope

    folder = Path(gdscope.__file__).parent / "studies" / "catalog"
    rows = []
    for path in sorted(folder.glob("*.toml")):
        study = tomllib.loads(path.read_text(encoding="utf-8"))
        for claim in study.get("claims", []):
            rows.append(
                {
                    "claim": str(claim.get("id", "")),
                    "study": str(study.get("name", path.stem)),
                    "seed": str(study.get("seed_paper", "")),
                    "kind": str(claim.get("kind", "")),
                    "role": str(claim.get("role", "paper")),
                    "finding": bool(claim.get("finding")),
                }
            )
    return rows


def list_claims(
    results: Annotated[
        str, typer.Option(help="results directory for the last verdicts")
    ] = "gdscope-results",
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="print the catalogue page instead (docs/claims.md): each study's setting, "
            "each claim's band, role and finding",
        ),
    ] = False,
) -> None:
    """List every catalogue claim: id, study, seed paper, kind, role and its last verdicts."""
    if markdown:
        from gdscope.cli.claims_doc import claims_markdown

        sys.stdout.write(claims_markdown())
        return
    last: dict[tuple[str, str], list[str]] = {}
    if (Path(results) / "gdscope.sqlite").exists():
        from gdscope.store import Store

        for row in Store(results, read_only=True).verdicts():
            status = f"[{STATUS_STYLE.get(row['status'], 'white')}]{escape(row['status'])}[/]"
            key = (row["study"], row["claim_id"])
            last.setdefault(key, []).append(f"{escape(row['scale'])}: {status}")
    table = _table("claim", "study", "seed", "kind", "role", "last verdicts")
    for row in catalogue_claims():
        verdicts = ", ".join(last.get((row["study"], row["claim"]), [])) or "-"
        table.add_row(
            *(escape(row[k]) for k in ("claim", "study", "seed", "kind", "role")), verdicts
        )
    stdout.print(table)


def list_probes() -> None:
    """List the probes a trial can schedule (``probes.NAME = every``) and the metrics each records."""
    from gdscope.training.scheduled import PROBES

    table = _table("probe", "records")
    for name, probe in PROBES.items():
        metrics = ", ".join(m + "<name>" if m.endswith("/") else m for m in probe.metrics)
        table.add_row(name, escape(metrics))
    stdout.print(table)


def list_models() -> None:
    """List the model kinds (``model.kind``): built-in, ``custom`` and registered, with their options."""
    from gdscope.config.parts import OPTIONS_BY_KIND
    from gdscope.registration import MODEL_REGISTRY, model_kinds

    table = _table("model.kind", "options (model.*)")
    wrapper = "output_activation, output_scale, center_output"
    for kind in model_kinds():
        entry = MODEL_REGISTRY.get(kind)
        if kind == "custom":
            options = f"factory, args, {wrapper}"
        elif kind in OPTIONS_BY_KIND:  # what its builder reads; others are refused
            options = f"{', '.join(OPTIONS_BY_KIND[kind])}, {wrapper}"
        else:  # registered (model_kinds() lists nothing else)
            ref = kind if entry is None else entry.ref
            options = f"args (keyword arguments of {ref}, registered), {wrapper}"
        table.add_row(kind, escape(options))
    stdout.print(table)


def list_datasets() -> None:
    """List the data sets (``data.name``) with the first line of each loader's docstring."""
    from gdscope.data import DATASETS
    from gdscope.registration import DATASET_REGISTRY

    table = _table("data.name", "what")
    for name, loader in DATASETS.items():
        entry = DATASET_REGISTRY.get(name)
        what = _first_line(loader)
        if entry is not None:
            what = f"{what} ({entry.ref}, registered)" if what else f"{entry.ref} (registered)"
        table.add_row(name, escape(what))
    stdout.print(table)


def _first_line(function: Any) -> str:
    lines = (getattr(function, "__doc__", None) or "").strip().splitlines()
    return lines[0] if lines else ""


def list_optimizers() -> None:
    """List the optimizers (``optimizer.name``)."""
    from gdscope.optim.registry import OPTIMIZERS

    table = _table("optimizer.name", "what")
    for name, make in OPTIMIZERS.items():
        table.add_row(name, escape(_first_line(make)))
    stdout.print(table)


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
