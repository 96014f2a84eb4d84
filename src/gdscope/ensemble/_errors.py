"""The one error of the ensemble package: this group cannot be trained as one ensemble."""

from __future__ import annotations

__all__ = ["NotBatchableError"]


class NotBatchableError(ValueError):
    """The members cannot be batched (or batching would change the numbers): run them one by one.

    Raised before anything is trained (different structures, an unsupported optimizer or
    option), or at the first step when the batched forward/backward does not reproduce the
    one-model computation bit for bit (:meth:`gdscope.ensemble.Ensemble.check_against_loop`).
    """
