"""Probes evaluated for every member at once on the stacked tensors.

``loss`` comes free with the batched step. ``grad_norm`` and ``dist_from_init`` are computed here
with one batched reduction per parameter tensor, in the same arithmetic as the one-model probes
(:class:`gdscope.training.scheduled.ProbeContext` and
:func:`gdscope.probes.geometry.distance_from_init`): float64 accumulation per tensor, then the
per-tensor values combined in Python in the same order. A batched reduction of ``(M, N)`` need not
sum in the order a reduction of one ``N``-vector does (CPU reductions split long vectors across
threads), so :class:`BatchedProbes` trusts a batched probe only after it reproduced the per-member
values at its first checkpoint, and re-checks whenever the ensemble shrinks.
Every other probe runs per member through ``PROBES`` on the member's live module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

__all__ = ["BATCHED", "BatchedProbes"]

Stacked = Mapping[str, Tensor]
Batched = Callable[[Stacked, Stacked, Stacked], list[dict[str, float]]]


def _per_member_norm(t: Tensor) -> list[float]:
    """``‖t[i]‖₂`` of every member, accumulated in float64."""
    flat = t.reshape(t.shape[0], -1)
    return torch.linalg.vector_norm(flat, dim=1, dtype=torch.float64).tolist()


def grad_norms(params: Stacked, init: Stacked, grads: Stacked) -> list[dict[str, float]]:
    """``{"grad_norm": ‖∇L_i‖₂}`` per member, as ``ProbeContext.grad_norm_sq`` sums it."""
    per_tensor = [
        torch.sum(g.double() ** 2, dim=tuple(range(1, g.ndim))).tolist() for g in grads.values()
    ]
    members = len(next(iter(grads.values())))
    return [
        {"grad_norm": math.sqrt(sum(column[i] for column in per_tensor))} for i in range(members)
    ]


def distances_from_init(params: Stacked, init: Stacked, grads: Stacked) -> list[dict[str, float]]:
    """``distance_from_init`` per member (global and per tensor, absolute and relative)."""
    diffs = {name: _per_member_norm(theta - init[name]) for name, theta in params.items()}
    bases = {name: _per_member_norm(init[name]) for name in params}
    out = []
    for i in range(len(next(iter(params.values())))):
        record: dict[str, float] = {}
        sq_diff = sq_init = 0.0
        for name in params:
            diff, base = diffs[name][i], bases[name][i]
            record[f"dist_from_init/{name}"] = diff
            record[f"rel_dist_from_init/{name}"] = diff / base if base > 0 else 0.0
            sq_diff += diff**2
            sq_init += base**2
        record["dist_from_init"] = sq_diff**0.5
        record["rel_dist_from_init"] = (sq_diff / sq_init) ** 0.5 if sq_init > 0 else 0.0
        out.append(record)
    return out


BATCHED: dict[str, Batched] = {"grad_norm": grad_norms, "dist_from_init": distances_from_init}
"""Probe name → batched version ``fn(params, init, grads) -> [metrics of member i]``."""


class BatchedProbes:
    """Which batched probes have matched their per-member versions at the current stack size."""

    def __init__(self) -> None:
        self.trusted: dict[str, bool] = {}

    def reset(self) -> None:
        """Forget what was verified (call when the stack changes shape)."""
        self.trusted.clear()

    def evaluate(
        self,
        name: str,
        stacked: tuple[Stacked, Stacked, Stacked],
        per_member: Callable[[int], dict[str, float]],
        members: int,
    ) -> list[dict[str, float]]:
        """Return probe ``name`` for every member, batched when trusted, else one by one.

        Args:
            name: a key of :data:`BATCHED`.
            stacked: ``(params, init, grads)`` stacked.
            per_member: ``per_member(slot)`` evaluates the reference probe for one member.
            members: the number of members in the stack.

        """
        if self.trusted.get(name) is False:
            return [per_member(slot) for slot in range(members)]
        batched = BATCHED[name](*stacked)
        if name not in self.trusted:
            reference = [per_member(slot) for slot in range(members)]
            self.trusted[name] = batched == reference
            return reference
        return batched
