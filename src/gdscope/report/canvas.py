"""Drawing primitives shared by the report's figures: a figure, its vector graphics, axes helpers.

Figures are ``matplotlib.figure.Figure`` objects on an explicit Agg canvas: no pyplot, no
global backend switch, nothing left open. :class:`Chart` is what the page embeds: inline SVG
(:mod:`~gdscope.report.vector`), and on request the figure's SVG and PDF files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from gdscope.report import labels, vector

WIDTH, HEIGHT, DPI = 5.6, 3.5, 110
BAND_COLOR = "#2ca02c"
MAX_LINES = 24
"""Curves drawn per panel at most; more trials are thinned evenly (the caption says so)."""
DECIMATE_BUCKETS = 300
"""Runs of consecutive points a drawn curve keeps (about one per horizontal pixel)."""

LEGEND_LIMIT = MAX_LINES + 6
"""Most entries a legend lists (one per group drawn, and the decorations); with more, none."""
_FEW_TICKS = 3
"""A log axis with fewer labelled ticks gets ticks at 1, 2 and 5 of each decade, not only at 10ⁿ."""
_LOG_LABELS = FuncFormatter(lambda value, _: f"{value:g}")
"""Tick labels of a log axis: ``0.01``, ``10``, ``1e+06`` (the default writes mathtext)."""

_STYLE: dict[Any, Any] = {
    "text.parse_math": False,  # stored strings are text: a "$" must never start mathtext
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
}


@dataclass(frozen=True)
class Chart:
    """One rendered figure: a title, a caption saying what it shows, and inline SVG.

    ``files`` holds ``{"svg": document, "pdf": bytes}`` when the figure was drawn for files
    (``render(..., files=True)``), else it is empty.
    """

    title: str
    caption: str
    svg: str
    files: dict[str, bytes] = field(default_factory=dict)


def figure(height: float = HEIGHT, left: float = 0.8) -> tuple[Figure, Axes]:
    """Make a figure with one axes in the report's style; ``left``: y-label margin (inches).

    Margins are fixed (no constrained layout, which would double the drawing time).
    """
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    bottom = 0.5 / height
    fig.subplots_adjust(
        left=left / WIDTH, right=1 - 0.15 / WIDTH, bottom=bottom, top=1 - 0.12 / height
    )
    ax = fig.add_subplot()
    ax.grid(True, which="major", alpha=0.3, linewidth=0.6)
    return fig, ax


Drawn = tuple[Figure, str, str]
"""What a figure builder returns: the figure, its title and its caption."""


def render(build: Callable[..., Drawn | None], *args: Any, files: bool = False) -> Chart | None:
    """Call ``build(*args)`` in the report's style and render its figure to a :class:`Chart`.

    ``None`` when the builder finds nothing to draw. A builder that raises gives a small figure
    naming the error instead, so one odd stored value never stops the whole report. With
    ``files``, the chart also carries the figure as SVG and PDF documents.
    """
    with matplotlib.rc_context(_STYLE), np.errstate(all="ignore"):
        try:
            drawn = build(*args)
            if drawn is None:
                return None
            fig, title, caption = drawn
            return _chart(fig, title, caption, files)
        except Exception as err:  # a report must still be written; the figure says what failed
            why = f"{type(err).__name__}: {err}"
            return message("figure not drawn", "this figure could not be drawn", why, files)


def _chart(fig: Figure, title: str, caption: str, files: bool) -> Chart:
    """Render ``fig`` (inline SVG, and with ``files`` its SVG and PDF documents) and release it."""
    plain_log_axes(fig)
    document = vector.svg_document(fig)
    written = {"svg": document.encode(), "pdf": vector.pdf_document(fig)} if files else {}
    fig.clear()
    return Chart(title, caption, vector.inline(document, title), written)


def plain_log_axes(fig: Figure) -> None:
    """Give every log axis of ``fig`` plain-number decade labels and no minor ticks.

    Mathtext is off (``text.parse_math``), so the default mathtext labels of a log axis
    would print as their source text; minor labels (5 × 10⁻²...) crowd the margins, and the
    minor marks were most of a figure's drawing time.
    """
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                low, high = sorted(abs(v) for v in axis.get_view_interval())
                shown = [t for t in axis.get_majorticklocs() if low <= t <= high]
                if len(shown) < _FEW_TICKS:  # 32…512 in base 10: only 100; now 50, 100, 200, 500
                    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_minor_locator(NullLocator())
                axis.set_major_formatter(_LOG_LABELS)


def message(title: str, text: str, caption: str, files: bool = False) -> Chart:
    """Draw a small figure that only says ``text`` (nothing to draw, or drawing failed)."""
    with matplotlib.rc_context(_STYLE):
        fig, ax = figure(height=1.0)
        ax.axis("off")
        ax.text(0.5, 0.5, labels.shorten(text, 80), ha="center", va="center", color="#555")
        return _chart(fig, title, caption, files)


def decimate(
    x: np.ndarray, y: np.ndarray, buckets: int = DECIMATE_BUCKETS
) -> tuple[np.ndarray, np.ndarray]:
    """Thin a long curve to what a figure can show: per run of consecutive points, its ends and extremes.

    The points are cut into ``buckets`` consecutive runs (about one per horizontal pixel); each
    run keeps its first and last point and its smallest and largest finite value, so the drawn
    envelope (an oscillation, a spike, the floor) is the one every point would draw. Curves of at
    most ``4·buckets`` points are returned as they are.

    >>> x = np.arange(10_000.0)
    >>> y = np.where(x == 5_000, 9.0, np.sin(x))
    >>> xs, ys = decimate(x, y, buckets=100)
    >>> bool(xs.size <= 400), bool(ys.max() == 9.0), bool(ys.min() == y.min()), (xs[0], xs[-1])
    (True, True, True, (np.float64(0.0), np.float64(9999.0)))
    """
    if y.size <= 4 * buckets:
        return x, y
    keep: list[int] = []
    for run in np.array_split(np.arange(y.size), buckets):
        values = y[run]
        picks = {int(run[0]), int(run[-1])}
        finite = np.isfinite(values)
        if finite.any():
            index, kept = run[finite], values[finite]
            picks |= {int(index[np.argmin(kept)]), int(index[np.argmax(kept)])}
        keep.extend(sorted(picks))
    chosen = np.asarray(keep)
    return x[chosen], y[chosen]


def colors(n: int) -> list[Any]:
    """``n`` distinguishable colours (tab10, then viridis for many)."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def thin(items: Sequence[Any], limit: int = MAX_LINES) -> list[Any]:
    """At most ``limit`` items, evenly spaced, first and last kept."""
    if len(items) <= limit:
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def wants_log(values: Sequence[float] | np.ndarray, decades: float = 1.5) -> bool:
    """Whether a log axis suits ``values``: all finite ones > 0, spanning ≥ ``decades``."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size < 2 or np.any(arr <= 0):
        return False
    return bool(math.log10(arr.max() / arr.min()) >= decades)


def steps_axis(ax: Axes) -> None:
    """Label the x axis ``step``, with integer ticks."""
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend(ax: Axes, limit: int = LEGEND_LIMIT, handles: Sequence[Any] = ()) -> bool:
    """Draw the legend of ``ax`` below its axes, growing the figure; ``False`` if none was drawn.

    The labelled artists of ``ax``, then the extra proxy ``handles`` (e.g. "dashed: first
    checkpoint"), in as many columns as fit the figure's width: outside the axes, so it never
    hides a curve. Nothing is drawn with no labelled artist or more than ``limit`` of them (the
    caller's caption then says what the colours mean).
    """
    found, names = ax.get_legend_handles_labels()
    found += list(handles)
    names += [str(h.get_label()) for h in handles]
    if not 0 < len(names) <= limit:
        return False
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width = fig.get_figwidth() * fig.dpi - 8
    columns = len(names)
    while True:  # the most columns whose legend fits the figure's width
        order = _row_major(len(names), columns)
        drawn = fig.legend(
            [found[i] for i in order],
            [names[i] for i in order],
            loc="upper center",
            ncols=columns,
            frameon=False,
            borderaxespad=0,
        )
        box = drawn.get_window_extent(renderer)
        if box.width <= width or columns == 1:
            break
        drawn.remove()
        columns = max(1, min(columns - 1, int(columns * width / box.width)))
    tall = box.height / fig.dpi  # inches; the x label keeps 0.4 in below the axes
    _grow_below(fig, tall - 0.04)
    drawn.set_bbox_to_anchor((0.5, (tall + 0.03) / fig.get_figheight()))
    return True


def _row_major(n: int, columns: int) -> list[int]:
    """Order ``n`` entries so a legend of ``columns`` (filled column by column) reads by rows.

    matplotlib fills a legend's columns top to bottom, the first ``n mod columns`` one entry
    longer; listing them in this order puts entry ``k`` at row ``k // columns``.

    >>> _row_major(5, 3)  # rows: 0 1 2 / 3 4
    [0, 3, 1, 4, 2]
    """
    rows = -(-n // columns)
    return [k for j in range(columns) for i in range(rows) if (k := i * columns + j) < n]


def _grow_below(fig: Figure, inches: float) -> None:
    """Add ``inches`` at the bottom of ``fig``, keeping its axes' size and place in inches."""
    height = fig.get_figheight()
    params = fig.subplotpars
    bottom, top = params.bottom * height + inches, (1 - params.top) * height
    fig.set_figheight(height + inches)
    fig.subplots_adjust(bottom=bottom / (height + inches), top=1 - top / (height + inches))


def hband(ax: Axes, band: Sequence[float] | None, label: str = "claimed band") -> bool:
    """Shade a horizontal band (infinite edges run to the axes' edge); ``False`` if no band."""
    return _band(ax, band, label, horizontal=True)


def vband(ax: Axes, band: Sequence[float] | None, label: str = "claimed band") -> bool:
    """Shade a vertical band (infinite edges run to the axes' edge); ``False`` if no band."""
    return _band(ax, band, label, horizontal=False)


def _band(ax: Axes, band: Sequence[float] | None, label: str, horizontal: bool) -> bool:
    if band is None or len(band) != 2 or any(math.isnan(float(b)) for b in band):
        return False
    lo, hi = float(band[0]), float(band[1])
    get, set_ = (ax.get_ylim, ax.set_ylim) if horizontal else (ax.get_xlim, ax.set_xlim)
    scale = ax.get_yscale() if horizontal else ax.get_xscale()
    a, b = get()
    finite = [v for v in (lo, hi) if math.isfinite(v) and (scale != "log" or v > 0)]
    if finite:  # show the band's finite edges, with a margin
        a2, b2 = min(a, *finite), max(b, *finite)
        if scale == "log":
            pad = (b2 / a2) ** 0.05
            a2, b2 = min(a, a2 / pad), max(b, b2 * pad)
        else:
            pad = 0.05 * (b2 - a2 or 1.0)
            a2, b2 = min(a, a2 - pad), max(b, b2 + pad)
        a, b = a2, b2
        set_(a, b)
    lo_c = a if not math.isfinite(lo) or (scale == "log" and lo <= 0) else lo
    hi_c = b if not math.isfinite(hi) else hi
    span = ax.axhspan if horizontal else ax.axvspan
    if hi_c > lo_c:
        span(lo_c, hi_c, color=BAND_COLOR, alpha=0.12, label=label, zorder=0)
    else:  # a point band: a line
        line = ax.axhline if horizontal else ax.axvline
        line(lo_c, color=BAND_COLOR, linewidth=1.2, label=label, zorder=0)
    set_(a, b)
    return True
