r"""Kernel-level residual dynamics of GD, Nesterov and heavy ball (seed 003, claims D1–D3).

With a Gram ``H`` (n×n, positive semi-definite), targets ``y`` and the loss ``½‖u − y‖²``
(unnormalised, as in Du et al. 2019 and Liu & Pan 2021), linearised training moves the outputs
``u`` by ``−ηH(u − y)``, so the residual ``r_t = u_t − y`` (``u_0 = 0``, hence ``r_0 = −y``) obeys

.. math::

    \text{GD:}\quad & r_{t+1} = (I - \eta H)\, r_t \\
    \text{NAG:}\quad & y_t = r_t + \beta (r_t - r_{t-1}), \qquad r_{t+1} = (I - \eta H)\, y_t \\
    \text{heavy ball:}\quad & r_{t+1} = (I - \eta H)\, r_t + \beta (r_t - r_{t-1})

with ``r_{−1} = r_0`` (momentum methods start at rest). ``H`` is diagonalised once in float64,
``H = V diag(λ) Vᵀ``; in the eigenbasis ``c = Vᵀ r`` every mode follows the scalar two-term
recursion ``c_{t+1} = T_i c_t − D_i c_{t−1}`` with ``a_i = 1 − ηλ_i`` and

* GD: ``T = a``, ``D = 0``;  NAG: ``T = a(1 + β)``, ``D = aβ``;  heavy ball: ``T = a + β``, ``D = β``,

so ``‖r_t‖ = ‖c_t‖`` costs O(n) per step and 10⁵ steps are cheap. The asymptotic rate of mode
``i`` is the spectral radius of its companion matrix ``[[T_i, −D_i], [1, 0]]`` (``|a_i|`` for GD);
``theory_rate`` is the largest over all modes.

Tunings (``lr="auto"``, ``momentum="auto"``, docs/claims.md), with ``κ = λ_max/λ_min``:
GD ``η = 1/λ_max``; NAG the same ``η`` and ``β = (√κ − 1)/(√κ + 1)``; heavy ball
``η = 4/(√λ_max + √λ_min)²`` and ``β = ((√κ − 1)/(√κ + 1))²``. Then ``1 − ρ`` is ``1/κ`` for GD,
about ``1/√κ`` for NAG and ``2/(√κ + 1)`` for heavy ball.

References:
    Du, Zhai, Póczos, Singh (2019), "Gradient descent provably optimizes over-parameterized neural
    networks", ICLR. Liu, Pan (2021), "Provable convergence of Nesterov accelerated method for
    over-parameterized neural networks", arXiv 2107.01832. Polyak (1964), USSR Comput. Math.
    Math. Phys. 4(5).

"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from gdscope import data as gsdata
from gdscope import models, probes
from gdscope.config.parts import Count, PositiveCount
from gdscope.training import Reading, Trace, Watch, drive
from gdscope.trials._base import (
    AutoMomentum,
    AutoPositive,
    Dtype,
    KindConfig,
    NonNegativeFinite,
    PositiveFinite,
    exactly_one,
    numpy_dtype,
    one_of_pair,
)

__all__ = [
    "WATCH",
    "KernelDataConfig",
    "KernelDynamicsConfig",
    "Tuning",
    "residuals_direct",
    "residuals_eigen",
    "run",
    "theory_rate",
    "tune",
]

Method = Literal["gd", "nag", "heavy_ball"]
WATCH = Watch("relative_residual", "relative residual", "1e6")
"""The divergence rule watches ``‖r_t‖/‖r_0‖`` (its start is 1, so its limit is ``1e6``)."""


class KernelDataConfig(KindConfig):
    """``n`` points uniform on the unit sphere in ``d`` dimensions, Gaussian targets.

    ``near_pair = δ`` replaces the last point by the unit vector at distance ``δ`` from the first
    (in the plane of the two), which shrinks ``λ_min`` and raises ``κ``.
    """

    n: int = Field(default=16, ge=2)
    d: int = Field(default=4, ge=1)
    near_pair: float | None = Field(default=None, gt=0, le=2)

    @model_validator(mode="after")
    def _pair_needs_a_plane(self) -> KernelDataConfig:
        if self.near_pair is not None and self.d < 2:
            raise ValueError(f"near_pair needs d >= 2, got d={self.d}")
        return self


class KernelDynamicsConfig(KindConfig):
    """One kernel-level run: data, Gram, method and tuning, step budget, stop tolerance."""

    RECORDED_METRICS = ("residual", "relative_residual", "kappa", "lambda_min", "lambda_max")
    RECORDED_METRICS += ("eta", "beta", "theory_rate")
    kind: Literal["kernel_dynamics"] = "kernel_dynamics"
    data: KernelDataConfig = Field(default_factory=KernelDataConfig)
    gram: Literal["h_infinity", "empirical"] = "h_infinity"
    """``H∞`` (Du et al. closed form) or the empirical NTK of ``two_layer(d, width)`` at init."""
    width: PositiveCount | None = None
    """Hidden width ``m`` of the network whose NTK is used; required iff ``gram="empirical"``."""
    method: Method = "gd"
    lr: AutoPositive = "auto"
    momentum: AutoMomentum = "auto"
    """``β``; ``"auto"`` is the docs/claims.md tuning (0 for GD, which takes no other value)."""
    steps: PositiveCount | None = 1000
    steps_per_kappa: PositiveFinite | None = None
    """Budget ``⌈c·κ⌉`` (GD) or ``⌈c·√κ⌉`` (NAG, heavy ball) steps; excludes ``steps``."""
    max_steps: PositiveCount = 1_000_000
    """Cap on the budget ``steps_per_kappa`` resolves to (``κ`` can be huge)."""
    tol: NonNegativeFinite = 1e-12
    """Stop (status ``"stopped"``) once ``‖r_t‖/‖r_0‖ < tol``."""
    record_every: PositiveCount = 1
    seed: Count = 0
    dtype: Dtype = "float64"
    """Precision of the recursion; the Gram and its eigendecomposition are always float64."""

    @model_validator(mode="before")
    @classmethod
    def _budget_given_one_way(cls, data: Any) -> Any:
        return one_of_pair(data, "steps_per_kappa", "steps")

    @model_validator(mode="after")
    def _consistent(self) -> KernelDynamicsConfig:
        exactly_one(self, "steps", "steps_per_kappa")
        if (self.gram == "empirical") != (self.width is not None):
            raise ValueError(
                f"width is required with gram='empirical' and not accepted otherwise, got "
                f"gram={self.gram!r}, width={self.width!r}"
            )
        if self.method == "gd" and self.momentum not in ("auto", 0.0):
            raise ValueError(
                f"method 'gd' takes no momentum, got momentum={self.momentum!r}; "
                "use method='nag' or 'heavy_ball'"
            )
        return self


@dataclass(frozen=True)
class Tuning:
    """Step size ``η`` and momentum ``β`` of one run."""

    eta: float
    beta: float


def tune(
    method: Method,
    lam_min: float,
    lam_max: float,
    lr: float | Literal["auto"] = "auto",
    momentum: float | Literal["auto"] = "auto",
) -> Tuning:
    """Return the docs/claims.md tuning for ``method`` from the extreme eigenvalues, or the given values.

    ``λ_min ≤ 0`` (a singular Gram) is read as ``κ = ∞``: the auto momentum is then 1.
    """
    kappa = lam_max / lam_min if lam_min > 0 else math.inf
    nag_beta = 1.0 - 2.0 / (math.sqrt(kappa) + 1.0)  # (√κ − 1)/(√κ + 1), finite at κ = ∞
    if method == "heavy_ball":
        auto_eta = 4.0 / (math.sqrt(lam_max) + math.sqrt(max(lam_min, 0.0))) ** 2
        auto_beta = nag_beta**2
    else:
        auto_eta = 1.0 / lam_max
        auto_beta = 0.0 if method == "gd" else nag_beta
    eta = auto_eta if lr == "auto" else float(lr)
    beta = auto_beta if momentum == "auto" else float(momentum)
    return Tuning(eta, beta)


def _modal(method: Method, tuning: Tuning, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mode coefficients ``(T, D)`` of ``c_{t+1} = T c_t − D c_{t−1}``."""
    a = 1.0 - tuning.eta * lam
    beta = tuning.beta
    if method == "gd":
        return a, np.zeros_like(a)
    if method == "nag":
        return a * (1.0 + beta), a * beta
    return a + beta, np.full_like(a, beta)


