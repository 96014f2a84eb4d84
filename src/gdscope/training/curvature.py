r"""Schedulable curvature probes: the adaptive edge of stability and the Hessian spectral density.

* ``preconditioned_sharpness``: ``λ_max(P⁻¹H)`` for the diagonal preconditioner ``P`` of the
  Adam/AdamW/RMSprop state that trains the model (:mod:`gdscope.probes.preconditioned`), beside
  the frozen-preconditioner stability threshold (Cohen et al. 2022, "Adaptive gradient methods at
  the edge of stability", arXiv:2207.14484, §2): ``(2 + 2β₁)/((1 − β₁)η)`` for Adam (``38/η`` at
  ``β₁ = 0.9``), ``(2 + 2μ)/η`` for RMSprop with heavy-ball momentum ``μ`` (``2/η`` without).
  Lanczos on ``diag(η)^{1/2} P^{-1/2} H P^{-1/2} diag(η)^{1/2}`` (each group's learning rate
  ``η``), warm-started from the previous checkpoint's eigenvector, gives the ratio
  ``λ_max(ηP⁻¹H)/threshold(η = 1)``, which is ``λ_max(P⁻¹H)/threshold`` when every group has
  one ``η`` (then both are recorded too).
* ``hessian_density``: the stochastic Lanczos quadrature of the Hessian's eigenvalue density
  (:mod:`gdscope.probes.spectral_density`; Ghorbani, Krishnan & Xiao 2019), recorded as the
  Gauss nodes ``θ_k`` and weights ``τ_k`` of each probe vector, from which the report draws the
  smoothed density ``φ_σ(t) = (1/n_v) Σ_v Σ_k τ_k g_σ(t − θ_k)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gdscope.probes.preconditioned import adaptive_stability_threshold, preconditioned_sharpness
from gdscope.probes.spectral_density import hessian_spectral_density

if TYPE_CHECKING:
    from gdscope.training.context import ProbeContext

__all__ = [
    "DENSITY_FAMILY",
    "DENSITY_PROBES",
    "DENSITY_STEPS",
    "PRECONDITIONED_TOL",
    "density_metric",
    "hessian_density_probe",
    "preconditioned_sharpness_probe",
]

PRECONDITIONED_TOL = 1e-6
"""Relative Lanczos residual of ``preconditioned_sharpness`` (the eigenvalue error is ~tol²)."""
DENSITY_STEPS = 24
"""Lanczos steps (Gauss nodes) per probe vector of ``hessian_density`` (at most the dimension)."""
DENSITY_PROBES = 4
"""Rademacher probe vectors of ``hessian_density`` (the same ones at every checkpoint)."""
DENSITY_FAMILY = "hessian_density/"
"""Metric family of ``hessian_density``: ``node_<probe>_<k>`` and ``weight_<probe>_<k>``."""
_ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)


def density_metric(kind: str, probe: int, k: int) -> str:
    """Return the metric name of node or weight ``k`` of probe vector ``probe``.

    >>> density_metric("node", 0, 3), density_metric("weight", 2, 17)
    ('hessian_density/node_0_03', 'hessian_density/weight_2_17')
    """
    return f"{DENSITY_FAMILY}{kind}_{probe}_{k:02d}"


def preconditioned_sharpness_probe(ctx: ProbeContext) -> dict[str, float]:
    """Probe: ``λ_max(P⁻¹H)``, its threshold and their ratio (see the module docstring).

    Nothing is recorded at a checkpoint before the optimizer's first update (``P`` is read from
    its state, which the first update creates). ``H`` is the Hessian of the objective the
    optimizer descends: the training loss on the full training set, plus ``λI`` on each group
    with a coupled ``weight_decay`` λ (Adam without decoupled decay, RMSprop: their gradient is
    ``g + λθ``), so the value is ``λ_max(P⁻¹(H + λI))``. AdamW's decoupled decay is outside the
    preconditioned step and not in ``H`` (:mod:`gdscope.probes.preconditioned`).

    Raises:
        ValueError: the loop passed no optimizer, or one that is not Adam, AdamW or RMSprop.

    """
    optimizer = ctx.optimizer
    if optimizer is None:
        raise ValueError(
            "probe 'preconditioned_sharpness' reads the optimizer's state, but no optimizer "
            "reached the probe context; gdscope.train passes its own, a custom loop must set "
            "ProbeContext.optimizer"
        )
    if not isinstance(optimizer, _ADAPTIVE):
        raise ValueError(
            f"probe 'preconditioned_sharpness' needs an adaptive optimizer (adam or rmsprop), "
            f"got {type(optimizer).__name__}; schedule 'sharpness' for gradient descent"
        )
    if not any(optimizer.state.get(p) for g in optimizer.param_groups for p in g["params"]):
        return {}  # no update yet: no preconditioner
    value, vector = preconditioned_sharpness(
        ctx.model, ctx.loss_fn, ctx.data, optimizer, tol=PRECONDITIONED_TOL, lr_scaled=True,
        v0=ctx.warm_start("preconditioned_vector"), return_vector=True,
    )  # fmt: skip
    ctx.memory["preconditioned_vector"] = vector
    edge = adaptive_stability_threshold(optimizer, lr_scaled=True)
    out = {"preconditioned_sharpness_ratio": value / edge}
    rates = {float(g["lr"]) for g in optimizer.param_groups}
    if len(rates) == 1:
        (lr,) = rates
        out["preconditioned_sharpness"] = value / lr
        out["adaptive_threshold"] = edge / lr
    return out


def hessian_density_probe(ctx: ProbeContext) -> dict[str, float]:
    """Probe: the SLQ nodes and weights of the Hessian's spectral density at this checkpoint.

    ``DENSITY_PROBES`` Rademacher vectors drawn from a generator seeded with 0 at every
    checkpoint (so densities at two checkpoints differ by the Hessian, not by the probes), each
    run for ``DENSITY_STEPS`` Lanczos steps with full reorthogonalization.
    """
    slq = hessian_spectral_density(
        ctx.model, ctx.loss_fn, ctx.data, steps=DENSITY_STEPS, probes=DENSITY_PROBES,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    out: dict[str, float] = {}
    nodes, weights = slq.nodes.tolist(), slq.weights.tolist()
    for i, (row_nodes, row_weights) in enumerate(zip(nodes, weights, strict=True)):
        for k, (node, weight) in enumerate(zip(row_nodes, row_weights, strict=True)):
            out[density_metric("node", i, k)] = node
            out[density_metric("weight", i, k)] = weight
    return out
