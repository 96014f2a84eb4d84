"""``StudyError`` and the rendering of pydantic errors as one line per problem.

Each line names the dotted field (claims by id: ``claims[D1-gd].band``), the value seen and what
is accepted; an unknown key gets a "did you mean" and the list of accepted keys.
"""

from __future__ import annotations

from gdscope._validation import format_errors

__all__ = ["StudyError", "format_errors"]


class StudyError(Exception):
    """A mistake in a study (file, override or sweep point), with a message ready to print."""
