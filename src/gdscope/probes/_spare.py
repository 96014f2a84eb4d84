"""What the probes keep between calls, and how to free it."""

from __future__ import annotations

from gdscope.probes import _data_span, _krylov

__all__ = ["release_spare"]


def release_spare() -> None:
    """Free what the probes keep for their next call.

    The Lanczos basis's storage (:mod:`gdscope.probes._krylov`) and the sharpness's copy of the
    last inputs with their QR (:mod:`gdscope.probes._data_span`).
    """
    _krylov.release_spare()
    _data_span.release()
