"""The table ``gdscope train`` prints of a run's probes, and the line naming what it leaves out.

The table holds the global metrics (no ``/`` family) at up to 12 checkpoints of the sparsest
schedule, and at step 0 wherever a metric was measured there; a metric not measured at a
checkpoint shows ``–``. A metric that is nan at every checkpoint (a probe outside the setting it
is defined for, e.g. ``du_bound`` on an MLP) is left out of the table; :func:`unmeasured_line`
names its probe once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rich.table import Table

from gdscope.cli.app import fmt

__all__ = ["NOT_MEASURED", "trace_table", "unmeasured_line"]

NOT_MEASURED = "–"
"""A checkpoint at which a metric was not measured."""
NEGATIVE_COLUMN = "density mass < -{:g} max|node|"
"""The column of ``hessian_density``'s weight below ``−τ·max|θ|`` (:func:`_density_summary`)."""


def trace_table(trace: Any, rows: int = 12, wide: int = 5) -> Table:
    """Tabulate the global metrics at up to ``rows`` checkpoints of the sparsest schedule.

    With more than ``wide`` metrics the table is transposed (one row per metric) so that it fits.
    """
    lookup = {m: v for m, v in _global_metrics(trace).items() if not _all_nan(v)}
    metrics = list(lookup)
    recorded = [list(lookup[m]) for m in metrics]
    every_step = {s for r in recorded for s in r}
    sparsest = min(recorded, key=len) if recorded else []
    steps = sorted({*sparsest, min(every_step)} if len(sparsest) > 1 else every_step)
    limit = rows if len(metrics) <= wide else 5
    if len(steps) > limit:
        steps = _evenly(steps, limit)
    if len(metrics) <= wide:
        table = Table("step", *metrics, box=None, header_style="bold")
        for step in steps:
            table.add_row(str(step), *(_cell(lookup[m], step) for m in metrics))
        return table
    table = Table(box=None, header_style="bold")
    table.add_column("metric \\ step", no_wrap=True)
    for step in steps:
        table.add_column(str(step), no_wrap=True)
    for m in metrics:
        table.add_row(m, *(_cell(lookup[m], step) for step in steps))
    return table


def _evenly(steps: list[int], limit: int) -> list[int]:
    """Return at most ``limit`` of ``steps``: every ``s``-th from the first, and the last.

    ``s`` is the smallest stride that fits (7 checkpoints every 50 steps into 5 columns: 0, 100,
    200, 300, not 0, 100, 150, 200, 300).

    >>> _evenly([0, 50, 100, 150, 200, 250, 300], 5)
    [0, 100, 200, 300]
    >>> _evenly(list(range(10)), 4)
    [0, 3, 6, 9]
    >>> _evenly(list(range(11)), 4)
    [0, 4, 8, 10]
    """
    stride = -(-(len(steps) - 1) // (limit - 1))
    chosen = steps[::stride]
    if chosen[-1] != steps[-1]:
        chosen = [*chosen[: limit - 1], steps[-1]]
    return chosen


def unmeasured_line(trace: Any, probes: Iterable[str]) -> str:
    """Name the probes (or their metrics) left out of :func:`trace_table`; ``""``: none was.

    A probe all of whose global metrics are nan at every checkpoint is named alone (``du_bound``),
    one with only some of them so is named with those (``ntk_spectrum (ntk_kappa)``). ``probes``
    is the run's schedule, which tells the probe of each metric.
    """
    from gdscope.training import PROBES  # torch: not for `gdscope list`

    lookup = _global_metrics(trace)
    unnamed = [m for m, values in lookup.items() if _all_nan(values)]
    named: list[str] = []
    for probe in probes:
        own = [m for m in lookup if m in PROBES[probe].metrics]
        nan = [m for m in own if m in unnamed]
        if nan:
            named.append(probe if nan == own else f"{probe} ({', '.join(nan)})")
            unnamed = [m for m in unnamed if m not in nan]
    if not named and not unnamed:
        return ""
    return (
        "not in the table, nan at every checkpoint (a probe records nan where it does not "
        f"apply to the run): {', '.join(named + unnamed)}"
    )


def _cell(values: dict[int, float], step: int) -> str:
    return fmt(values[step]) if step in values else NOT_MEASURED


def _all_nan(values: dict[int, float]) -> bool:
    return all(math.isnan(v) for v in values.values())


def _global_metrics(trace: Any) -> dict[str, dict[int, float]]:
    """Every global metric's ``{step: value}`` (no ``/`` family), with ``hessian_density``'s summary."""
    lookup = {m: dict(zip(*trace.records[m], strict=True)) for m in trace.metrics if "/" not in m}
    lookup.update(_density_summary(trace.records))
    return lookup


def _density_summary(records: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Return ``hessian_density`` as two columns: its top node (≈ λ_max), its negative mass.

    At each checkpoint the recorded nodes and weights are read back as a
    :class:`~gdscope.probes.spectral_density.SpectralDensity`: the top node is its largest Ritz
    value (padding nodes, weight 0 where a probe's Lanczos run stopped early, left out), the
    negative mass its :meth:`~gdscope.probes.spectral_density.SpectralDensity.negative_mass`,
    the weight of the nodes below ``−τ·max|θ|`` (``τ`` = ``NEGATIVE_TAU``, 0.03). The weight
    of all negative nodes is not shown: with a large null space it swings between about 0 and
    1 as the node carrying the null space lands on either side of 0 (see
    :mod:`gdscope.probes.spectral_density`, "Near 0").
    """
    import torch  # torch: not for `gdscope list`

    from gdscope.probes.spectral_density import NEGATIVE_TAU, SpectralDensity
    from gdscope.training.curvature import DENSITY_FAMILY

    cells: dict[int, dict[tuple[int, int], tuple[float, float]]] = {}
    for name, (steps, values) in records.items():
        if name.startswith(DENSITY_FAMILY + "node_"):
            probe, k = (int(part) for part in name.split("_")[-2:])
            weights = dict(zip(*records[name.replace("/node_", "/weight_")], strict=True))
            for step, value in zip(steps, values, strict=True):
                cells.setdefault(step, {})[probe, k] = (value, weights[step])
    top: dict[int, float] = {}
    negative: dict[int, float] = {}
    for step, cell in cells.items():
        shape = (max(p for p, _ in cell) + 1, max(k for _, k in cell) + 1)
        nodes = torch.zeros(shape, dtype=torch.float64)
        weights = torch.zeros_like(nodes)
        for (probe, k), (node, weight) in cell.items():
            nodes[probe, k], weights[probe, k] = node, weight
        slq = SpectralDensity(nodes, weights)
        top[step], negative[step] = slq.extremes()[1], slq.negative_mass()
    if not cells:
        return {}
    return {"density top node": top, NEGATIVE_COLUMN.format(NEGATIVE_TAU): negative}