def theory_rate(method: Method, tuning: Tuning, eigenvalues: np.ndarray) -> float:
    """Largest spectral radius over modes of the companion matrices ``[[T, −D], [1, 0]]``."""
    T, D = _modal(method, tuning, np.asarray(eigenvalues, dtype=np.float64))
    root = np.sqrt((T * T - 4.0 * D).astype(np.complex128))
    return float(np.max(np.maximum(np.abs(T + root), np.abs(T - root))) / 2.0)


def _iterate(c0: np.ndarray, T: np.ndarray, D: np.ndarray) -> Iterator[np.ndarray]:
    """Yield ``c_1, c_2, …`` of the modal recursion started at rest (``c_{−1} = c_0``)."""
    previous, current = c0, c0
    while True:
        previous, current = current, T * current - D * previous
        yield current


def residuals_eigen(
    H: np.ndarray, r0: np.ndarray, method: Method, tuning: Tuning, steps: int
) -> np.ndarray:
    """Return ``r_0, …, r_steps`` (shape ``(steps + 1, n)``) by the eigenbasis recursion."""
    lam, V = np.linalg.eigh(np.asarray(H, dtype=np.float64))
    T, D = _modal(method, tuning, lam)
    modes = _iterate(V.T @ r0, T, D)
    coefficients = [V.T @ r0] + [next(modes) for _ in range(steps)]
    return np.stack(coefficients) @ V.T


