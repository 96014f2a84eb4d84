r"""Preconditioned sharpness of Adam and RMSprop: the "adaptive edge of stability".

An adaptive method updates ``θ ← θ − η P_t⁻¹ m_t`` with a diagonal preconditioner ``P_t`` read
from its state. With ``P`` frozen, the method is (heavy-ball) gradient descent on the
preconditioned quadratic, so its stability is set by ``λ_max(P⁻¹H)`` (Cohen, Ghorbani,
Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl & Gilmer 2022, "Adaptive gradient
methods at the edge of stability", arXiv:2207.14484, §2): it is stable iff

* RMSprop (no momentum): ``λ_max(P⁻¹H) < 2/η``; with torch's heavy-ball momentum ``μ``,
  ``< (2 + 2μ)/η``;
* Adam / AdamW with ``β₁``: ``λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁) η)``, i.e. ``38/η`` at
  ``β₁ = 0.9`` (the EMA ``m ← β₁m + (1 − β₁)g`` is heavy ball with step ``(1 − β₁)η`` and
  momentum ``β₁``).

Cohen et al. find the preconditioned sharpness rises to this threshold and equilibrates there
in full-batch training, while the preconditioner keeps adapting.

``P`` is exactly what torch applies to ``m_t`` (``torch.optim.Adam`` / ``RMSprop`` docs):

* Adam, AdamW: ``P = (1 − β₁ᵗ)(√(v_t/(1 − β₂ᵗ)) + ε)``, ``v_t`` the ``exp_avg_sq`` state (its
  running maximum ``max_exp_avg_sq`` with ``amsgrad``), ``t`` the parameter's ``step``; the
  first moment's bias correction ``m_t/(1 − β₁ᵗ)`` is folded into ``P``, as Cohen et al. write
  it (§2), so that the update is ``−η P⁻¹ m_t`` (the factor is 0.1 at ``t = 1`` with
  ``β₁ = 0.9``, within 1 % of 1 from ``t = 44``);
* RMSprop: ``P = √v_t + ε`` with ``v_t`` the ``square_avg`` state (no bias correction), or
  ``√(v_t − ḡ_t²) + ε`` when ``centered``.

``P`` is the state the optimizer holds when the probe runs: after ``t`` updates, the
preconditioner of the last update, which has not yet seen the gradient at the current weights. So
do the authors' own measurements (init2winit's ``make_diag_preconditioner`` reads the stored
``nu`` and ``count``); the next update's ``P`` also folds in ``g_t²``, which moves ``λ_max`` by a
few per cent over the first tens of steps (bias corrections ``1 − β₂ᵗ``, ``1 − β₁ᵗ``), and
after them each entry of ``√v`` by about ``(1 − β₂)(g_t²/v_t − 1)/2`` relative (0.05 % per unit
of ``g_t²/v_t`` with Adam's ``β₂ = 0.999``). At the edge ``g_t²/v_t`` spikes: there one
measurement can differ from the next update's by 10 % (1.16 against 0.94 of the threshold at one
checkpoint of the catalogue's study), its median over the plateau by about 4 %.

``λ_max(P⁻¹H)`` is computed as the top eigenvalue of the symmetric ``P^{-1/2} H P^{-1/2}``
(similar to ``P⁻¹H``) by Lanczos on Hessian-vector products. ``H`` is the Hessian of the
objective the optimizer descends: ``loss_fn``'s, plus ``λI`` on each group with a coupled
``weight_decay`` λ (Adam without ``decoupled_weight_decay``, RMSprop: their gradient is
``g + λθ``). Decoupled decay (AdamW) scales ``θ`` by ``1 − ηλ`` outside the preconditioned
step; it is not in ``H`` (it moves the threshold by ``ηλ`` relative, about ``1e-4`` in practice).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from gdscope.functional import LossFn
from gdscope.probes._differentiating import differentiating
from gdscope.probes._subset import Selection, names_once, select_params
from gdscope.probes.hessian import hessian_operator
from gdscope.probes.lanczos import Bound, top_eigenpair

__all__ = [
    "adaptive_stability_threshold",
    "coupled_decay",
    "preconditioned_sharpness",
    "preconditioner_diagonal",
]

Batch = tuple[Tensor, Tensor]
_SUPPORTED = "torch.optim.Adam, AdamW or RMSprop"


def preconditioner_diagonal(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    params: Selection = None,
    lr_scaled: bool = False,
) -> Tensor:
    r"""Return the diagonal of ``P`` (or of ``P/η`` with ``lr_scaled``), flat over the parameters.

    See the module docstring for ``P``. Entries follow ``named_parameters()`` order over the
    trainable parameters ``params`` selects, in the parameters' dtype and device.

    Args:
        model: the network whose parameters ``optimizer`` updates.
        optimizer: a ``torch.optim.Adam``, ``AdamW`` or ``RMSprop`` that has taken a step.
        params: names or module prefixes of a block; None for every trainable parameter.
        lr_scaled: divide each entry by its parameter group's learning rate.

    Raises:
        ValueError: on another optimizer class or ``maximize=True``, a parameter the optimizer
            does not update or one without state (no step taken, or no gradient received).

    """
    _check_optimizer(optimizer)
    groups = _groups_by_param(optimizer)
    parts = []
    for name, p in select_params(model, params).items():
        group = groups.get(id(p))
        if group is None:
            raise ValueError(
                f"parameter {name!r} is not updated by the optimizer; pass params= to measure "
                "the block of the parameters it updates"
            )
        state = optimizer.state.get(p, {})
        if not state:
            raise ValueError(
                f"the optimizer has no state for parameter {name!r}: "
                + (
                    "it has received no gradient in the steps taken; pass params= without it"
                    if optimizer.state
                    else "take at least one optimizer step before measuring its preconditioner"
                )
            )
        diagonal = _diagonal(optimizer, group, state).to(p.dtype)
        parts.append((diagonal / group["lr"] if lr_scaled else diagonal).reshape(-1))
    return torch.cat(parts)


def coupled_decay(
    model: nn.Module, optimizer: torch.optim.Optimizer, *, params: Selection = None
) -> Tensor | None:
    """Return each entry's coupled weight decay ``λ``, or ``None`` where no group has one.

    Float64, flat as :func:`preconditioner_diagonal`: the ``λI`` that the optimizer's gradient
    ``g + λθ`` adds to ``H`` (Adam without ``decoupled_weight_decay``, RMSprop; AdamW's decay
    is decoupled).
    """
    _check_optimizer(optimizer)
    groups = _groups_by_param(optimizer)
    selected = select_params(model, params).values()
    decays = [_coupled(optimizer, groups[id(p)]) if id(p) in groups else 0.0 for p in selected]
    if not any(decays):
        return None
    return torch.cat(
        [
            torch.full((p.numel(),), d, dtype=torch.float64, device=p.device)
            for p, d in zip(selected, decays, strict=True)
        ]
    )


def _coupled(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> float:
    """Return a group's coupled decay; AdamW's is decoupled (no key in its groups before torch 2.7)."""
    if isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False):
        return 0.0
    return float(group["weight_decay"])


def _check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop):
        subclass = isinstance(optimizer, torch.optim.Adam | torch.optim.RMSprop)
        raise ValueError(
            f"the preconditioner is read from a {_SUPPORTED} state, got "
            f"{type(optimizer).__name__}"
            + (
                " (a subclass, whose update may differ); pass the torch class itself"
                if subclass
                else ""
            )
        )
    if any(group.get("maximize", False) for group in optimizer.param_groups):
        raise ValueError(
            "optimizer has maximize=True: it ascends the loss, whose stability is set by "
            "λ_max(P⁻¹(−H)); pass loss_fn = −loss to an optimizer with maximize=False"
        )


def _groups_by_param(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def _diagonal(optimizer: torch.optim.Optimizer, group: dict[str, Any], state: dict) -> Tensor:
    """``P`` of one parameter, as torch's update computes its denominator."""
    eps = float(group["eps"])
    if isinstance(optimizer, torch.optim.RMSprop):
        v = state["square_avg"].detach()
        if group["centered"]:
            v = v - state["grad_avg"].detach() ** 2
        return v.sqrt() + eps
    v = state["max_exp_avg_sq" if group["amsgrad"] else "exp_avg_sq"].detach()
    beta1, beta2 = (float(b) for b in group["betas"])
    step = float(state["step"])
    return (1.0 - beta1**step) * ((v / (1.0 - beta2**step)).sqrt() + eps)


