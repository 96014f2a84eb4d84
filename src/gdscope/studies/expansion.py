"""A study at one scale with its trials validated once: what a run, a plan and ``verify`` use.

:meth:`gdscope.studies.Study.validated` returns it, so that the scale is applied once and every
trial config is validated and hashed once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Expansion:
    """A study at one scale and its trials, validated once (:meth:`Study.validated`).

    Attributes:
        study: the study with the scale (and its overrides) applied.
        configs: each trial's config as the study file writes it (what the store keeps).
        validated: what the validator returned for each (what the runner runs).

    """

    study: Any  # the Study (typed loosely: spec imports this module, not the reverse)
    configs: list[dict[str, Any]]
    validated: list[Any]

    @property
    def hashes(self) -> list[str]:
        """Each validated config's content hash (the store's key of the trial)."""
        return [config.content_hash() for config in self.validated]