def residuals_direct(
    H: np.ndarray, r0: np.ndarray, method: Method, tuning: Tuning, steps: int
) -> np.ndarray:
    """Return ``r_0, …, r_steps`` by the matrix recursions of the module docstring (the oracle)."""
    A = np.eye(H.shape[0]) - tuning.eta * np.asarray(H, dtype=np.float64)
    beta = tuning.beta
    out, previous, current = [r0], r0, r0
    for _ in range(steps):
        if method == "gd":
            step = A @ current
        elif method == "nag":
            step = A @ (current + beta * (current - previous))
        else:
            step = A @ current + beta * (current - previous)
        previous, current = current, step
        out.append(current)
    return np.stack(out)


def _inputs(config: KernelDynamicsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm inputs ``(n, d)`` and targets ``(n,)`` in float64."""
    spec = config.data
    x, y = gsdata.sphere(spec.n, spec.d, seed=config.seed, dtype=torch.float64)
    x, y = x.numpy().copy(), y.numpy()[:, 0]
    if spec.near_pair is not None:
        x[-1] = _near(x[0], x[-1], spec.near_pair)
    return x, y


def _near(anchor: np.ndarray, other: np.ndarray, distance: float) -> np.ndarray:
    """Return the unit vector at Euclidean distance ``distance`` from ``anchor``, towards ``other``."""
    direction = other - (other @ anchor) * anchor
    if np.linalg.norm(direction) < 1e-8:  # other = ±anchor: any orthogonal direction will do
        direction = np.eye(anchor.size)[int(np.argmin(np.abs(anchor)))]
        direction = direction - (direction @ anchor) * anchor
    direction /= np.linalg.norm(direction)
    angle = 2.0 * math.asin(distance / 2.0)
    return math.cos(angle) * anchor + math.sin(angle) * direction


def _gram(config: KernelDynamicsConfig, x: np.ndarray) -> np.ndarray:
    inputs = torch.from_numpy(x)
    if config.gram == "h_infinity":
        H = probes.h_infinity(inputs)
    else:
        assert config.width is not None  # the config validator requires it
        net = models.two_layer(config.data.d, config.width, seed=config.seed, dtype=torch.float64)
        H = probes.ntk_gram(net, inputs)
    H = H.detach().to(torch.float64).numpy()
    return 0.5 * (H + H.T)


def _budget(config: KernelDynamicsConfig, kappa: float) -> tuple[int, str]:
    if config.steps is not None:
        return config.steps, ""
    scale = kappa if config.method == "gd" else math.sqrt(kappa)
    wanted = config.steps_per_kappa * scale if config.steps_per_kappa is not None else math.inf
    if not math.isfinite(wanted) or wanted > config.max_steps:
        return config.max_steps, f" (budget capped at max_steps={config.max_steps})"
    return max(1, math.ceil(wanted)), ""


def run(config: KernelDynamicsConfig) -> Trace:
    """Run the residual recursion of ``config``; return a ``Trace``.

    Records every ``record_every`` steps and at the last step: ``residual`` (``‖r_t‖``) and
    ``relative_residual`` (``‖r_t‖/‖r_0‖``); at step 0 also ``kappa``, ``lambda_min``,
    ``lambda_max``, ``eta``, ``beta`` and ``theory_rate``. The loop is
    :func:`gdscope.training.drive`: the divergence rule watches the relative residual
    (:data:`WATCH`, whose start is 1) and the run stops (status ``"stopped"``) at the first step
    ``t ≥ 1`` where it is below ``tol``.
    """
    start = time.perf_counter()
    x, y = _inputs(config)
    lam, V = np.linalg.eigh(_gram(config, x))
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    kappa = lam_max / lam_min if lam_min > 0 else math.inf
    tuning = tune(config.method, lam_min, lam_max, config.lr, config.momentum)
    steps, cap_note = _budget(config, kappa)
    dtype = numpy_dtype(config.dtype)
    T, D = (v.astype(dtype) for v in _modal(config.method, tuning, lam))
    c0 = (V.T @ -y).astype(dtype)
    r0 = float(np.linalg.norm(c0))
    first = {"residual": r0, "relative_residual": 1.0, "kappa": kappa}
    first |= {"lambda_min": lam_min, "lambda_max": lam_max, "eta": tuning.eta, "beta": tuning.beta}
    first["theory_rate"] = theory_rate(config.method, tuning, lam)
    modes = _iterate(c0, T, D)
    state = [c0]  # c_t

    def measure(t: int) -> Reading:
        if t == 0:
            return Reading((1.0,), first)
        c = state[0]
        residual = float(np.sqrt(np.dot(c, c)))
        relative = residual / r0
        return Reading((relative,), {"residual": residual, "relative_residual": relative})

    def update(t: int) -> None:
        state[0] = next(modes)

    def below_tol(t: int, reading: Reading) -> str | None:
        relative = reading.metrics["relative_residual"]
        if t == 0 or not relative < config.tol:  # ‖r_0‖/‖r_0‖ = 1 is never checked
            return None
        return f"relative residual {relative:.3e} < tol={config.tol:g} at step {t}"

    return drive(
        steps,
        measure,
        update,
        watch=WATCH,
        every=config.record_every,
        stop=below_tol,
        note=cap_note,
        started=start,
    )