def adaptive_stability_threshold(
    optimizer: torch.optim.Optimizer, *, lr_scaled: bool = False
) -> float:
    r"""Return the frozen-preconditioner stability threshold of ``λ_max(P⁻¹H)``.

    ``(2 + 2β₁)/((1 − β₁)η)`` for Adam/AdamW, ``(2 + 2μ)/η`` for RMSprop with momentum ``μ``
    (Cohen et al. 2022, §2); with ``lr_scaled`` the threshold of ``λ_max(ηP⁻¹H)``, without the
    ``1/η``.

    Raises:
        ValueError: on another optimizer class, or groups with different ``β₁``/momentum, or
            (without ``lr_scaled``) different learning rates.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> round(adaptive_stability_threshold(torch.optim.Adam(net.parameters(), lr=0.1)), 9)
        380.0

    """
    _check_optimizer(optimizer)
    rmsprop = isinstance(optimizer, torch.optim.RMSprop)
    betas = {float(g["momentum"] if rmsprop else g["betas"][0]) for g in optimizer.param_groups}
    lrs = {float(g["lr"]) for g in optimizer.param_groups}
    if len(betas) > 1 or (len(lrs) > 1 and not lr_scaled):
        raise ValueError(
            f"the parameter groups differ (momentum/β₁ {sorted(betas)}, lr {sorted(lrs)}); "
            "one threshold needs equal β₁ and, unless lr_scaled=True, equal learning rates"
        )
    (beta,) = betas
    edge = (2 + 2 * beta) if rmsprop else (2 + 2 * beta) / (1 - beta)
    if lr_scaled:
        return edge
    (lr,) = lrs
    if not lr > 0:
        raise ValueError(f"optimizer lr = {lr!r} has no stability threshold; pass an lr > 0")
    return edge / lr


