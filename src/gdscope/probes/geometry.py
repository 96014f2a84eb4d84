r"""Geometry of the loss landscape along a run.

Gradient norm, the Polyak–Łojasiewicz ratio, the square-loss risk sandwich of seed 000, distance
from initialization (global, per layer, spectral, per neuron), ReLU activation-pattern flips (the gap
to the linearized model is :mod:`gdscope.probes.linearization`). Probes take ``(model, params, batch)``-style inputs and return
numbers; they never log or save.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gdscope.functional import LossFn, apply, flatten, loss_and_grad, without_autocast
from gdscope.probes._arguments import check_params, refuse_inference_model
from gdscope.probes._checks import (
    buffers_restored,
    refuse_kept_parameters,
    refuse_random_modules,
)

RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)


@without_autocast
def gradient_norm(
    model: nn.Module, params: Mapping[str, Tensor], loss_fn: LossFn, batch: tuple[Tensor, Tensor]
) -> float:
    """Return ``‖∇L(θ)‖₂`` over all trainable parameters, on the whole ``batch``.

    The loss is evaluated at every entry of ``params`` (the model's own tensors elsewhere); the
    norm is over the entries whose parameter in the model, by name, has ``requires_grad``
    (a frozen layer in ``dict(model.named_parameters())`` is held fixed, not counted), as the
    ``grad_norm`` that ``gdscope.train`` records. The values may be detached copies. A model
    frozen as a whole (``requires_grad_(False)``, for functional use) counts every entry.

    Like every probe, of a deterministic loss: dropout in training mode is refused, and batch
    norm in training mode unless inside :func:`~gdscope.probes.allow_batch_statistics`.

    Raises:
        ValueError: if no entry of ``params`` names a trainable parameter of ``model``.

    """
    return loss_and_grad_norm(model, params, loss_fn, batch)[1]


@without_autocast
def loss_and_grad_norm(
    model: nn.Module, params: Mapping[str, Tensor], loss_fn: LossFn, batch: tuple[Tensor, Tensor]
) -> tuple[float, float]:
    """Return ``(L(θ), ‖∇L(θ)‖₂)`` from one reverse pass (the inputs of :func:`pl_ratio`).

    The norm is over the trainable entries of ``params``, as in :func:`gradient_norm`.
    """
    check_params(params, "gradient_norm")
    refuse_inference_model(model, "gradient_norm")
    refuse_random_modules(model, what="gradient_norm", noun="loss")
    trainable = _trainable_names(model, params)
    with buffers_restored(model):
        loss, grads = loss_and_grad(model, params, loss_fn, batch, wrt=trainable)
        refuse_kept_parameters(model, params, batch, "gradient_norm", loss_fn)
    return float(loss), float(torch.linalg.vector_norm(flatten(grads)))


def _trainable_names(model: nn.Module, params: Mapping[str, Tensor]) -> set[str]:
    """Return the names of ``params`` whose parameter in ``model`` (any of its names) is trainable.

    Raises:
        ValueError: in one line, if there is none (the model's trainable names listed).

    """
    every = dict(model.named_parameters(remove_duplicate=False))
    if not any(p.requires_grad for p in every.values()):  # frozen for functional use: params
        return set(params)  # are the caller's own variables (the norm over all of them)
    names = {name for name in params if name in every and every[name].requires_grad}
    if not names:
        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
        shown = ", ".join(map(repr, trainable[:8])) + (", ..." if len(trainable) > 8 else "")
        raise ValueError(
            "gradient_norm: params names no trainable parameter of the model (requires_grad), "
            "so there is no gradient to measure; "
            + (f"key it by the model's names: {shown}" if trainable else "unfreeze one")
        )
    return names


# ---------------------------------------------------------------------------------------------
# gradient-domination inequalities


def pl_ratio(loss: float, grad_norm_sq: float, loss_star: float = 0.0) -> float:
    r"""Return the Polyak–Łojasiewicz ratio :math:`\|\nabla L\|^2 / (2 (L - L^*))`.

    A loss satisfies the PL inequality with constant μ when
    :math:`\tfrac12 \|\nabla L(θ)\|^2 \ge μ\,(L(θ) - L^*)` for all θ on the path (Polyak 1963,
    Łojasiewicz 1963; Liu, Zhu & Belkin 2022 for wide nets), so the running minimum of this ratio
    along a run lower-bounds μ, and gradient descent with step ``1/β`` then converges linearly
    with rate ``1 − μ/β``.

    Args:
        loss: ``L(θ)``.
        grad_norm_sq: ``‖∇L(θ)‖²`` (squared!).
        loss_star: the optimal value ``L*`` (0 for interpolating square loss).

    Returns:
        The ratio as a float; nan when ``L ≤ L*`` or an input is not finite.

    Raises:
        ValueError: if ``grad_norm_sq`` is negative (pass the squared norm).

    """
    gap = float(loss) - float(loss_star)
    g2 = _squared_norm(grad_norm_sq)
    if not (math.isfinite(gap) and math.isfinite(g2)) or gap <= 0:
        return math.nan
    return g2 / (2.0 * gap)


def _squared_norm(grad_norm_sq: float) -> float:
    g2 = float(grad_norm_sq)
    if g2 < 0:
        raise ValueError(
            f"grad_norm_sq must be the squared gradient norm (≥ 0), got {grad_norm_sq!r}"
        )
    return g2


@dataclass(frozen=True)
class Sandwich:
    """Two-sided bound ``lower ≤ loss ≤ upper`` of :func:`square_loss_sandwich`."""

    lower: float
    upper: float
    loss: float

    def holds(self, slack: float = 1e-4) -> bool:
        """Return ``lower ≤ (1 + slack)·loss`` and ``loss ≤ (1 + slack)·upper`` (False on nan)."""
        return self.lower <= (1 + slack) * self.loss and self.loss <= (1 + slack) * self.upper


def square_loss_sandwich(
    loss: float, grad_norm_sq: float, n: int, lambda_min: float, lambda_max: float
) -> Sandwich:
    r"""Bound the square loss by the gradient norm and the extreme NTK eigenvalues.

    For :math:`L(θ) = \frac{1}{2n}\|r\|^2` with residual :math:`r = u - y \in \mathbb R^{nk}`
    (``gdscope.losses.mse``), Jacobian :math:`J = \partial u/\partial θ` over *all* trainable
    parameters and NTK Gram :math:`K = J J^\top` (``nk × nk``):

    .. math::

        \nabla L = \tfrac1n J^\top r
        \;\Rightarrow\; \|\nabla L\|^2 = \tfrac{1}{n^2}\, r^\top K r,
        \qquad λ_{\min}(K)\,\|r\|^2 \le r^\top K r \le λ_{\max}(K)\,\|r\|^2 ,

    and with :math:`\|r\|^2 = 2nL` this is :math:`\tfrac{2λ_{\min}}{n} L \le \|\nabla L\|^2 \le
    \tfrac{2λ_{\max}}{n} L`, i.e.

    .. math::

        \frac{n\,\|\nabla L\|^2}{2\,λ_{\max}(K)} \;\le\; L \;\le\;
        \frac{n\,\|\nabla L\|^2}{2\,λ_{\min}(K)} ,

    with equality on the left (right) exactly when ``r`` is an eigenvector of ``K`` for
    ``λ_max`` (``λ_min``). Our reading of the "upper and lower bounds" of seed 000 (Qi, Gong &
    Li 2024); the upper bound is vacuous (``inf``) when ``λ_min ≤ 0``, e.g. when ``P < nk``.

    Args:
        loss: ``L = (1/2n)‖u − y‖²``.
        grad_norm_sq: ``‖∇L‖²`` over all trainable parameters.
        n: number of examples (not ``nk``).
        lambda_min: smallest eigenvalue of ``K`` on the same examples and parameters.
        lambda_max: largest eigenvalue of ``K``.

    Returns:
        A :class:`Sandwich`; check it with ``.holds(slack)``.

    Raises:
        ValueError: if ``n < 1``, ``lambda_max ≤ 0``, ``lambda_min > lambda_max`` or
            ``grad_norm_sq < 0``.

    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be the number of examples (an int ≥ 1), got {n!r}")
    if not float(lambda_max) > 0:
        raise ValueError(f"lambda_max must be > 0, got {lambda_max!r}")
    lam_min = float(lambda_min)
    if lam_min > float(lambda_max):
        raise ValueError(
            f"lambda_min = {lambda_min!r} exceeds lambda_max = {lambda_max!r}; pass the smallest "
            "and the largest eigenvalue of K, in that order"
        )
    scaled = n * _squared_norm(grad_norm_sq) / 2.0
    upper = scaled / lam_min if lam_min > 0 else (math.nan if math.isnan(lam_min) else math.inf)
    return Sandwich(lower=scaled / float(lambda_max), upper=upper, loss=float(loss))


# ---------------------------------------------------------------------------------------------
# movement of the weights


def distance_from_init(
    params: Mapping[str, Tensor], init: Mapping[str, Tensor], *, spectral: bool = False
) -> dict[str, float]:
    """Return how far the parameters moved from their initial values.

    Keys: ``"dist_from_init"`` = ‖θ − θ₀‖₂, ``"rel_dist_from_init"`` = ‖θ − θ₀‖₂ / ‖θ₀‖₂
    (0 when θ₀ = 0), and per parameter tensor ``"dist_from_init/<name>"`` = ‖θ_l − θ_{l,0}‖_F and
    ``"rel_dist_from_init/<name>"`` = ‖θ_l − θ_{l,0}‖_F / ‖θ_{l,0}‖_F. Relative weight change is the
    laziness measure of Chizat, Oyallon & Bach (2019) and Lee et al. (2019).

    With ``spectral=True``, also for every 2-D parameter ``"spec_dist_from_init/<name>"`` =
    ‖W − W₀‖₂ (largest singular value) and ``"rel_spec_dist_from_init/<name>"`` =
    ‖W − W₀‖₂ / ‖W₀‖₂ (0 when W₀ = 0): the operator-norm movement that lazy-training and μP
    arguments bound (Yang & Hu 2021).

    Raises:
        KeyError: if a name of ``params`` is missing from ``init``.
        ValueError: if a parameter's shape differs from its value in ``init``.

    """
    out: dict[str, float] = {}
    sq_diff = 0.0
    sq_init = 0.0
    for name, theta in params.items():
        diff = float(
            torch.linalg.vector_norm(_moved(params, init, name).reshape(-1), dtype=torch.float64)
        )
        base = float(torch.linalg.vector_norm(init[name].reshape(-1), dtype=torch.float64))
        out[f"dist_from_init/{name}"] = diff
        out[f"rel_dist_from_init/{name}"] = diff / base if base > 0 else 0.0
        sq_diff += diff**2
        sq_init += base**2
        if spectral and theta.ndim == 2:
            out.update(_spectral_distance(name, theta, init[name]))
    out["dist_from_init"] = sq_diff**0.5
    out["rel_dist_from_init"] = (sq_diff / sq_init) ** 0.5 if sq_init > 0 else 0.0
    return out


def _moved(params: Mapping[str, Tensor], init: Mapping[str, Tensor], name: str) -> Tensor:
    """``θ − θ₀`` of parameter ``name``, checked: both present, same shape (no broadcasting)."""
    for which, mapping in (("params", params), ("init", init)):
        if name not in mapping:
            raise KeyError(f"{name!r} is not in {which}; it has {sorted(mapping)}")
    theta, theta0 = params[name], init[name]
    if theta.shape != theta0.shape:
        raise ValueError(
            f"init[{name!r}] has shape {tuple(theta0.shape)}, params[{name!r}] "
            f"{tuple(theta.shape)}; pass the same parameter at initialization"
        )
    return theta - theta0.to(theta.device)


def _spectral_distance(name: str, theta: Tensor, theta0: Tensor) -> dict[str, float]:
    w, w0 = theta.detach().double(), theta0.detach().double()
    diff = float(torch.linalg.matrix_norm(w - w0, ord=2))
    base = float(torch.linalg.matrix_norm(w0, ord=2))
    return {
        f"spec_dist_from_init/{name}": diff,
        f"rel_spec_dist_from_init/{name}": diff / base if base > 0 else 0.0,
    }


def per_neuron_displacement(
    params: Mapping[str, Tensor], init: Mapping[str, Tensor], name: str
) -> float:
    r"""Return :math:`\max_r \|w_r - w_r(0)\|_2` over the rows (units) of parameter ``name``.

    For the two-layer net of Du et al. (2019) the analysis keeps every
    :math:`\|w_r(k) - w_r(0)\| \le R = O(\sqrt n / (\sqrt m\, λ_0))` (their Lemma 3.3/4.2); this is
    the measured left-hand side (seed 003, D4). Rows are the first dimension; further dimensions
    (a convolution's ``(in, kh, kw)``) are flattened into the row.

    Raises:
        KeyError: if ``name`` is missing from ``params`` or ``init`` (the message lists the names).
        ValueError: if the two shapes differ.

    """
    diff = _moved(params, init, name).detach().double()
    rows = diff.reshape(diff.shape[0], -1) if diff.ndim > 0 else diff.reshape(1, 1)
    return float(torch.linalg.vector_norm(rows, dim=1).max())


# ---------------------------------------------------------------------------------------------
# activation patterns


@without_autocast
def activation_pattern(
    model: nn.Module, x: Tensor, *, params: Mapping[str, Tensor] | None = None
) -> list[Tensor]:
    """Return the signs ``z > 0`` of the pre-activations of every ReLU-type module call.

    A forward pre-hook on each ``nn.ReLU`` / ``LeakyReLU`` / ``PReLU`` / ``RReLU`` records its
    input, once per *call*: a module that is reused (``gs.models.mlp`` applies one activation
    module after every hidden layer) contributes one entry per call, in call order. ReLUs applied
    as functions (``F.relu``) are invisible.

    Args:
        model: the network.
        x: inputs ``(n, ...)``.
        params: evaluate at these parameters (``functional_call``); default: the module's own.

    Returns:
        One boolean tensor per ReLU call, shaped like its input (``(n, units)`` for an MLP).

    Raises:
        ValueError: if no ReLU-type module was called.

    """
    pattern: list[Tensor] = []

    def record(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        pattern.append(inputs[0].detach() > 0)

    refuse_random_modules(model, what="activation_pattern")
    if params is not None:  # a tensor kept from a parameter would not be evaluated at params
        with buffers_restored(model):
            refuse_kept_parameters(model, params, x, "activation_pattern")
    relus = [m for m in model.modules() if isinstance(m, RELU_TYPES)]
    handles = [m.register_forward_pre_hook(record) for m in relus]
    try:
        with torch.no_grad(), buffers_restored(model):
            if params is None:
                model(x)
            else:
                apply(model, params, x)
    finally:
        for handle in handles:
            handle.remove()
    if not pattern:
        kinds = ", ".join(t.__name__ for t in RELU_TYPES)
        raise ValueError(
            f"{type(model).__name__} called no ReLU-type module ({kinds}); activation patterns "
            "need the nonlinearity as a module, not F.relu"
        )
    return pattern


@without_autocast
def activation_flips(
    model: nn.Module,
    x: Tensor,
    init_pattern: list[Tensor],
    *,
    params: Mapping[str, Tensor] | None = None,
) -> float:
    """Return the fraction of (example, unit) entries whose ReLU sign changed since ``init_pattern``.

    Pooled over all ReLU calls: ``Σ_l #{z_l ≠ z_l(0)} / Σ_l #z_l``, with ``init_pattern`` from
    :func:`activation_pattern` on the same ``x`` at initialization. Du et al. (2019) bound the
    fraction of units that can flip by ``O(R)``, shrinking with width (seed 003, D4).

    Raises:
        ValueError: if the current pattern's layers or shapes differ from ``init_pattern``.

    """
    now = activation_pattern(model, x, params=params)
    if len(now) != len(init_pattern):
        raise ValueError(
            f"init_pattern has {len(init_pattern)} ReLU calls, the model now makes {len(now)}"
        )
    flipped, total = 0, 0
    for index, (current, initial) in enumerate(zip(now, init_pattern, strict=True)):
        if current.shape != initial.shape:
            raise ValueError(
                f"init_pattern[{index}] has shape {tuple(initial.shape)}, the model now gives "
                f"{tuple(current.shape)}; use the same inputs x as at initialization"
            )
        flipped += int((current != initial.to(current.device)).sum())
        total += current.numel()
    return flipped / total if total else 0.0
