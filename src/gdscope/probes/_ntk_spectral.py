r"""Spectra of kernel Grams and the kernel statistics of NTK theory.

* :func:`gram_eigs`: extreme eigenvalues by Lanczos (:func:`~gdscope.probes.lanczos.lanczos_topk`),
  by ``eigvalsh`` for more than one at an end (multiplicities).
* :func:`kernel_drift`: ``‖K_t − K_0‖_F / ‖K_0‖_F``, how far the NTK moved from its value at
  initialization (small for wide nets: Jacot et al. 2018; Lee et al. 2019).
* :func:`kernel_target_alignment`: ``⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)`` (Cristianini, Shawe-Taylor,
  Elisseeff & Kandola 2001, "On kernel-target alignment").
* :func:`h_infinity`: the infinite-width Gram of Du et al. (2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gdscope._checks import positive_int

from ._reference import arccos_kernel_h_infinity
from .lanczos import Which, lanczos_topk

SPECTRUM_METHODS = ("auto", "dense", "lanczos")
DENSE_LIMIT = 2048
WHICH = ("both", "smallest", "largest")
_LANCZOS_WHICH: dict[str, Which] = {"both": "BE", "smallest": "SA", "largest": "LA"}
GRAM_TOL = 1e-8


@dataclass(frozen=True)
class NTKSpectrum:
    """Extreme eigenvalues of an NTK Gram.

    Attributes:
        lambda_min: smallest eigenvalue.
        lambda_max: largest eigenvalue.
        kappa: ``λ_max / λ_min`` (``inf`` if ``λ_min ≤ 0``).
        eigenvalues: the eigenvalues computed (all, or the extreme ones), ascending, float64 CPU.
        n: size of the Gram.

    """

    lambda_min: float
    lambda_max: float
    kappa: float
    eigenvalues: Tensor
    n: int


def _check_square(gram: Tensor, name: str = "K") -> None:
    """Raise unless ``gram`` is a non-empty square matrix of finite entries."""
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty square (n, n) matrix, got {tuple(gram.shape)}"
        )
    if not bool(torch.isfinite(gram).all()):
        raise ValueError(
            f"{name} has non-finite entries (the model's outputs or gradients are not finite at "
            "these parameters); check the model and the data"
        )


def gram_eigs(gram: Tensor, k: int, which: str = "both") -> Tensor:
    r"""Return the ``k`` smallest and/or largest eigenvalues of a symmetric Gram, ascending.

    :func:`~gdscope.probes.lanczos.lanczos_topk` on ``v ↦ K v`` (float64, on ``gram``'s device)
    with the residual rule: it stops once every wanted Ritz value ``θ`` has residual
    ``r ≤ 10⁻⁸ |θ|``, so that an eigenvalue lies within ``10⁻⁸ |θ|`` of it, or at the latest once
    the Krylov space is all of ``ℝⁿ``, where the Ritz values are the eigenvalues up to rounding.
    (The gap estimate ``r²/gap`` stopped after 2 products at ``κ = 10⁷``: its nearest other Ritz
    value was the far end, and ``λ_min`` came out 2.49 instead of 1.) Rounding in ``K v`` leaves an
    absolute error of about ``ε‖K‖`` (``ε ≈ 2·10⁻¹⁶``), so a PSD Gram's ``λ_min`` has relative
    error ``10⁻⁸`` only while ``κ ≲ 10⁸``. Cost: one ``n × n`` matrix-vector product and
    ``O(n m)`` reorthogonalization per iteration, ``m`` iterations (a few hundred for condition
    numbers of ``10³``), instead of ``O(n³)`` for ``eigvalsh``. For ``k > 1`` it is ``eigvalsh``'s:
    a Krylov space from one start holds one direction of each eigenspace, so a repeated
    eigenvalue (the ``(XXᵀ + 1) ⊗ I_k`` of a ``k``-output net) shows once, and the next ones
    take its other places.

    Args:
        gram: ``(n, n)`` symmetric matrix.
        k: eigenvalues wanted at each end.
        which: ``"both"``, ``"smallest"`` or ``"largest"``.

    Returns:
        float64 CPU tensor of ``k`` (or ``2k``, fewer if ``n < 2k``) eigenvalues, ascending.

    Raises:
        ValueError: on a non-square matrix, ``k < 1`` or an unknown ``which``.

    """
    _check_square(gram)
    if which not in WHICH:
        raise ValueError(f"which must be one of {list(WHICH)}, got {which!r}")
    k = positive_int("k", k)
    n = gram.shape[0]
    matrix = gram.detach().to(torch.float64)
    if min(k, n) > 1:  # a Krylov space holds one vector per eigenspace: blind to multiplicity
        values = torch.linalg.eigvalsh(matrix).cpu()
        if which == "smallest":
            return values[:k]
        if which == "largest":
            return values[-k:]
        return values if n < 2 * k else torch.cat([values[:k], values[-k:]])
    res = lanczos_topk(
        lambda v: matrix @ v,
        n,
        min(k, n),
        which=_LANCZOS_WHICH[which],
        tol=GRAM_TOL,
        bound="residual",
        max_iter=n,
        device=matrix.device,
    )
    return res.values.sort().values


def spectrum_of(gram: Tensor, *, k: int | None = None, method: str = "auto") -> NTKSpectrum:
    """Return the :class:`NTKSpectrum` of a Gram (see :func:`gdscope.probes.ntk.ntk_spectrum`)."""
    _check_square(gram)
    if method not in SPECTRUM_METHODS:
        raise ValueError(f"method must be one of {list(SPECTRUM_METHODS)}, got {method!r}")
    k = None if k is None else positive_int("k", k)
    n = gram.shape[0]
    dense = method == "dense" or (method == "auto" and n <= DENSE_LIMIT)
    if dense:
        eigenvalues = torch.linalg.eigvalsh(gram.to(torch.float64)).cpu()
    else:
        eigenvalues = gram_eigs(gram, 1 if k is None else k)
    lo, hi = float(eigenvalues[0]), float(eigenvalues[-1])
    kappa = hi / lo if lo > 0 else math.inf
    return NTKSpectrum(lo, hi, kappa, eigenvalues, n)


def kernel_drift(gram_t: Tensor, gram_0: Tensor) -> float:
    """Return ``‖K_t − K_0‖_F / ‖K_0‖_F`` in float64.

    Raises:
        ValueError: if the shapes differ or ``K_0 = 0``.

    """
    if gram_t.shape != gram_0.shape:
        raise ValueError(
            f"K_t and K_0 must have the same shape, got {tuple(gram_t.shape)} and {tuple(gram_0.shape)}"
        )
    k0 = gram_0.detach().to(torch.float64)
    norm0 = float(torch.linalg.norm(k0))
    if norm0 == 0.0:
        raise ValueError("K_0 is zero, so the relative drift is undefined")
    kt = gram_t.detach().to(device=k0.device, dtype=torch.float64)
    return float(torch.linalg.norm(kt - k0)) / norm0


def kernel_target_alignment(gram: Tensor, y: Tensor) -> float:
    r"""Return the kernel-target alignment ``⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F)`` in float64.

    For a target vector ``y`` this is ``yᵀKy / (‖K‖_F ‖y‖²)``; for ``Y`` of shape ``(n, k)`` it
    uses ``YYᵀ`` (``⟨K, YYᵀ⟩ = tr(YᵀKY)`` and ``‖YYᵀ‖_F = ‖YᵀY‖_F``). It lies in ``[-1, 1]`` and
    is ``1`` iff ``K ∝ YYᵀ`` (Cristianini et al. 2001). The full Gram of ``k`` outputs
    (:func:`~gdscope.probes.ntk.ntk_gram`'s default, ``(n·k, n·k)``, entry ``[(i·k + a),
    (j·k + b)]``) is aligned with the targets as one vector of ``n·k`` entries, ``y[i, a]`` at
    ``i·k + a``: ``y.reshape(-1)``.

    >>> K = torch.eye(4)
    >>> kernel_target_alignment(K, torch.ones(2, 2)) == kernel_target_alignment(K, torch.ones(4))
    True

    Args:
        gram: ``(n, n)`` Gram (e.g. the class-trace NTK), or the ``(n·k, n·k)`` full Gram.
        y: ``(n,)`` or ``(n, k)`` targets (for the full Gram: ``(n, k)`` or ``(n·k,)``).

    Raises:
        ValueError: on mismatched shapes or a zero ``K`` or ``y``.

    """
    _check_square(gram)
    n = gram.shape[0]
    if y.ndim == 2 and y.numel() == n and y.shape[0] != n:  # (n, k) targets of the full Gram
        y = y.reshape(-1)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"y must have shape ({n},) or ({n}, k) to match a Gram of {n} rows, or (n, k) with "
            f"n·k = {n} for the full Gram of k outputs; got {tuple(y.shape)}"
        )
    k64 = gram.detach().to(torch.float64)
    y64 = y.detach().to(device=k64.device, dtype=torch.float64).reshape(n, -1)
    denominator = float(torch.linalg.norm(k64)) * float(torch.linalg.norm(y64.T @ y64))
    if denominator == 0.0:
        raise ValueError("alignment is undefined for a zero Gram or zero targets")
    return float((y64 * (k64 @ y64)).sum()) / denominator


def h_infinity(x: Tensor, *, atol: float = 1e-5) -> Tensor:
    r"""Return Du et al.'s infinite-width Gram ``H∞`` of the two-layer ReLU net, in float64.

    .. math:: H^\infty_{ij} = \mathbb E_{w∼N(0,I)}\big[x_i^\top x_j\, 1\{w^\top x_i ≥ 0,
              w^\top x_j ≥ 0\}\big] = \frac{x_i^\top x_j (\pi - \arccos x_i^\top x_j)}{2\pi}

    (Du, Zhai, Poczós & Singh 2019, "Gradient descent provably optimizes over-parameterized
    neural networks", Eq. 3): the limit of the NTK of :func:`gdscope.models.two_layer` (frozen
    outer layer) as the width grows.

    Args:
        x: ``(n, d)`` inputs with unit-norm rows.
        atol: allowed deviation of a row norm from 1.

    Raises:
        ValueError: if ``x`` is not 2-D or a row norm differs from 1 by more than ``atol``.

    """
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(x.shape)}")
    norms = torch.linalg.norm(x.detach().to(torch.float64), dim=1)
    worst = float((norms - 1).abs().max()) if norms.numel() else 0.0
    if worst > atol:
        raise ValueError(
            f"h_infinity needs unit-norm rows (Du et al. 2019), but a row norm is off by {worst:.3g}; "
            "normalize x with x / x.norm(dim=1, keepdim=True)"
        )
    return arccos_kernel_h_infinity(x)
