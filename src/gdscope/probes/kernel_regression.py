r"""How close a trained network is to kernel regression with its NTK at initialization.

In the lazy (kernel) regime, gradient descent on the square loss trains the linearized model
``f_0(x) + J_0(x)(θ − θ_0)``, which converges to the interpolant of least ``‖θ − θ_0‖``

.. math::

    θ_∞ − θ_0 = J_0^\top K_0^{-1} r_0, \qquad r_0 = \operatorname{vec}(y − f_0(X)),
    \qquad K_0 = J_0 J_0^\top = K_0(X, X),

and predicts ``f^{ker}(x_*) = f_0(x_*) + K_0(x_*, X) K_0^{-1} r_0`` (Lee et al. 2019, "Wide
neural networks of any depth evolve as linear models under gradient descent", eq. (9)–(11)).
The probe compares the network with both:

* ``kernel_regression_gap``: RMS over the held-out inputs (and outputs) of ``f_t(x_*) − f^{ker}(x_*)``.
  The held-out inputs are ``eval_data``'s; without a test split, and when every training input
  has unit norm (``sphere``, ``teacher_student``), they are ``HOLDOUT`` = 64 fresh points uniform
  on the unit sphere drawn from a fixed generator (seed ``HOLDOUT_SEED``), the same for every
  trial; otherwise the gap is not reported;
* ``kernel_regression_train_gap``: the same on the training inputs (where ``f^{ker} = y``);
* ``min_norm_ratio``: ``‖θ_t − θ_0‖ / ‖J_0^\top K_0^{-1} r_0‖``, using
  ``‖J_0^\top K_0^{-1} r_0‖² = r_0^\top K_0^{-1} r_0`` (no Jacobian needed);
* ``kernel_test_loss``: half mean squared error of ``f^{ker}`` on the held-out set (summed over
  outputs, as :func:`gdscope.losses.mse`);
* ``kernel_infinite_gap``: RMS over the held-out inputs of ``f_t(x_*) − f^∞(x_*)``, the same
  regression with the infinite-width NTK ``Θ`` in place of ``K_0`` (``f^∞(x_*) = f_0(x_*) +
  Θ(x_*, X) Θ^{-1} r_0``, Lee et al. 2019, eq. (16) with the network's own ``f_0``), where
  :func:`~gdscope.probes.infinite_width.mlp_kernels` covers the model (a plain random ``mlp``);
* ``kernel_to_infinite_gap``: RMS of ``f^{ker}(x_*) − f^∞(x_*)``, how far ``K_0``'s regression is
  from the infinite-width one (both start from ``f_0``, so this is the kernel's finite-width
  fluctuation seen through the regression: ``O(width^{-1/2})``). Neither infinite-width gap
  sees the scale of ``Θ`` (``Θ_* Θ^{-1}`` does not change with it), nor the optimizer: under
  per-layer learning rates (μP) GD's limit is the regression with a preconditioned kernel;
* ``kernel_rademacher``: ``√(r_0^\top K_0^{-1} r_0 · tr K_0) / n``, the Rademacher-complexity
  bound of the kernel class of RKHS norm ``√(r_0^\top K_0^{-1} r_0)`` (Bartlett & Mendelson
  2002, Lemma 22; with ``H^∞`` and ``y`` in place of ``K_0`` and ``r_0`` this is the quantity of
  Arora et al. 2019, Theorem 5.1).

Everything at initialization (``K_0``, the cross-Gram ``K_0(X_*, X)``, ``f_0`` on both sets, the
solve) is computed once per run, in float64, from a copy of the model holding ``θ_0``, and kept
in ``ProbeContext.memory``. The minimum-norm statement is about plain GD: it holds when every
parameter has the same learning-rate multiplier (``standard``, ``ntk``); under ``mup`` or
``meanfield`` GD is preconditioned and ``min_norm_ratio`` measures the Euclidean norm anyway.
For ``k`` outputs the Gram is the full ``nk × nk`` one (ordering ``i·k + a``).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import get_lapack_funcs
from torch import Tensor, nn

from gdscope.functional import Params
from gdscope.probes.infinite_width import covered_activation, mlp_kernels
from gdscope.probes.ntk import ntk_gram

__all__ = [
    "KernelSolution",
    "flat_targets",
    "kernel_solution",
    "regression_targets",
    "rms",
    "sphere_holdout",
]

HOLDOUT = 64
"""Fresh unit-sphere inputs used as held-out points when the data has no test split."""
HOLDOUT_SEED = 12345


@dataclass(frozen=True)
class KernelSolution:
    r"""Kernel regression with the NTK at initialization (all float64, on the CPU).

    Attributes:
        test_prediction: ``vec f^{ker}(X_*)`` (``n_* k``), or ``None`` without held-out inputs.
        min_norm: ``‖J_0^\top K_0^{-1} r_0‖``.
        rademacher: ``√(r_0^\top K_0^{-1} r_0 · tr K_0) / n``.
        infinite_prediction: ``vec f^∞(X_*) = vec f_0(X_*) + (Θ(X_*, X) Θ(X, X)^{-1} ⊗ I_k)
            r_0``, the same regression with the infinite-width NTK ``Θ`` of the distribution
            the model was drawn from (:func:`~gdscope.probes.infinite_width.mlp_kernels`), or
            ``None`` (no held-out inputs, or a model it does not cover).

    """

    test_prediction: Tensor | None
    min_norm: float
    rademacher: float
    infinite_prediction: Tensor | None = None


def _model_at(model: nn.Module, params: Params) -> nn.Module:
    """Return a float64 copy of ``model`` at ``params`` (the Gram's solve needs float64)."""
    clone = copy.deepcopy(model).double()
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if name in params:
                p.copy_(params[name])
    return clone


def kernel_solution(
    model: nn.Module, init_params: Params, x: Tensor, y: Tensor, x_test: Tensor | None = None
) -> KernelSolution:
    """Solve kernel regression with the empirical NTK of ``model`` at ``init_params``.

    Args:
        model: the network (its current parameters are not used).
        init_params: ``θ_0`` by name (trainable parameters).
        x: training inputs ``(n, ...)``.
        y: training targets as the square loss reads them (:func:`regression_targets`).
        x_test: held-out inputs, or ``None``.

    Returns:
        The :class:`KernelSolution`.

    Raises:
        ValueError: if the targets do not match the outputs. A singular ``K_0`` takes the
            least-norm solution when one interpolates (repeated inputs with equal targets);
            otherwise (no interpolant) ``min_norm`` / ``rademacher`` are nan and there is no
            prediction.

    """
    model0 = _model_at(model, init_params)
    x = x.double()
    x_test = None if x_test is None else x_test.double()
    with torch.no_grad():
        f0 = model0(x).reshape(x.shape[0], -1).cpu()
        f0_test = None if x_test is None else model0(x_test).reshape(x_test.shape[0], -1)
    r0 = (regression_targets(y, f0.shape[1]) - f0).reshape(-1)
    gram = ntk_gram(model0, x).cpu()
    alpha = _solve(gram, r0)
    if alpha is None:  # e.g. n·k > number of parameters: no interpolant
        return KernelSolution(test_prediction=None, min_norm=math.nan, rademacher=math.nan)
    energy = float(r0 @ alpha)
    prediction = infinite = None
    if x_test is not None and f0_test is not None:
        cross = ntk_gram(model0, x_test, x).double().cpu()
        f0_flat = f0_test.double().cpu().reshape(-1)
        prediction = f0_flat + cross @ alpha
        infinite = _infinite_width_prediction(model0, x, x_test, f0_flat, r0)
    n = x.shape[0]
    return KernelSolution(
        test_prediction=prediction,
        min_norm=math.sqrt(max(energy, 0.0)),
        rademacher=math.sqrt(max(energy, 0.0) * float(torch.trace(gram))) / n,
        infinite_prediction=infinite,
    )


def _solve(gram: Tensor, r0: Tensor, kernel: str = "K_0", stacklevel: int = 3) -> Tensor | None:
    """Return ``K⁻¹ r_0`` (Cholesky; warns when ill-conditioned, naming the ``kernel``).

    For a singular ``K``: the least-norm solution when one interpolates, else ``None``. Singular
    includes numerically so: an input given twice makes two rows of ``K`` equal, and Cholesky
    may still succeed on the rounding of the pivot that should be 0 (``Θ ⊗ I`` of a repeated
    input: ``κ₁ ≈ 6e16``). Its solve is then backward stable (a small residual) but puts that
    rounding, divided by the pivot, along the null direction: the residual cannot tell, the
    condition can. Below ``rcond = size·ε`` (LAPACK's estimate of ``1/κ₁``; over 200 such
    Grams it was at most ``2.8ε``) the smallest eigenvalue is at the level of rounding, where
    :func:`_consistent_min_norm` counts it as zero, and its least-norm solution is taken if it
    interpolates. If it does not, that eigenvalue carries the data (inputs ``1e-7`` apart:
    ``rcond ≈ 3.7ε``, a residual of ``1e-7``), and the Cholesky solve is kept, with the warning
    that it keeps about no digits.
    """
    chol, info = torch.linalg.cholesky_ex(gram)
    rcond = _rcond(gram, chol) if int(info) == 0 else 0.0
    if not rcond >= gram.shape[0] * torch.finfo(torch.float64).eps:
        alpha = _consistent_min_norm(gram, r0)  # repeated inputs with equal targets interpolate
        if alpha is not None or int(info) != 0:
            return alpha
    _warn_if_ill_conditioned(rcond, kernel, stacklevel)
    return torch.cholesky_solve(r0[:, None], chol)[:, 0]


def _infinite_width_prediction(
    model0: nn.Module, x: Tensor, x_test: Tensor, f0_test: Tensor, r0: Tensor
) -> Tensor | None:
    """Return ``vec f_0(X_*) + (Θ(X_*, X) ⊗ I_k)(Θ(X, X) ⊗ I_k)^{-1} r_0``.

    ``None`` when :func:`~gdscope.probes.infinite_width.mlp_kernels` does not cover the model.
    """
    if covered_activation(model0) is None:
        return None
    theta = torch.from_numpy(mlp_kernels(model0, x).ntk)
    cross = torch.from_numpy(mlp_kernels(model0, x_test, x).ntk)
    eye = torch.eye(r0.numel() // x.shape[0], dtype=torch.float64)
    alpha = _solve(torch.kron(theta, eye), r0, "the infinite-width NTK Θ", stacklevel=4)
    return None if alpha is None else f0_test + torch.kron(cross, eye) @ alpha


ILL_CONDITIONED = 1e12
"""Warn above this condition number of ``K_0`` or ``Θ`` (float64 keeps about ``16 − log₁₀ κ`` digits)."""


def _rcond(gram: Tensor, chol: Tensor) -> float:
    """LAPACK's estimate of ``1/κ₁(K)`` (``dpocon`` on the Cholesky factor)."""
    norm = float(gram.abs().sum(0).max())
    (pocon,) = get_lapack_funcs(("pocon",), dtype=np.float64)
    rcond, _ = pocon(np.asfortranarray(chol.numpy()), norm, uplo="L")
    return float(rcond)


def _warn_if_ill_conditioned(rcond: float, kernel: str, stacklevel: int) -> None:
    """Warn when ``κ₁ = 1/rcond`` of the Gram ``kernel`` (``K_0`` or ``Θ``) is large.

    Near-repeated inputs make the Gram nearly singular: Cholesky still succeeds, but the solve,
    and with it the kernel prediction, keeps only about ``16 − log₁₀ κ`` digits (inputs 1e-6
    apart: κ ≈ 3.5e13, predictions off by 4.5e-4).
    """
    if 0 < rcond < 1 / ILL_CONDITIONED:
        warnings.warn(
            f"kernel regression: {kernel} is ill-conditioned (κ₁ ≈ {1 / rcond:.1e}): its solve "
            f"keeps about {max(0.0, 16 - math.log10(1 / rcond)):.0f} digits; near-repeated "
            "inputs usually cause it",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


CONSISTENT_TOL = 1e-8
"""A singular ``K_0`` interpolates when ``‖K_0 α − r_0‖ ≤`` this ``· ‖r_0‖`` for the least-norm ``α``."""


def _consistent_min_norm(gram: Tensor, r0: Tensor) -> Tensor | None:
    """Return the least-norm ``α`` of ``K_0 α = r_0`` for a singular PSD ``K_0``, or None.

    ``α = Σ_{λ_i > cut} u_i u_iᵀ r_0 / λ_i`` over the eigenpairs above ``cut = size·ε·λ_max``
    (what rounding leaves of a zero eigenvalue); None unless it solves the system to
    :data:`CONSISTENT_TOL`. Two equal inputs with equal targets give a singular but consistent
    system, whose least-norm solution spreads the weight of the repeated point over its copies
    (the same predictor as with one copy); different targets at equal inputs give None.
    """
    values, vectors = torch.linalg.eigh(gram)
    cut = gram.shape[0] * torch.finfo(gram.dtype).eps * float(values.abs().max())
    kept = values > cut
    alpha = vectors[:, kept] @ ((vectors[:, kept].T @ r0) / values[kept])
    residual = float(torch.linalg.vector_norm(gram @ alpha - r0))
    return alpha if residual <= CONSISTENT_TOL * float(torch.linalg.vector_norm(r0)) else None


def flat_targets(y: Tensor, output: Tensor) -> Tensor:
    """``vec`` of :func:`regression_targets` for an output of ``output``'s width."""
    return regression_targets(y, output.reshape(output.shape[0], -1).shape[1]).reshape(-1)


def regression_targets(y: Tensor, k: int) -> Tensor:
    """Return the ``(n, k)`` float64 (CPU) targets the square loss fits to ``k`` outputs.

    As :func:`gdscope.losses.mse` reads them: ``(n, k)``, or ``(n,)`` when ``k = 1`` (integer
    values included: they are the values); for ``k > 1``, integer class labels ``(n,)`` are
    one-hot encoded (as :func:`gdscope.trials.trial` does before training).

    Raises:
        ValueError: on any other shape, or a class label outside ``[0, k)``.

    """
    n = y.shape[0] if y.ndim else 0
    if k > 1 and y.ndim == 1 and not (y.is_floating_point() or y.is_complex()):
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(
                f"class labels must lie in [0, {k}) for {k} outputs, got labels from "
                f"{int(y.min())} to {int(y.max())}"
            )
        return torch.nn.functional.one_hot(y, k).to(torch.float64).cpu()
    if y.shape == (n, k) or (k == 1 and y.ndim == 1):
        return y.reshape(n, k).to(torch.float64).cpu()
    raise ValueError(
        f"targets of shape {tuple(y.shape)} do not match {k} outputs; pass (n, {k})"
        + (", or (n,)" if k == 1 else ", or class labels (n,)")
    )


def rms(a: Tensor) -> float:
    """Root mean square of ``a`` in float64 (``sqrt`` taken in torch)."""
    return float(torch.sqrt(torch.mean(a.double() ** 2)))


def sphere_holdout(x: Tensor, n: int = HOLDOUT) -> Tensor | None:
    """``n`` fresh points uniform on the unit sphere (fixed generator), if ``x`` lies on it."""
    if x.ndim != 2 or not torch.allclose(
        x.double().norm(dim=1), torch.ones(x.shape[0], dtype=torch.float64), atol=1e-5
    ):
        return None
    gen = torch.Generator().manual_seed(HOLDOUT_SEED)
    g = torch.randn(n, x.shape[1], generator=gen, dtype=torch.float64)
    return (g / g.norm(dim=1, keepdim=True)).to(x.device, x.dtype)
