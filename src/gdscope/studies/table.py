"""The tidy table claims are judged on: one ``TrialRecord`` per finished trial.

``config`` is the trial's configuration flattened to dotted keys (``"model.width": 256``,
``"seed": 0``, ``"kind": "network"``); ``series`` maps each recorded metric to ``(steps, values)``
arrays. Records come from the runner or, identically, from the store, so verdicts can always be
rebuilt from stored data without training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrialRecord:
    """What one trial left behind, in the form the judge reads.

    Attributes:
        hash: the trial config's content hash.
        config: flattened config, dotted keys.
        status: ``"completed"``, ``"stopped"``, ``"diverged"`` or ``"failed"`` (raised an error).
        series: ``{metric: (steps int64 array, values float64 array)}``.
        reason: how the run ended (or the error for a failed trial).

    """

    hash: str
    config: Mapping[str, Any]
    status: str
    series: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    reason: str = ""

    def get(self, key: str) -> Any:
        """Return a config value by dotted key (``KeyError`` naming the known keys otherwise)."""
        if key not in self.config:
            raise KeyError(f"config has no key {key!r}; keys: {', '.join(sorted(self.config))}")
        return self.config[key]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: ``{"model": {"width": 8}} -> {"model.width": 8}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out
