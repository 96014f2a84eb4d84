"""The HTML report of a results directory: one self-contained file a researcher can mail.

:func:`render_report` reads the SQLite store of a results directory (never trains, imports no
torch) and returns the page: the verdict table (status, statistic, CI, band, reference,
provenance), per study a foldable section (open when a paper claim is FAIL or INCONCLUSIVE) with
its training curves (and sharpness against 2/η, NTK λ_min against width where recorded), per claim the figure of its kind (a fit with its points, CI and band; values
against a band; curves against a threshold...), figures as inline SVG (searchable text), every
stored string escaped, and the environment (versions, device, dates) at the end.
:func:`write_report` writes it to a file; :func:`write_figures` writes every figure as SVG and
PDF files for a paper.

>>> from gdscope.report import write_report
>>> write_report("gdscope-results", "report.html")  # doctest: +SKIP
"""

from gdscope.report.render import render_report, write_figures, write_report

__all__ = ["render_report", "write_figures", "write_report"]
