r"""Subgradient descent vs ISTA / FISTA on the lasso (seed 002, claims C2 and C3).

.. math:: F(w) = \frac{1}{2n}\lVert Xw - y\rVert^2 + \lambda\lVert w\rVert_1, \qquad w_0 = 0,

on a Gaussian design with a sparse truth (:func:`gdscope.data.lasso_design`). ``λ`` is absolute
(``lam``) or a fraction of ``λ_max = ‖Xᵀy/n‖_∞`` (``lam_fraction``), above which ``w* = 0``.
The smooth gradient ``Xᵀ(Xw − y)/n`` is written into ``w.grad`` and one of
:class:`gdscope.optim.Subgradient` (adds ``λ sign(w)``), :class:`~gdscope.optim.ProximalGD` (ISTA)
or :class:`~gdscope.optim.FISTA` steps; ``lr="auto"`` is ``1/L`` with ``L = λ_max(XᵀX/n)``.
FISTA's records are of its proximal iterates ``x_k`` (which carry the exact zeros).
The exact solution ``w*`` is scikit-learn's coordinate descent, ``Lasso(alpha=λ,
fit_intercept=False, tol=1e-12, max_iter=10⁶)``, computed once per trial in float64.

References:
    Tibshirani (1996), JRSS-B 58(1). Beck & Teboulle (2009), SIAM J. Imaging Sci. 2(1).
    Kumar (2024), "GD doesn't make the cut", arXiv 2401.08426.

"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from gdscope import data as gsdata
from gdscope.config.parts import Count, PositiveCount
from gdscope.optim import FISTA, make_optimizer
from gdscope.training import Reading, Trace, Watch, drive
from gdscope.trials._base import (
    AutoPositive,
    Dtype,
    KindConfig,
    NonNegativeFinite,
    exactly_one,
    one_of_pair,
    torch_dtype,
)

__all__ = ["WATCH", "LassoConfig", "LassoDataConfig", "exact_solution", "run"]

WATCH = Watch("objective", "objective", "1e6 × F(0)", floor=1e-12)
"""The divergence rule watches the objective ``F``; floor ``1e-12``."""


class LassoDataConfig(KindConfig):
    """Design ``X ∈ ℝ^{n×d}`` with ``N(0, 1)`` entries, ``y = Xw_true + noise·ξ``."""

    n: int = Field(default=200, ge=2)
    d: int = Field(default=50, ge=1)
    sparsity: Count = 5
    """Number of ``±1`` entries of ``w_true``, at most ``d``."""
    noise: NonNegativeFinite = 0.1

    @model_validator(mode="after")
    def _sparsity_fits(self) -> LassoDataConfig:
        if self.sparsity > self.d:
            raise ValueError(f"sparsity must be <= d={self.d}, got sparsity={self.sparsity}")
        return self


class LassoConfig(KindConfig):
    """One lasso run: design, ``λ`` (absolute or a fraction of ``λ_max``), method, steps."""

    RECORDED_METRICS = ("objective", "l1_norm", "l1_norm_avg", "zero_fraction", "nonzeros")
    RECORDED_METRICS += ("dist_to_exact", "exact_l1_norm", "exact_objective")
    kind: Literal["lasso"] = "lasso"
    data: LassoDataConfig = Field(default_factory=LassoDataConfig)
    lam: NonNegativeFinite | None = None
    lam_fraction: NonNegativeFinite | None = 0.1
    """``λ = lam_fraction · λ_max``; excludes ``lam``."""
    method: Literal["subgradient", "ista", "fista"] = "ista"
    lr: AutoPositive = "auto"
    schedule: Literal["constant", "sqrt"] = "constant"
    """Step-size schedule of ``subgradient`` (the proximal methods take ``constant`` only)."""
    steps: PositiveCount = 1000
    record_every: PositiveCount = 1
    seed: Count = 0
    dtype: Dtype = "float64"

    @model_validator(mode="before")
    @classmethod
    def _lambda_given_one_way(cls, data: Any) -> Any:
        return one_of_pair(data, "lam", "lam_fraction")

    @model_validator(mode="after")
    def _consistent(self) -> LassoConfig:
        exactly_one(self, "lam", "lam_fraction")
        if self.schedule != "constant" and self.method != "subgradient":
            raise ValueError(
                f"schedule applies to method 'subgradient' only, got method={self.method!r}, "
                f"schedule={self.schedule!r}"
            )
        return self


def exact_solution(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Return the lasso minimiser by scikit-learn's coordinate descent (``w*``, shape ``(d,)``)."""
    from sklearn.linear_model import Lasso

    if lam <= 0:  # least squares: sklearn warns on alpha=0; lstsq is exact
        return np.linalg.lstsq(X, y, rcond=None)[0]
    solver = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=10**6)
    return np.asarray(solver.fit(X, y).coef_, dtype=np.float64)


