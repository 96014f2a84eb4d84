r"""Schedulable probe: the running minimum of the full-batch ``‖∇L‖²`` and its drop from step 0.

Mini-batch SGD does not decrease ``‖∇L‖²`` monotonically; what theory bounds (e.g.
``min_{t ≤ T} E‖∇L(θ_t)‖² → 0``) is its running minimum over the checkpoints seen so far.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gdscope.training.context import ProbeContext


def grad_norm_drop(ctx: ProbeContext) -> dict[str, float]:
    """Return the running min of ``‖∇L‖²`` (full batch) and ``‖∇L(θ₀)‖² / running min``.

    The minimum runs over the checkpoints at which this probe was measured; the first one is
    taken as the initial value (schedule the probe from step 0).
    """
    g2 = ctx.grad_norm_sq()
    state = ctx.memory.setdefault("grad_norm_drop", {"initial": g2, "min": math.inf})
    if math.isfinite(g2):
        state["min"] = min(state["min"], g2)
    low = state["min"]
    drop = state["initial"] / low if low > 0 else math.inf
    return {"grad_norm_sq_running_min": low, "grad_norm_sq_drop": drop}
