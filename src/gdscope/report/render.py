"""Render a results directory's report and write it, or its figures, to files.

What :mod:`gdscope.report` exports; each function imports the drawing code only when called,
so importing the package loads neither matplotlib nor torch.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

__all__ = ["render_report", "write_figures", "write_report"]


def render_report(
    results_dir: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    fmt: Literal["html", "markdown"] = "html",
) -> str:
    """Return the HTML report of the results store in ``results_dir`` (or its Markdown verdicts).

    Args:
        results_dir: a results directory written by ``gdscope run`` (holds ``gdscope.sqlite``).
        now: the date printed as the report's writing date (default: now, UTC).
        fmt: ``"html"`` (the page), or ``"markdown"``: the verdicts of every stored study and
            scale with wall time, date, machine and findings (:mod:`gdscope.report.markdown`;
            ``docs/verdicts.md`` is written this way).

    Raises:
        StoreError: there is no gdscope store in ``results_dir``, or it is of another version.

    """
    from gdscope.report.collect import collect
    from gdscope.report.html import page
    from gdscope.store import Store

    store = Store(results_dir, read_only=True)
    if fmt == "markdown":
        from datetime import timezone

        from gdscope.report.markdown import markdown_page

        when = now or datetime.now(timezone.utc)
        return markdown_page(collect(store), str(results_dir), when)
    return page(collect(store), str(results_dir), now)


def write_report(
    results_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    fmt: Literal["html", "markdown"] = "html",
) -> Path:
    """Write the report of ``results_dir`` to ``output`` (parents created); return its path.

    ``fmt`` as in :func:`render_report`.

    The file is written to a new temporary file beside ``output`` and renamed over it
    (:func:`gdscope._output.replacing`), so a reader never sees half a report; ``output`` may
    not be a results store or a folder (:class:`gdscope._output.OutputError`, a ``ValueError``).
    """
    from gdscope._output import check_target, replacing

    target = check_target(output, "--output")  # before anything is read or drawn
    text = render_report(results_dir, now=now, fmt=fmt)
    with replacing(target, "--output") as file:
        file.write(text)
    return target


def write_figures(results_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> list[Path]:
    """Write every figure of ``results_dir``'s report as SVG and PDF files into ``out``.

    See :mod:`gdscope.report.figure_files`. Returns the paths written, in page order.
    """
    from gdscope.report.figure_files import write_figures as write

    return write(results_dir, out)
