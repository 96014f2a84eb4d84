"""Chebyshev-polynomial regression: the edge-of-stability toy problem of Cohen et al. (2021)."""

from __future__ import annotations

import torch

from gdscope import _checks as check

from . import _common as c


def chebyshev(
    k: int = 5,
    n: int = 20,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` evenly spaced points of ``[−1, 1]`` with the Chebyshev polynomial ``T_k`` as target.

    .. math::
        x_i = -1 + \frac{2i}{n - 1},\qquad y_i = T_k(x_i),\qquad
        T_0 = 1,\ T_1 = x,\ T_{j+1} = 2x\,T_j - T_{j-1}

    (so ``T_k(cos θ) = cos kθ``). The data are deterministic; ``seed`` is accepted for a uniform
    loader signature and only checked.

    Args:
        k: polynomial degree, ≥ 0.
        n: number of points, ≥ 2.
        seed: accepted for uniformity (unused).
        dtype: floating-point dtype of ``x`` and ``y``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``, both of shape ``(n, 1)``; computed in float64, then cast.

    Raises:
        ValueError: on ``k < 0``, ``n < 2``, or a bad seed/dtype/device.

    Example:
        >>> x, y = chebyshev(k=2, n=3, dtype=torch.float64)
        >>> y.flatten().tolist()  # T_2(x) = 2x² − 1 at −1, 0, 1
        [1.0, -1.0, 1.0]

    References:
        J. Cohen, S. Kaur, Y. Li, J. Z. Kolter, A. Talwalkar, "Gradient Descent on Neural
        Networks Typically Occurs at the Edge of Stability", ICLR 2021 (Chebyshev regression).

    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer (polynomial degree), got {k!r}")
    n = check.positive_int("n", n)
    if n < 2:
        raise ValueError(f"n must be an integer ≥ 2 (points spanning [-1, 1]), got {n}")
    _, dtype, device = c.common(seed, dtype, device)
    x = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    previous, current = torch.ones_like(x), x
    if k == 0:
        current = previous
    for _ in range(k - 1):
        previous, current = current, 2.0 * x * current - previous
    return (
        x[:, None].to(device=device, dtype=dtype),
        current[:, None].to(device=device, dtype=dtype),
    )