def _problem(config: LassoConfig) -> tuple[Tensor, Tensor, float]:
    spec = config.data
    X, y = gsdata.lasso_design(
        spec.n, spec.d, spec.sparsity, spec.noise, seed=config.seed, dtype=torch.float64
    )
    lam = config.lam if config.lam is not None else (config.lam_fraction or 0.0)
    if config.lam is None:
        lam *= gsdata.lambda_max(X, y)
    return X, y[:, 0], lam


def _optimizer(config: LassoConfig, w: Tensor, lr: float, lam: float) -> torch.optim.Optimizer:
    if config.method == "subgradient":
        return make_optimizer("subgradient", [w], lr, l1=lam, schedule=config.schedule)
    return make_optimizer(config.method, [w], lr, l1=lam)


def run(config: LassoConfig) -> Trace:
    """Run ``config``; return a ``Trace``.

    Records ``objective``, ``l1_norm``, ``l1_norm_avg``, ``zero_fraction``, ``nonzeros`` and
    ``dist_to_exact`` every ``record_every`` steps and at the last one, and ``exact_l1_norm`` and
    ``exact_objective`` at the last step.

    ``l1_norm_avg`` is the mean of ``‖w_s‖₁`` over every step ``s ≤ t`` (not only recorded ones).
    The loop is :func:`gdscope.training.drive`; the divergence rule watches the objective with
    floor ``1e-12`` (:data:`WATCH`).
    """
    start = time.perf_counter()
    X64, y64, lam = _problem(config)
    w_star = torch.from_numpy(exact_solution(X64.numpy(), y64.numpy(), lam))
    dtype = torch_dtype(config.dtype)
    X, y = X64.to(dtype), y64.to(dtype)
    n = X.shape[0]
    L = float(torch.linalg.eigvalsh(X64.T @ X64 / n)[-1])
    lr = 1.0 / L if config.lr == "auto" else config.lr
    w = torch.zeros(X.shape[1], dtype=dtype, requires_grad=True)
    optimizer = _optimizer(config, w, lr, lam)
    l1_sum = [0.0]  # Σ_{s ≤ t} ‖w_s‖₁

    def measure(t: int) -> Reading:
        iterate = _iterate(optimizer, w)
        objective = _objective(X, y, iterate, lam)
        l1_sum[0] += float(iterate.abs().sum())
        l1_avg = l1_sum[0] / (t + 1)
        return Reading((objective,), deferred=lambda: _metrics(iterate, objective, l1_avg, w_star))

    def update(t: int) -> None:
        with torch.no_grad():
            w.grad = X.T @ (X @ w - y) / n
        optimizer.step()

    trace = drive(
        config.steps, measure, update, watch=WATCH, every=config.record_every, started=start
    )
    exact = {"exact_l1_norm": float(w_star.abs().sum())}
    exact["exact_objective"] = _objective(X64, y64, w_star, lam)
    trace.record(trace.steps, exact)
    return trace


def _iterate(optimizer: torch.optim.Optimizer, w: Tensor) -> Tensor:
    """Return the point the records describe: FISTA's proximal iterate ``x_k``, else ``w``."""
    if isinstance(optimizer, FISTA):
        return optimizer.iterates()[0]
    return w.detach()


@torch.no_grad()
def _objective(X: Tensor, y: Tensor, w: Tensor, lam: float) -> float:
    residual = X @ w - y
    return float(0.5 * residual.dot(residual) / X.shape[0] + lam * w.abs().sum())


def _metrics(w: Tensor, objective: float, l1_avg: float, w_star: Tensor) -> dict[str, float]:
    zeros = int((w == 0).sum())
    return {
        "objective": objective,
        "l1_norm": float(w.abs().sum()),
        "l1_norm_avg": l1_avg,
        "zero_fraction": zeros / w.numel(),
        "nonzeros": float(w.numel() - zeros),
        "dist_to_exact": float(torch.linalg.vector_norm(w.to(torch.float64) - w_star)),
    }