@overload
def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    max_iter: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
    lr_scaled: bool = ...,
    return_vector: Literal[False] = ...,
) -> float: ...


@overload
def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    *,
    tol: float = ...,
    bound: Bound = ...,
    v0: Tensor | None = ...,
    max_iter: int | None = ...,
    generator: torch.Generator | None = ...,
    params: Selection = ...,
    lr_scaled: bool = ...,
    return_vector: Literal[True],
) -> tuple[float, Tensor]: ...


@differentiating
def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    *,
    tol: float = 1e-3,
    bound: Bound = "residual",
    v0: Tensor | None = None,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
    params: Selection = None,
    lr_scaled: bool = False,
    return_vector: bool = False,
) -> float | tuple[float, Tensor]:
    r"""Return ``λ_max(P⁻¹H)`` for the diagonal preconditioner ``P`` of an Adam/RMSprop state.

    The top eigenvalue of ``P^{-1/2} H P^{-1/2}`` by Lanczos (``H`` the Hessian of the training
    loss, ``P`` read from ``optimizer``'s state as torch applies it; see the module docstring),
    stopped when the residual is at most ``tol`` relative (a lower bound on the eigenvalue).
    Compare it with :func:`adaptive_stability_threshold`: Adam is stable with ``P`` frozen iff
    ``λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁)η)``, RMSprop iff ``< 2/η`` (Cohen et al. 2022).

    Args:
        model: the network, at the parameters where ``H`` is wanted.
        loss_fn: the training loss.
        batch: ``(x, y)``.
        optimizer: a ``torch.optim.Adam``, ``AdamW`` or ``RMSprop`` that updates ``model`` and
            has taken at least one step.
        tol: relative residual tolerance of Lanczos.
        bound: stopping rule, ``"residual"`` (rigorous) or ``"gap"`` (an estimate).
        v0: warm start (a previous top eigenvector of ``P^{-1/2} H P^{-1/2}``).
        max_iter: most Hessian-vector products.
        generator: draws the random start when ``v0`` is None (default seeded with 0).
        params: names or module prefixes of a block (``H`` and ``P`` restricted to it).
        lr_scaled: measure ``λ_max(diag(η) P⁻¹H)`` with each group's learning rate ``η``, for
            optimizers whose groups have different rates (threshold ``2`` resp.
            ``(2 + 2β₁)/(1 − β₁)``).
        return_vector: also return the unit top eigenvector of ``P^{-1/2} H P^{-1/2}``
            (float64), the ``v0`` that warm-starts the next measurement.

    Returns:
        ``λ_max(P⁻¹H)`` as a float, or ``(λ_max, vector)``.

    Raises:
        ValueError: see :func:`preconditioner_diagonal`; on a random loss.

    """
    params = names_once(params)  # read twice below
    scale = preconditioner_diagonal(model, optimizer, params=params, lr_scaled=lr_scaled)
    scale = scale.to(torch.float64).rsqrt()
    decay = coupled_decay(model, optimizer, params=params)
    op = hessian_operator(model, loss_fn, batch, params=params, what="preconditioned_sharpness")

    def matvec(v: Tensor) -> Tensor:
        u = scale * v
        return scale * (op.matvec(u) if decay is None else op.matvec(u) + decay * u)

    value, vector = top_eigenpair(
        matvec, op.dim, what="preconditioned_sharpness", tol=tol, bound=bound,
        max_iter=max_iter, v0=v0, generator=generator, device=op.device,
    )  # fmt: skip
    return (value, vector) if return_vector else value
