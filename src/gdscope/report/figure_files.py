"""Every figure of the report as SVG and PDF files, for a paper (``gdscope report DIR --figures OUT``).

Files are named ``<study number>-<study>-<scale>-<figure number>-<title>.{svg,pdf}`` in the
order of the page, with every character outside ``[A-Za-z0-9._-]`` of a stored name replaced,
so a study named ``../x`` writes inside ``OUT``. Each file is written to a new temporary file in
``OUT`` and renamed over its name (:func:`gdscope._output.replacing`): nothing else in ``OUT``
is touched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gdscope._output import OutputError, replacing, reserved
from gdscope.report.canvas import Chart
from gdscope.report.collect import StudyView
from gdscope.report.figures import claim_charts, study_charts

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 60) -> str:
    """Return a file-name-safe form of ``text``.

    >>> slug("B2: rate/κ ratio → 1")
    'B2-rate-ratio-1'
    """
    return _UNSAFE.sub("-", text).strip("-.")[:limit] or "figure"


def study_figures(index: int, study: StudyView) -> list[tuple[str, bytes]]:
    """Return ``[(file name, bytes)]`` of every figure of ``study`` (page order), SVG and PDF."""
    charts: list[Chart] = study_charts(study, files=True)
    for claim in study.claims:
        charts += claim_charts(claim, study, files=True)
    prefix = f"{index + 1:02d}-{slug(study.name)}-{slug(study.scale)}"
    return [
        (f"{prefix}-{number:02d}-{slug(chart.title)}.{kind}", data)
        for number, chart in enumerate(charts, start=1)
        for kind, data in chart.files.items()
    ]


def write_figures(results_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> list[Path]:
    """Write every figure of ``results_dir``'s report into the folder ``out``; return the paths.

    Raises:
        StoreError: there is no gdscope store in ``results_dir``.
        OutputError: ``out`` is a file, or a results store's file or lock.

    """
    from gdscope.report.collect import collect
    from gdscope.report.html import map_studies
    from gdscope.store import Store

    folder = Path(out)
    if reserved(folder):  # a folder at a store's file or lock would break the store
        raise OutputError(f"--figures={out} is {reserved(folder)}; give another folder")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--figures={out} is a file; give a folder")
    studies = collect(Store(results_dir, read_only=True))
    written = []
    for files in map_studies(study_figures, studies):
        for name, data in files:
            with replacing(folder / name, "--figures", binary=True) as file:
                file.write(data)
            written.append(folder / name)
    return written
