"""A drawn figure as vector graphics: compact inline SVG for the page, SVG and PDF files for a paper.

Text stays text (``svg.fonttype = "none"``: tick labels, axis labels and legends are searchable
and selectable; PDF embeds TrueType, ``pdf.fonttype = 42``), and the output is the same bytes
for the same figure (fixed ``svg.hashsalt``, no creation date). :func:`inline` turns a
standalone SVG document into an element for an HTML page: no XML prologue or metadata, only the
``id`` attributes a reference reads (matplotlib names every group ``figure_1``, ``axes_1``...,
which would repeat on a page of many figures; the page prefixes those left per figure with
:func:`prefix_ids`), and path coordinates to 0.01 pt.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

import matplotlib
from matplotlib.figure import Figure

_RC: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": "gdscope", "pdf.fonttype": 42}
_REFERENCE = re.compile(r'url\(#([^)]+)\)|xlink:href="#([^"]+)"|href="#([^"]+)"')
_ID = re.compile(r' id="([^"]*)"')
_PATH_DATA = re.compile(r' d="([^"]*)"')
_LONG_DECIMAL = re.compile(r"(\d\.\d\d)\d+")


def svg_document(fig: Figure) -> str:
    """Return ``fig`` as a standalone SVG document (for a file)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def pdf_document(fig: Figure) -> bytes:
    """Return ``fig`` as PDF bytes, fonts embedded as TrueType, no creation date."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="pdf", metadata={"CreationDate": None})
    return buffer.getvalue()


def inline(document: str, title: str = "") -> str:
    r"""Return an SVG document as one ``<svg>`` element for an HTML page, titled ``title``.

    >>> doc = ('<?xml version="1.0"?>\n<svg viewBox="0 0 10 10"><metadata>m</metadata>'
    ...        '<g id="figure_1"><path id="p1" d="M 1.23456 2 \nL 3 4 \nz\n"/>'
    ...        '<use xlink:href="#p1"/></g></svg>')
    >>> inline(doc, "a < b")
    '<svg viewBox="0 0 10 10" role="img"><title>a &lt; b</title><g><path id="p1" d="M1.23 2L3 4z"/><use xlink:href="#p1"/></g></svg>'
    """
    start = document.index("<svg")
    body = re.sub(r"<metadata>.*?</metadata>\s*", "", document[start:], flags=re.DOTALL)
    body = _PATH_DATA.sub(lambda m: f' d="{_compact_path(m.group(1))}"', body)
    used = {name for match in _REFERENCE.finditer(body) for name in match.groups() if name}
    body = _ID.sub(lambda m: m.group(0) if m.group(1) in used else "", body)
    head_end = body.index(">") + 1
    label = f"<title>{html.escape(title)}</title>" if title else ""
    return body[: head_end - 1] + ' role="img">' + label + body[head_end:].strip()


def prefix_ids(element: str, prefix: str) -> str:
    """Prefix every ``id`` of an inline SVG element and every reference to one with ``prefix``.

    The page gives each figure its own prefix, so no two figures share an id.

    >>> prefix_ids('<path id="p1"/><use xlink:href="#p1"/><g clip-path="url(#p1)"/>', "f3-")
    '<path id="f3-p1"/><use xlink:href="#f3-p1"/><g clip-path="url(#f3-p1)"/>'
    """
    element = _ID.sub(lambda m: f' id="{prefix}{m.group(1)}"', element)
    return _REFERENCE.sub(lambda m: m.group(0).replace("#", "#" + prefix, 1), element)


def _compact_path(data: str) -> str:
    r"""``"M 1.23456 2 \nL 3 4 \nz"`` → ``"M1.23 2L3 4z"`` (0.01 pt: far below a pixel)."""
    data = _LONG_DECIMAL.sub(r"\1", data)
    data = re.sub(r"\s*([A-Za-z])\s*", r"\1", data)
    return re.sub(r"\s+", " ", data).strip()
