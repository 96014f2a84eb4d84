"""A study's user factories (``model.factory``, ``data.factory``) found beside the study file.

``"mynets:make_net"`` in a study is looked for beside the study file first
(:func:`gdscope.factories.locate`), so the study's trials name the file they will import; a
factory that cannot be found is refused when the study loads, naming the study file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gdscope.factories import locate

_FIELDS = ("model.factory", "data.factory")


def locate_factories(data: dict[str, Any], beside: Path | None, origin: str) -> None:
    """Replace each factory string of ``data``'s base and sweeps by ``{ref, file}``, in place.

    Raises:
        ValueError: a factory's module is not found (the message names ``origin``).

    """
    base = data.get("base")
    if isinstance(base, dict):
        for field in _FIELDS:
            section, key = field.split(".")
            part = base.get(section)
            if isinstance(part, dict) and isinstance(part.get(key), str):
                part[key] = _located(part[key], beside, origin)
    for axes in [data.get("sweep"), *(data.get("sweep_zip") or [])]:
        if not isinstance(axes, dict):
            continue
        for field in _FIELDS:
            values = axes.get(field)
            if isinstance(values, list):
                axes[field] = [
                    _located(v, beside, origin) if isinstance(v, str) else v for v in values
                ]


def _located(ref: str, beside: Path | None, origin: str) -> dict[str, str]:
    try:
        return {"ref": ref, "file": str(locate(ref, beside))}
    except ValueError as err:
        raise ValueError(f"{origin}: {err}") from None
