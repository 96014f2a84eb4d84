"""Geometry of the loss landscape along a run: gradient norm and distance from initialization.

Probes take ``(model, params, batch)``-style inputs and return numbers; they never log or save.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from gdscope.functional import LossFn, flatten, loss_and_grad


def gradient_norm(
    model: nn.Module, params: Mapping[str, Tensor], loss_fn: LossFn, batch: tuple[Tensor, Tensor]
) -> float:
    """Return ``‖∇L(θ)‖₂`` over all trainable parameters, on the whole ``batch``."""
    _, grads = loss_and_grad(model, params, loss_fn, batch)
    return float(torch.linalg.vector_norm(flatten(grads)))


def distance_from_init(
    params: Mapping[str, Tensor], init: Mapping[str, Tensor]
) -> dict[str, float]:
    """Return how far the parameters moved from their initial values.

    Keys: ``"dist_from_init"`` = ‖θ − θ₀‖₂, ``"rel_dist_from_init"`` = ‖θ − θ₀‖₂ / ‖θ₀‖₂
    (0 when θ₀ = 0), and per parameter tensor ``"dist_from_init/<name>"`` = ‖θ_l − θ_{l,0}‖_F and
    ``"rel_dist_from_init/<name>"`` = ‖θ_l − θ_{l,0}‖_F / ‖θ_{l,0}‖_F. Relative weight change is the
    laziness measure of Chizat, Oyallon & Bach (2019) and Lee et al. (2019).
    """
    out: dict[str, float] = {}
    sq_diff = 0.0
    sq_init = 0.0
    for name, theta in params.items():
        diff = float(
            torch.linalg.vector_norm((theta - init[name]).reshape(-1), dtype=torch.float64)
        )
        base = float(torch.linalg.vector_norm(init[name].reshape(-1), dtype=torch.float64))
        out[f"dist_from_init/{name}"] = diff
        out[f"rel_dist_from_init/{name}"] = diff / base if base > 0 else 0.0
        sq_diff += diff**2
        sq_init += base**2
    out["dist_from_init"] = sq_diff**0.5
    out["rel_dist_from_init"] = (sq_diff / sq_init) ** 0.5 if sq_init > 0 else 0.0
    return out
