"""Synthetic data: points on the unit sphere, a teacher-student task, a Gaussian mixture.

All draws come from ``numpy.random.default_rng`` seeded by ``seed`` in float64 on the CPU and are
then cast, so the same seed gives bitwise-identical tensors whatever the device.
"""

from __future__ import annotations

import numpy as np
import torch

from gdscope import _checks as check

from . import _common as c

_TARGETS = ("gaussian", "sign")
_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "linear": lambda z: z,
}


def _unit_sphere(gen: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Draw ``n`` points uniform on the unit sphere ``S^{d-1}``: normalized standard Gaussians."""
    g = gen.standard_normal((n, d))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def sphere(
    n: int,
    d: int,
    target: str = "gaussian",
    out_dim: int = 1,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw inputs uniform on the unit sphere with random targets (as in Du et al. 2019).

    .. math::
        x_i = g_i / \lVert g_i \rVert,\quad g_i \sim \mathcal N(0, I_d);\qquad
        y_i \sim \mathcal N(0, I_k)\ \text{(gaussian)}\quad\text{or}\quad
        y_{ij} \sim \mathrm{Uniform}\{-1, +1\}\ \text{(sign)}.

    Targets are independent of the inputs, so fitting them is pure memorization.

    Args:
        n: number of points, ≥ 1.
        d: input dimension, ≥ 1.
        target: ``"gaussian"`` (standard normal) or ``"sign"`` (random ±1).
        out_dim: number of target columns ``k``, ≥ 1.
        seed: seed of the generator.
        dtype: floating-point dtype of ``x`` and ``y``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)`` with ``x`` of shape ``(n, d)``, ``‖x_i‖ = 1``, and ``y`` of shape ``(n, k)``.

    Raises:
        ValueError: on a non-positive size, an unknown target, or a bad seed/dtype/device.

    Example:
        >>> x, y = sphere(8, 4, seed=0)
        >>> tuple(x.shape), tuple(y.shape)
        ((8, 4), (8, 1))

    References:
        S. S. Du, X. Zhai, B. Póczos, A. Singh, "Gradient Descent Provably Optimizes
        Over-parameterized Neural Networks", ICLR 2019.

    """
    n, d, k = (
        check.positive_int("n", n),
        check.positive_int("d", d),
        check.positive_int("out_dim", out_dim),
    )
    check.one_of("target", target, _TARGETS)
    seed, dtype, device = c.common(seed, dtype, device)
    gen = c.rng(seed)
    x = _unit_sphere(gen, n, d)
    if target == "gaussian":
        y = gen.standard_normal((n, k))
    else:
        y = gen.choice(np.array([-1.0, 1.0]), size=(n, k))
    return c.to_float(x, dtype, device), c.to_float(y, dtype, device)


def sphere_images(
    n: int,
    channels: int = 1,
    size: int = 6,
    target: str = "sign",
    out_dim: int = 1,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-shaped unit-norm inputs with random targets: :func:`sphere` reshaped to ``(n, C, H, W)``.

    Each image, flattened, is uniform on the unit sphere of ``ℝ^{C·size·size}``; the targets are as
    in :func:`sphere` (random ±1 by default), so convolutional nets can be asked to memorize random
    labels of non-degenerate inputs (Allen-Zhu, Li & Song 2019, who cover CNNs and ResNets).

    Returns:
        ``(x, y)``, ``x`` of shape ``(n, channels, size, size)`` and ``y`` of shape ``(n, out_dim)``.

    Example:
        >>> x, y = sphere_images(4, channels=2, size=3, seed=0)
        >>> tuple(x.shape), tuple(y.shape)
        ((4, 2, 3, 3), (4, 1))

    """
    channels, size = check.positive_int("channels", channels), check.positive_int("size", size)
    x, y = sphere(n, channels * size * size, target, out_dim, seed=seed, dtype=dtype, device=device)
    return x.reshape(x.shape[0], channels, size, size), y


def teacher_student(
    n: int,
    d: int,
    teacher_width: int,
    out_dim: int = 1,
    noise: float = 0.0,
    activation: str = "relu",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Draw unit-sphere inputs labelled by a random two-layer teacher network, plus noise.

    .. math::
        y_i = \frac{1}{\sqrt m} A^\top \sigma(W x_i) + \varepsilon\,\xi_i,\qquad
        W_{rj}, A_{rk}, \xi_{ik} \sim \mathcal N(0, 1),

    with ``m = teacher_width``, ``ε = noise`` and ``x_i`` uniform on ``S^{d-1}``, so that
    ``w_r^T x_i ~ N(0, 1)`` and, averaged over teachers, ``E[y^2] = E[σ(z)^2] + ε^2`` with
    ``z ~ N(0, 1)`` (``1/2 + ε^2`` for ReLU). The teacher is drawn from a separate stream, so
    it is the same for every ``n``.

    Args:
        n: number of points, ≥ 1.
        d: input dimension, ≥ 1.
        teacher_width: hidden width ``m`` of the teacher, ≥ 1.
        out_dim: number of outputs ``k``, ≥ 1.
        noise: standard deviation ``ε`` ≥ 0 of additive Gaussian label noise.
        activation: ``"relu"``, ``"tanh"`` or ``"linear"``.
        seed: seed of the generator.
        dtype: floating-point dtype of ``x`` and ``y``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)`` with shapes ``(n, d)`` and ``(n, k)``.

    Raises:
        ValueError: on a non-positive size, negative noise, an unknown activation, or a bad
            seed/dtype/device.

    References:
        E. Gardner, B. Derrida, "Three unfinished works on the optimal storage capacity of
        networks", J. Phys. A 22 (1989); S. Goldt et al., "Dynamics of stochastic gradient
        descent for two-layer neural networks in the teacher-student setup", NeurIPS 2019.

    """
    n, d = check.positive_int("n", n), check.positive_int("d", d)
    m, k = (
        check.positive_int("teacher_width", teacher_width),
        check.positive_int("out_dim", out_dim),
    )
    noise = check.real("noise", noise, low=0.0)
    sigma = _ACTIVATIONS[check.one_of("activation", activation, tuple(_ACTIVATIONS))]
    seed, dtype, device = c.common(seed, dtype, device)
    teacher = c.rng(seed, stream=1)
    w, a = teacher.standard_normal((m, d)), teacher.standard_normal((m, k))
    gen = c.rng(seed)
    x = _unit_sphere(gen, n, d)
    y = sigma(x @ w.T) @ a / np.sqrt(m) + noise * gen.standard_normal((n, k))
    return c.to_float(x, dtype, device), c.to_float(y, dtype, device)


def gaussian_mixture(
    n: int,
    d: int,
    classes: int,
    separation: float,
    std: float = 1.0,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Balanced isotropic Gaussian mixture whose class means are pairwise ``separation`` apart.

    .. math::
        \mu_c = \tfrac{\Delta}{\sqrt 2}\, u_c,\quad u_1..u_C \text{ random orthonormal};\qquad
        x_i = \mu_{y_i} + s\, g_i,\quad g_i \sim \mathcal N(0, I_d),

    so ``‖μ_a − μ_b‖ = Δ`` for every pair of classes. Labels are ``i mod C`` in a random order
    (class sizes differ by at most one).

    Args:
        n: number of points, ≥ 1.
        d: input dimension, ≥ ``classes`` (the means are orthonormal directions).
        classes: number of classes ``C``, ≥ 2.
        separation: distance ``Δ`` ≥ 0 between any two class means.
        std: within-class standard deviation ``s`` ≥ 0 per coordinate.
        seed: seed of the generator.
        dtype: floating-point dtype of ``x``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``: ``x`` float of shape ``(n, d)``, ``y`` long class labels of shape ``(n,)``.

    Raises:
        ValueError: on bad sizes, ``classes > d``, negative separation or std, or a bad
            seed/dtype/device.

    References:
        C. M. Bishop, "Pattern Recognition and Machine Learning", Springer 2006, §4.2.

    """
    n, d = check.positive_int("n", n), check.positive_int("d", d)
    classes = check.positive_int("classes", classes)
    if classes < 2 or classes > d:
        raise ValueError(f"classes must be an integer in [2, d={d}], got {classes}")
    separation = check.real("separation", separation, low=0.0)
    std = check.real("std", std, low=0.0)
    seed, dtype, device = c.common(seed, dtype, device)
    gen = c.rng(seed)
    q, _ = np.linalg.qr(gen.standard_normal((d, classes)))
    means = separation / np.sqrt(2.0) * q.T  # (classes, d), orthonormal rows scaled
    y = gen.permutation(np.arange(n) % classes)
    x = means[y] + std * gen.standard_normal((n, d))
    return c.to_float(x, dtype, device), c.to_labels(y, device)
