"""Losses with explicit reductions, and the convex test objectives of seed 002.

Every training loss takes ``(output, target)`` with ``output`` of shape ``(n, k)`` (a 1-D ``output``
is read as ``(n, 1)``) and returns a 0-d tensor, averaged over the ``n`` examples. Which
normalization is used matters: the sharpness probes and the edge-of-stability threshold ``2/η``
refer to the Hessian of exactly this function.

The objectives of seed 002 (Kumar, "GD doesn't make the cut", arXiv 2401.08426) are functions of a
parameter tensor returning a scalar, differentiable by autograd (with the subgradient
``sign(0) = 0`` at kinks), plus closed-form second derivatives used by the edge-of-stability claims.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor

from gdscope import _checks as check

__all__ = [
    "LOSSES",
    "abs_power",
    "abs_power_curvature",
    "accuracy",
    "cross_entropy",
    "get_loss",
    "hinge",
    "is_mse",
    "l1_scalar",
    "lasso_objective",
    "lasso_smooth",
    "mae",
    "mse",
    "pseudo_huber",
    "pseudo_huber_curvature",
    "pseudo_huber_loss",
    "quadratic",
]

Loss = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# shape and target helpers


def _as_2d(output: Tensor) -> Tensor:
    if output.ndim == 1:
        return output.unsqueeze(1)
    if output.ndim != 2:
        raise ValueError(f"output must have shape (n, k) or (n,), got {tuple(output.shape)}")
    return output


def _matched_target(output: Tensor, target: Tensor) -> Tensor:
    """Return ``target`` with the shape of the 2-D ``output``; ``(n,)`` is accepted when k = 1."""
    if target.shape == output.shape:
        return target
    if target.ndim == 1 and output.shape[1] == 1 and target.shape[0] == output.shape[0]:
        return target.unsqueeze(1)
    raise ValueError(
        f"target shape {tuple(target.shape)} does not match output shape {tuple(output.shape)}; "
        "expected target (n, k), or (n,) when k = 1"
    )


def _is_labels(target: Tensor) -> bool:
    return not (target.is_floating_point() or target.is_complex())


def _signed(target: Tensor) -> Tensor:
    """Map binary float targets to ±1: ±1 stay, {0, 1} become 2y − 1; anything else is an error."""
    values = torch.unique(target)
    if bool(torch.isin(values, values.new_tensor([-1.0, 1.0])).all()):
        return target
    if bool(torch.isin(values, values.new_tensor([0.0, 1.0])).all()):
        return 2 * target - 1
    shown = values[:6].tolist()
    raise ValueError(f"binary targets must be ±1 or {{0, 1}}, got values {shown}")


def _binary_margin(output: Tensor, target: Tensor, loss_name: str) -> Tensor:
    """Return the margins ``y_i f(x_i)`` (shape (n,)) of a single-output model on ±1 targets."""
    output = _as_2d(output)
    if output.shape[1] != 1:
        raise ValueError(
            f"{loss_name} with float targets needs a single output (n, 1), got output "
            f"{tuple(output.shape)}; for k classes pass long labels of shape (n,)"
        )
    target = _matched_target(output, target)
    return (output * _signed(target).to(output.dtype)).squeeze(1)


def _check_labels(output: Tensor, target: Tensor, loss_name: str) -> Tensor:
    output = _as_2d(output)
    if target.shape != (output.shape[0],):
        raise ValueError(
            f"{loss_name}: long labels must have shape (n,) = ({output.shape[0]},), "
            f"got {tuple(target.shape)} for output {tuple(output.shape)}"
        )
    if output.shape[1] < 2:
        raise ValueError(
            f"{loss_name}: long labels need k >= 2 outputs, got output {tuple(output.shape)}; "
            "for one output pass float ±1 or {0, 1} targets"
        )
    return output


# ---------------------------------------------------------------------------------------------
# training losses


def mse(output: Tensor, target: Tensor) -> Tensor:
    r"""Half mean squared error, summed over outputs and averaged over examples.

    .. math::  L = \frac{1}{2n} \sum_{i=1}^{n} \sum_{k} (f_k(x_i) - y_{ik})^2

    Args:
        output: model outputs, shape ``(n, k)`` (or ``(n,)``, read as ``(n, 1)``).
        target: shape ``(n, k)``, or ``(n,)`` when ``k = 1``.

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: if the shapes do not match (the message names both).

    """
    output = _as_2d(output)
    target = _matched_target(output, target)
    return 0.5 * (output - target).pow(2).sum() / output.shape[0]


def is_mse(loss_fn: Callable[..., Tensor]) -> bool:
    """Whether ``loss_fn`` is :func:`mse`, seen through wrappers that set ``__wrapped__``.

    The probes defined for the mse loss only (Du et al.'s bound, the infinite-width GD
    reference) ask this rather than ``loss_fn is mse``: a wrapper made with
    :func:`functools.wraps` (``gdscope train``'s step counter) computes the same loss.

    >>> import functools
    >>> counted = functools.wraps(mse)(lambda out, y: mse(out, y))
    >>> is_mse(counted), is_mse(mae)
    (True, False)
    """
    return inspect.unwrap(loss_fn) is mse


def mae(output: Tensor, target: Tensor) -> Tensor:
    r"""Mean absolute error, summed over outputs and averaged over examples (non-differentiable).

    .. math::  L = \frac{1}{n} \sum_{i=1}^{n} \sum_{k} |f_k(x_i) - y_{ik}|

    The network version of Kumar (2024)'s non-smooth objectives: its (sub)gradient does not
    vanish near a minimizer, so constant-step GD stalls at an ``O(η)`` floor.

    >>> float(mae(torch.tensor([[1.0], [-2.0]]), torch.tensor([0.0, 0.0])))
    1.5
    """
    output = _as_2d(output)
    target = _matched_target(output, target)
    return (output - target).abs().sum() / output.shape[0]


def pseudo_huber_loss(output: Tensor, target: Tensor) -> Tensor:
    r"""Pseudo-Huber loss: smooth and not quadratic (linear growth in the tails).

    .. math::  L = \frac{1}{n} \sum_{i=1}^{n} \sum_{k} \left(\sqrt{1 + r_{ik}^2} - 1\right),
        \quad r = f(x) - y

    A smooth loss other than the square loss, as Allen-Zhu, Li & Song (2019) allow.

    >>> round(float(pseudo_huber_loss(torch.tensor([[0.0], [1.0]]), torch.tensor([0.0, 0.0]))), 6)
    0.207107
    """
    output = _as_2d(output)
    target = _matched_target(output, target)
    return ((output - target).pow(2) + 1).sqrt().sub(1).sum() / output.shape[0]


def cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    r"""Cross-entropy averaged over examples; the logistic loss for a single logit.

    Long labels ``y_i ∈ {0, …, k−1}`` with ``output`` of shape ``(n, k)``, ``k ≥ 2``:

    .. math::  L = \frac{1}{n} \sum_i \Big(\log \sum_j e^{f_j(x_i)} - f_{y_i}(x_i)\Big)

    Float targets ``y_i ∈ {−1, +1}`` (or ``{0, 1}``, mapped to ``2y − 1``) with a single output
    ``(n, 1)`` give the logistic loss, which is the two-class cross-entropy of logits ``(0, f)``:

    .. math::  L = \frac{1}{n} \sum_i \log\big(1 + e^{-y_i f(x_i)}\big)

    Args:
        output: logits, shape ``(n, k)``.
        target: long labels ``(n,)``, or float binary targets ``(n,)``/``(n, 1)`` when ``k = 1``.

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: on mismatched shapes, long labels with one output, or float targets with
            several outputs or values outside ±1 / {0, 1}.

    """
    if _is_labels(target):
        output = _check_labels(output, target, "cross_entropy")
        return F.cross_entropy(output, target, reduction="mean")
    margin = _binary_margin(output, target, "cross_entropy")
    return F.softplus(-margin).mean()


def hinge(output: Tensor, target: Tensor) -> Tensor:
    r"""Hinge loss averaged over examples; Crammer–Singer for several classes.

    Binary (float ±1 or {0, 1} targets, one output):

    .. math::  L = \frac{1}{n} \sum_i \max(0,\; 1 - y_i f(x_i))

    Multiclass (long labels, ``k ≥ 2`` outputs; Crammer & Singer 2001, JMLR 2:265):

    .. math::

        L = \frac{1}{n} \sum_i \max\big(0,\; 1 + \max_{j \ne y_i} f_j(x_i) - f_{y_i}(x_i)\big)

    Args:
        output: shape ``(n, k)``.
        target: float binary targets with ``k = 1``, or long labels ``(n,)``.

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: as :func:`cross_entropy`.

    """
    if _is_labels(target):
        output = _check_labels(output, target, "hinge")
        true = output.gather(1, target.unsqueeze(1)).squeeze(1)
        others = output.scatter(1, target.unsqueeze(1), float("-inf"))
        return F.relu(1 + others.max(dim=1).values - true).mean()
    return F.relu(1 - _binary_margin(output, target, "hinge")).mean()


@torch.no_grad()
def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction of examples classified correctly, as a 0-d float64 tensor (float32 on MPS).

    - long labels ``(n,)``: ``argmax_j f_j(x_i) == y_i``;
    - float targets with one output: ``sign(f(x_i)) == sign(y_i)`` ({0, 1} targets are first
      mapped to ±1; an output of exactly 0 counts as wrong);
    - float targets ``(n, k)`` with ``k ≥ 2`` (one-hot, e.g. for MSE): ``argmax f == argmax y``.

    Raises:
        ValueError: on mismatched shapes.

    """
    output = _as_2d(output)
    if _is_labels(target):
        if target.shape != (output.shape[0],):
            raise ValueError(
                f"accuracy: long labels must have shape ({output.shape[0]},), got "
                f"{tuple(target.shape)} for output {tuple(output.shape)}"
            )
        correct = output.argmax(dim=1) == target
    elif output.shape[1] == 1:
        target = _matched_target(output, target)
        values = torch.unique(target)
        if bool(torch.isin(values, values.new_tensor([0.0, 1.0])).all()):
            target = 2 * target - 1
        correct = torch.sign(output) == torch.sign(target)
    else:
        target = _matched_target(output, target)
        correct = output.argmax(dim=1) == target.argmax(dim=1)
    exact = torch.float32 if correct.device.type == "mps" else torch.float64  # MPS: no float64
    return correct.to(exact).mean()  # k/n rounded once


LOSSES: dict[str, Loss] = {
    "mse": mse,
    "cross_entropy": cross_entropy,
    "hinge": hinge,
    "mae": mae,
    "pseudo_huber": pseudo_huber_loss,
}


def get_loss(name: str) -> Loss:
    """Return the loss registered under ``name`` in :data:`LOSSES`.

    Raises:
        ValueError: naming the value, the accepted names and the closest match.

    """
    return LOSSES[check.known("loss", name, LOSSES)]


# ---------------------------------------------------------------------------------------------
# seed-002 objectives on a parameter tensor


def abs_power(x: Tensor, p: float) -> Tensor:
    r"""Return :math:`\sum_i |x_i|^p` for ``1 ≤ p ≤ 2`` (``p = 1``: ``‖x‖₁``; ``p = 2``: ``‖x‖²``).

    For ``1 < p < 2`` it is convex, differentiable, with unbounded curvature at 0: GD with any
    step size ends on a 2-cycle where ``η f''(x) = 2(p − 1)`` (see :func:`abs_power_curvature`).

    Raises:
        ValueError: if ``p`` is outside ``[1, 2]``.

    """
    if not 1.0 <= p <= 2.0:
        raise ValueError(f"abs_power needs 1 <= p <= 2, got p={p!r}")
    return x.abs().pow(p).sum()


def abs_power_curvature(x: Tensor, p: float) -> Tensor:
    r"""Return the elementwise second derivative of :math:`|x|^p`, :math:`p(p-1)|x|^{p-2}`.

    It is ``inf`` at 0 for ``p < 2``.

    On the symmetric GD 2-cycle ``x → −x`` of :func:`abs_power`, ``x = (2/(ηp))^{1/(p−2)}`` and
    ``η · abs_power_curvature(x, p) = 2(p − 1)``.
    """
    if not 1.0 <= p <= 2.0:
        raise ValueError(f"abs_power_curvature needs 1 <= p <= 2, got p={p!r}")
    return p * (p - 1) * x.abs().pow(p - 2)


def pseudo_huber(x: Tensor, delta: float | Tensor = 1.0) -> Tensor:
    r"""Pseudo-Huber loss :math:`\sum_i \delta^2(\sqrt{1 + (x_i/\delta)^2} - 1)`.

    Convex, smooth and ``δ``-Lipschitz. With ``δ = 1`` and ``η > 2``, GD ends on the 2-cycle
    ``|x| = √(η²/4 − 1)`` (where ``√(1+x²) = η/2``).

    This is a test objective of a parameter tensor; the training loss ``(output, target)`` of
    ``loss = "pseudo_huber"`` is :func:`pseudo_huber_loss`.

    Raises:
        ValueError: if ``delta`` is not a number or a 0-d tensor (e.g. a target tensor: the
            call of a training loss), or ``delta <= 0``.

    """
    scalar = isinstance(delta, Tensor) and delta.ndim == 0 and delta.dtype != torch.bool
    if not scalar and (isinstance(delta, bool) or not isinstance(delta, Real)):
        raise ValueError(
            f"pseudo_huber's delta must be a number, got a {type(delta).__name__}; this is the "
            "test objective pseudo_huber(x, delta): as a training loss use "
            "gs.losses.pseudo_huber_loss"
        )
    if not delta > 0:
        raise ValueError(f"pseudo_huber needs delta > 0, got delta={delta!r}")
    return (delta**2 * (torch.sqrt(1 + (x / delta) ** 2) - 1)).sum()


def pseudo_huber_curvature(x: Tensor, delta: float = 1.0) -> Tensor:
    r"""Elementwise second derivative of :func:`pseudo_huber`: :math:`(1 + (x/\delta)^2)^{-3/2}`."""
    if not delta > 0:
        raise ValueError(f"pseudo_huber_curvature needs delta > 0, got delta={delta!r}")
    return (1 + (x / delta) ** 2).pow(-1.5)


def quadratic(x: Tensor) -> Tensor:
    r"""Return :math:`\tfrac12 \|x\|^2` (curvature 1: GD converges for ``η < 2``)."""
    return 0.5 * x.pow(2).sum()


def l1_scalar(x: Tensor, b: Tensor | float, lam: float) -> Tensor:
    r"""Return the separable L1 problem :math:`\sum_i \tfrac12 (x_i - b_i)^2 + \lambda |x_i|`.

    Its minimizer is the soft-threshold ``x* = sign(b) max(|b| − λ, 0)``.
    """
    return (0.5 * (x - b).pow(2) + lam * x.abs()).sum()


def lasso_smooth(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    r"""Return the smooth part of the lasso, :math:`\frac{1}{2n}\|Xw - y\|^2`.

    ``X`` is ``(n, d)``, ``w`` is ``(d,)`` and ``y`` is ``(n,)``.
    """
    return 0.5 * (X @ w - y).pow(2).sum() / X.shape[0]


def lasso_objective(w: Tensor, X: Tensor, y: Tensor, lam: float) -> Tensor:
    r"""Lasso objective :math:`\frac{1}{2n}\|Xw - y\|^2 + \lambda \|w\|_1`.

    The normalization of scikit-learn's ``Lasso(alpha=λ)``; the solution is exactly 0 iff
    ``λ ≥ ‖Xᵀy/n‖_∞`` (Tibshirani 1996).
    """
    return lasso_smooth(w, X, y) + lam * w.abs().sum()
