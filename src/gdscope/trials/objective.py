r"""Optimizers on the convex test objectives of seed 002 (claims C1, C4, C5).

One parameter tensor ``x ∈ ℝ^dim`` (``x_0`` given), one objective from :mod:`gdscope.losses`:

* ``"abs"``: ``‖x‖₁``; constant-step GD ends on a cycle, a floor of order ``η`` (C1);
* ``"abs_power"``: ``Σ|x_i|^p``, ``1 < p ≤ 2``; GD at large ``η`` settles on the 2-cycle
  ``x → −x`` with ``η f''(x) = 2(p − 1)`` (C5);
* ``"pseudo_huber"``: ``Σ δ²(√(1 + (x_i/δ)²) − 1)``; with ``δ = 1`` and ``η > 2``, GD settles on
  ``|x| = √(η²/4 − 1)`` (C5);
* ``"quadratic"``: ``½‖x‖²``;
* ``"l1_scalar"``: ``Σ ½(x_i − b)² + λ|x_i|``, minimised by the soft-threshold of ``b``.

Methods, all ``torch.optim`` optimizers from :func:`gdscope.optim.make_optimizer` stepping on
``∇f`` as autograd computes it (``sign(0) = 0`` at a kink): ``"gd"``, ``"subgradient"``
(schedule ``constant`` or ``sqrt``), ``"rmsprop"`` (``alpha``, ``eps``), ``"heavy_ball"`` and
``"nesterov"`` (PyTorch's form; both with ``momentum``). On ``½‖x‖²`` the momentum methods are
stable for ``η < 2 + 2β`` (heavy ball) and ``η < (2 + 2β)/(1 + 2β)`` (Nesterov), the thresholds
of Cohen et al. (2021) that claim R4 checks.

References:
    Kumar (2024), "GD doesn't make the cut", arXiv 2401.08426. Cohen et al. (2021), "Gradient
    descent on neural networks typically occurs at the edge of stability", ICLR.

"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from gdscope import losses
from gdscope.config.parts import Count, PositiveCount
from gdscope.optim import make_optimizer
from gdscope.training import Reading, Trace, Watch, drive
from gdscope.trials._base import (
    Dtype,
    KindConfig,
    Momentum,
    NonNegativeFinite,
    PositiveFinite,
    torch_dtype,
)

__all__ = ["FLOOR_FRACTION", "WATCH", "ObjectiveConfig", "floor", "run"]

Function = Literal["abs", "abs_power", "pseudo_huber", "quadratic", "l1_scalar"]
FLOOR_FRACTION = 0.2
"""``floor`` is the median of ``abs_x`` over this last fraction of the checkpoints."""
WATCH = Watch("f", "f =", "1e6 × max(f(x0), 1)", floor=1.0)
"""The divergence rule watches ``f``; floor 1, the test objectives being of order one."""


class ObjectiveConfig(KindConfig):
    """One run of an optimizer on a test objective.

    ``p`` is required by ``abs_power`` (and rejected elsewhere); ``delta`` is used by
    ``pseudo_huber``, ``b`` and ``lam`` by ``l1_scalar``; ``schedule`` applies to
    ``subgradient``, ``alpha``/``eps`` to ``rmsprop``, ``momentum`` to ``heavy_ball`` and
    ``nesterov`` (default 0.9).
    """

    RECORDED_METRICS = ("f", "f_gap", "x", "abs_x", "curvature", "floor", "dist_floor", "absorbed")
    kind: Literal["objective"] = "objective"
    function: Function = "quadratic"
    p: float | None = Field(default=None, gt=1, le=2)
    delta: PositiveFinite = 1.0
    b: float = Field(default=1.0, allow_inf_nan=False)
    lam: NonNegativeFinite = 0.5
    dim: PositiveCount = 1
    x0: float | list[float] = 1.0
    """Start: a number (every coordinate) or a list of ``dim`` numbers."""
    method: Literal["gd", "subgradient", "rmsprop", "heavy_ball", "nesterov"] = "gd"
    lr: PositiveFinite = 0.1
    schedule: Literal["constant", "sqrt"] = "constant"
    momentum: Momentum | None = None
    alpha: float = Field(default=0.99, gt=0, lt=1)
    eps: PositiveFinite = 1e-8
    steps: PositiveCount = 1000
    seed: Count = 0
    dtype: Dtype = "float64"

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveConfig:
        if (self.function == "abs_power") != (self.p is not None):
            raise ValueError(
                f"p (1 < p <= 2) is required with function='abs_power' and not accepted "
                f"otherwise, got function={self.function!r}, p={self.p!r}"
            )
        if self.momentum is not None and self.method not in ("heavy_ball", "nesterov"):
            raise ValueError(
                "momentum applies to methods 'heavy_ball' and 'nesterov' only, got "
                f"method={self.method!r}, "
                f"momentum={self.momentum!r}"
            )
        if self.schedule != "constant" and self.method != "subgradient":
            raise ValueError(
                f"schedule applies to method 'subgradient' only, got method={self.method!r}, "
                f"schedule={self.schedule!r}"
            )
        values = [self.x0] if isinstance(self.x0, float | int) else self.x0
        if not isinstance(self.x0, float | int) and len(self.x0) != self.dim:
            raise ValueError(f"x0 must have dim={self.dim} entries, got {len(self.x0)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"x0 must be finite, got {self.x0!r}")
        return self


def _objective(config: ObjectiveConfig) -> Callable[[Tensor], Tensor]:
    if config.function == "abs":
        return lambda x: losses.abs_power(x, 1.0)
    if config.function == "abs_power":
        p = float(config.p or 2.0)
        return lambda x: losses.abs_power(x, p)
    if config.function == "pseudo_huber":
        return lambda x: losses.pseudo_huber(x, config.delta)
    if config.function == "quadratic":
        return losses.quadratic
    return lambda x: losses.l1_scalar(x, config.b, config.lam)


def _curvature(config: ObjectiveConfig, x: Tensor) -> float:
    """``η · max_i f''(x_i)`` (the scaled sharpness of a separable ``f``); NaN without a closed form."""
    if config.function == "abs_power":
        f2 = losses.abs_power_curvature(x, float(config.p or 2.0))
    elif config.function == "pseudo_huber":
        f2 = losses.pseudo_huber_curvature(x, config.delta)
    elif config.function == "quadratic":
        f2 = torch.ones_like(x)
    else:
        return math.nan
    return config.lr * float(f2.max())


def _minimizer(config: ObjectiveConfig) -> float:
    """``x*`` (every coordinate): 0 except for ``l1_scalar``, the soft-threshold of ``b`` at ``λ``."""
    if config.function != "l1_scalar":
        return 0.0
    return math.copysign(max(abs(config.b) - config.lam, 0.0), config.b)


def _minimum(config: ObjectiveConfig) -> float:
    """``f*``: 0 except for ``l1_scalar``, whose minimiser is the soft-threshold of ``b``."""
    if config.function != "l1_scalar":
        return 0.0
    x_star = _minimizer(config)
    return config.dim * (0.5 * (x_star - config.b) ** 2 + config.lam * abs(x_star))


def _optimizer(config: ObjectiveConfig, x: Tensor) -> torch.optim.Optimizer:
    options: dict[str, Any] = {}
    if config.method == "subgradient":
        options["schedule"] = config.schedule
    elif config.method == "rmsprop":
        options.update(alpha=config.alpha, eps=config.eps)
    elif config.method in ("heavy_ball", "nesterov"):
        options["momentum"] = config.momentum
    return make_optimizer(config.method, [x], config.lr, **options)


def floor(abs_x: np.ndarray, fraction: float = FLOOR_FRACTION) -> float:
    """Median of the last ``fraction`` of ``abs_x``, over an even count of points.

    An even count makes the median of a 2-cycle between levels ``a`` and ``b`` their midpoint
    ``(a + b)/2`` whatever the phase (on ``|x|``, ``a + b = η``, so the floor is ``η/2``).
    """
    return float(np.median(abs_x[-_tail_count(len(abs_x), fraction) :]))


def _tail_count(length: int, fraction: float = FLOOR_FRACTION) -> int:
    """Return how many last points :func:`floor` takes the median of (an even count)."""
    count = max(2, math.ceil(fraction * length))
    return min(count + count % 2, length)


def run(config: ObjectiveConfig) -> Trace:
    """Run ``config``: records ``f``, ``f_gap``, ``x``, ``abs_x``, ``curvature`` at every step.

    ``x`` is the first coordinate, ``abs_x = max_i |x_i|``, ``f_gap = f(x) − f*`` and
    ``curvature = η · max_i f''(x_i)``. The final step also records

    * ``floor``: :func:`floor` of ``abs_x`` (the stall level around a minimiser at 0);
    * ``dist_floor``: :func:`floor` of ``max_i |x_i − x*_i|`` (the stall level around ``x*``,
      the soft-threshold of ``b`` for ``l1_scalar``, else 0); NaN for a diverged run;
    * ``absorbed``: 1 when the iterate has stopped on a point where the computed (sub)gradient
      is exactly 0 — every coordinate of ``∇f`` at the last iterate is 0.0 and the iterate did
      not move over the last :data:`FLOOR_FRACTION` of the steps — else 0. With ``sign(0) = 0``
      (``|x|`` at 0), or a float ``x`` next to ``x*`` whose gradient rounds to 0, the step of
      GD or RMSProp (``η g/(√v + ε)``) is exactly 0 from then on: the run ends there for good.

    The loop is :func:`gdscope.training.drive`; the divergence rule watches ``f`` with floor 1
    (:data:`WATCH`).
    """
    start = time.perf_counter()
    dtype = torch_dtype(config.dtype)
    x = torch.zeros(config.dim, dtype=dtype).add_(torch.as_tensor(config.x0, dtype=dtype))
    x.requires_grad_(True)
    f, f_star = _objective(config), _minimum(config)
    optimizer = _optimizer(config, x)
    tail = _Tail(config.steps + 1 - _tail_count(config.steps + 1), _minimizer(config), x)

    def measure(t: int) -> Reading:
        optimizer.zero_grad(set_to_none=True)
        value = f(x)
        value.backward()
        loss = float(value.detach())
        metrics = _metrics(config, x.detach(), loss, f_star)
        tail.observe(t, x.detach())
        return Reading((loss,), metrics)

    trace = drive(config.steps, measure, lambda _: optimizer.step(), watch=WATCH, started=start)
    abs_x = trace.series("abs_x")[1]
    completed = trace.status == "completed"
    zero_grad = x.grad is not None and not bool(x.grad.any())
    trace.record(
        trace.steps,
        {
            "floor": floor(abs_x),
            "dist_floor": float(np.median(tail.dist)) if completed else math.nan,
            "absorbed": float(completed and not tail.moved and zero_grad),
        },
    )
    return trace


class _Tail:
    """What :func:`run` tracks over the steps :func:`floor` reads (from ``start`` on)."""

    def __init__(self, start: int, x_star: float, x: Tensor) -> None:
        self.start, self.x_star = start, x_star
        self.anchor, self.moved = x.detach().clone(), False
        self.dist: list[float] = []  # max_i |x_i − x*_i| over the tail

    def observe(self, t: int, x: Tensor) -> None:
        """Note the iterate ``x`` of checkpoint ``t``."""
        if t == self.start:
            self.anchor = x.clone()
        if t >= self.start:
            self.dist.append(float((x - self.x_star).abs().max()))
            self.moved = self.moved or not torch.equal(x, self.anchor)


def _metrics(config: ObjectiveConfig, x: Tensor, loss: float, f_star: float) -> dict[str, float]:
    return {
        "f": loss,
        "f_gap": loss - f_star,
        "x": float(x[0]),
        "abs_x": float(x.abs().max()),
        "curvature": _curvature(config, x),
    }
