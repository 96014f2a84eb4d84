r"""Sparse linear regression designs for the lasso, and the critical regularization ``λ_max``.

The lasso objective used throughout gdscope is

.. math:: F(w) = \frac{1}{2n}\lVert Xw - y \rVert_2^2 + \lambda \lVert w \rVert_1 ,

the same scaling as scikit-learn's ``Lasso(alpha=λ)``.
"""

from __future__ import annotations

import numpy as np
import torch

from gdscope import _checks as check

from . import _common as c

_TRUTH, _DESIGN, _NOISE = 1, 2, 3  # independent generator streams


def _check_sizes(d: int, sparsity: int) -> tuple[int, int]:
    d = check.positive_int("d", d)
    if isinstance(sparsity, bool) or not isinstance(sparsity, int) or not 0 <= sparsity <= d:
        raise ValueError(f"sparsity must be an integer in [0, d={d}], got {sparsity!r}")
    return d, sparsity


def _truth(d: int, sparsity: int, seed: int) -> np.ndarray:
    gen = c.rng(seed, stream=_TRUTH)
    w = np.zeros((d, 1))
    support = gen.choice(d, size=sparsity, replace=False)
    w[support, 0] = gen.choice(np.array([-1.0, 1.0]), size=sparsity)
    return w


def lasso_truth(
    d: int = 50,
    sparsity: int = 5,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> torch.Tensor:
    """Return the true coefficients ``w*`` behind ``lasso_design(..., d, sparsity, seed=seed)``.

    ``sparsity`` coordinates chosen uniformly at random are ``±1`` (random signs), the rest 0.
    The draw depends only on ``(d, sparsity, seed)``, not on ``n`` or the noise.

    Args:
        d: number of features, ≥ 1.
        sparsity: number of non-zero coefficients, in ``[0, d]``.
        seed: seed of the generator.
        dtype: floating-point dtype.
        device: device of the returned tensor.

    Returns:
        ``w*`` of shape ``(d, 1)``.

    Raises:
        ValueError: on bad sizes or a bad seed/dtype/device.

    """
    d, sparsity = _check_sizes(d, sparsity)
    seed, dtype, device = c.common(seed, dtype, device)
    return c.to_float(_truth(d, sparsity, seed), dtype, device)


def lasso_design(
    n: int = 200,
    d: int = 50,
    sparsity: int = 5,
    noise: float = 0.1,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw a Gaussian design with a sparse ground truth: ``y = X w* + σ ξ``.

    .. math:: X_{ij} \sim \mathcal N(0, 1),\quad \xi_i \sim \mathcal N(0, 1),\quad
              w^* = \texttt{lasso\_truth}(d, s, \text{seed}).

    Returns ``(x, y)`` like every loader; the coefficients are
    ``lasso_truth(d, sparsity, seed=seed)``::

        x, y = lasso_design(n=200, d=50, sparsity=5, seed=0)
        w_true = lasso_truth(50, 5, seed=0)

    Args:
        n: number of samples, ≥ 1.
        d: number of features, ≥ 1.
        sparsity: number of non-zero true coefficients, in ``[0, d]``.
        noise: standard deviation ``σ`` ≥ 0 of the additive Gaussian noise.
        seed: seed of the generator.
        dtype: floating-point dtype of ``x`` and ``y``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)`` with shapes ``(n, d)`` and ``(n, 1)``.

    Raises:
        ValueError: on bad sizes, negative noise, or a bad seed/dtype/device.

    References:
        R. Tibshirani, "Regression Shrinkage and Selection via the Lasso", JRSS-B 1996;
        A. Beck, M. Teboulle, "A Fast Iterative Shrinkage-Thresholding Algorithm", SIAM J.
        Imaging Sci. 2009.

    """
    n = check.positive_int("n", n)
    d, sparsity = _check_sizes(d, sparsity)
    noise = check.real("noise", noise, low=0.0)
    seed, dtype, device = c.common(seed, dtype, device)
    x = c.rng(seed, stream=_DESIGN).standard_normal((n, d))
    y = x @ _truth(d, sparsity, seed) + noise * c.rng(seed, stream=_NOISE).standard_normal((n, 1))
    return c.to_float(x, dtype, device), c.to_float(y, dtype, device)


def lambda_max(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Compute the smallest λ for which ``w = 0`` minimizes the lasso objective ``F`` above.

    .. math:: \lambda_{\max} = \lVert X^\top y / n \rVert_\infty

    ``0`` is optimal iff ``0 ∈ ∂F(0) = −Xᵀy/n + λ[−1, 1]^d``, i.e. iff ``λ ≥ λ_max``.

    Args:
        x: design of shape ``(n, d)``.
        y: targets of shape ``(n,)`` or ``(n, 1)``.

    Returns:
        ``λ_max`` as a Python float (computed in float64).

    Raises:
        ValueError: if the shapes do not match.

    References:
        J. Friedman, T. Hastie, R. Tibshirani, "Regularization Paths for Generalized Linear
        Models via Coordinate Descent", J. Stat. Softw. 2010, §2.5.

    """
    if x.ndim != 2 or y.shape[0] != x.shape[0] or y.reshape(y.shape[0], -1).shape[1] != 1:
        raise ValueError(
            f"x must be (n, d) and y (n,) or (n, 1) with the same n; got x {tuple(x.shape)}, "
            f"y {tuple(y.shape)}"
        )
    x64, y64 = x.detach().to(torch.float64), y.detach().reshape(-1, 1).to(torch.float64)
    return (x64.T @ y64 / x.shape[0]).abs().max().item()
