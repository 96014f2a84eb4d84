"""Study names → ``torch.optim.Optimizer`` builders, and :func:`make_optimizer`.

Optimizers are torch.optim objects; gdscope only writes what torch lacks (:mod:`.proximal`,
:mod:`.subgradient`). Given an ``nn.Module``, :func:`make_optimizer` turns the parameterization's
per-parameter learning-rate multipliers (:func:`gdscope.models.lr_multipliers.lr_multipliers`) into
param groups: one group per distinct multiplier ``c``, with ``lr = η·c`` and the key
``"lr_multiplier": c``. Every optimizer states its multiplier rule (:mod:`.groups`): ``"sgd"``
for those linear in the gradient, ``"adaptive"`` for ``adam`` and ``rmsprop`` (μP: TP-V Table 3,
as ``mup.MuAdam``), with ``weight_decay / c`` per group under either rule; a parameterization without a rule for
the optimizer (``meanfield`` with ``adam``/``rmsprop``) is refused.

In the update rules below ``g_t = ∇f(w_t) + μ w_t`` (``μ = weight_decay``, coupled L2 as in
torch), ``η = lr`` of the param group and ``β = momentum``; operations on vectors are elementwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from gdscope import _checks as check
from gdscope.optim.groups import rule_groups
from gdscope.optim.proximal import FISTA, ProximalGD
from gdscope.optim.subgradient import Subgradient, check_schedule

__all__ = ["ALIASES", "OPTIMIZERS", "make_optimizer", "param_groups"]

DEFAULT_MOMENTUM = 0.9


def _gd(params: Any, lr: float, momentum: float, weight_decay: float, **_: Any) -> Optimizer:
    r"""Gradient descent (full batch) / SGD (mini-batch: the data decides): ``torch.optim.SGD``.

    .. math::  w_{t+1} = w_t - \eta\, g_t

    References:
        Cauchy (1847); Robbins & Monro (1951), Ann. Math. Statist. 22(3).

    """
    return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay)


def _heavy_ball(
    params: Any, lr: float, momentum: float, weight_decay: float, dampening: float = 0.0, **_: Any
) -> Optimizer:
    r"""Polyak's heavy ball: ``torch.optim.SGD(momentum=β)`` (default ``β = 0.9``).

    .. math::

        b_{t+1} = \beta b_t + (1 - \tau) g_t \;(b_1 = g_1), \qquad w_{t+1} = w_t - \eta\, b_{t+1}

    With dampening ``τ = 0`` this is Polyak's
    ``w_{t+1} = w_t − η ∇f(w_t) + β (w_t − w_{t−1})``; on a quadratic with curvature ``S`` it is
    stable for ``η S < 2 + 2β``.

    References:
        Polyak (1964), "Some methods of speeding up the convergence of iteration methods",
        USSR Comput. Math. Math. Phys. 4(5).

    """
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
    )


def _nesterov(params: Any, lr: float, momentum: float, weight_decay: float, **_: Any) -> Optimizer:
    r"""Nesterov momentum in PyTorch's form: ``torch.optim.SGD(momentum=β, nesterov=True)``.

    .. math::

        b_{t+1} = \beta b_t + g_t \;(b_1 = g_1), \qquad
        w_{t+1} = w_t - \eta\,(g_t + \beta b_{t+1})

    The textbook form (Sutskever et al. 2013) evaluates the gradient at a look-ahead point,
    ``v_{t+1} = β v_t − η ∇f(θ_t + β v_t)``, ``θ_{t+1} = θ_t + v_{t+1}``; PyTorch's ``w`` is that
    look-ahead point ``w_t = θ_t + β v_t`` (with ``v = −η b``), so the two produce the same
    trajectory of look-ahead points but the parameters stored differ. Nesterov's (1983) constant-
    momentum method ``y_{t+1} = x_t − η∇f(x_t)``, ``x_{t+1} = y_{t+1} + β(y_{t+1} − y_t)`` is also
    this recurrence with ``w = x``. On a quadratic with curvature ``S`` it is stable for
    ``η S < (2 + 2β) / (1 + 2β)``.

    References:
        Nesterov (1983), Soviet Math. Dokl. 27(2); Sutskever, Martens, Dahl, Hinton (2013), ICML;
        Liu, Pan, Tao (2021), arXiv 2107.01832.

    """
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )


def _rmsprop(
    params: Any,
    lr: float,
    momentum: float,
    weight_decay: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    centered: bool = False,
    **_: Any,
) -> Optimizer:
    r"""RMSProp: ``torch.optim.RMSprop`` (``momentum`` defaults to 0 here).

    .. math::

        v_{t+1} = \alpha v_t + (1 - \alpha) g_t^2 \;(v_0 = 0), \qquad
        w_{t+1} = w_t - \eta\, \frac{g_t}{\sqrt{v_{t+1}} + \epsilon}

    With ``momentum`` ``β > 0``: ``b_{t+1} = β b_t + g_t/(√v_{t+1} + ε)``,
    ``w_{t+1} = w_t − η b_{t+1}``.

    References:
        Tieleman & Hinton (2012), COURSERA Neural Networks for Machine Learning, Lecture 6.5.

    """
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=alpha,
        eps=eps,
        momentum=momentum,
        centered=centered,
        weight_decay=weight_decay,
    )


def _adam(
    params: Any,
    lr: float,
    momentum: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
    **_: Any,
) -> Optimizer:
    r"""Adam: ``torch.optim.Adam`` (first-moment decay via ``betas``, not ``momentum``).

    .. math::

        m_{t+1} &= \beta_1 m_t + (1 - \beta_1) g_t, \qquad
        v_{t+1} = \beta_2 v_t + (1 - \beta_2) g_t^2 \\
        w_{t+1} &= w_t - \eta\, \frac{m_{t+1} / (1 - \beta_1^{t+1})}
                                       {\sqrt{v_{t+1} / (1 - \beta_2^{t+1})} + \epsilon}

    References:
        Kingma & Ba (2015), "Adam: A method for stochastic optimization", ICLR.

    """
    return torch.optim.Adam(
        params, lr=lr, betas=betas, eps=eps, amsgrad=amsgrad, weight_decay=weight_decay
    )


def _prox_gd(params: Any, lr: float, weight_decay: float, l1: float, **_: Any) -> Optimizer:
    r"""Proximal gradient descent / ISTA: :class:`gdscope.optim.ProximalGD`.

    .. math::

        w_{t+1} = S_{\eta\lambda}(w_t - \eta g_t), \quad
        S_\tau(z) = \operatorname{sign}(z)\max(|z| - \tau, 0)

    ``g_t`` is the gradient of the smooth loss only; ``λ = l1``.

    References:
        Daubechies, Defrise, De Mol (2004), CPAM 57(11); Beck & Teboulle (2009), SIAM J.
        Imaging Sci. 2(1).

    """
    return ProximalGD(params, lr=lr, l1=l1, weight_decay=weight_decay)


def _fista(params: Any, lr: float, weight_decay: float, l1: float, **_: Any) -> Optimizer:
    r"""FISTA: :class:`gdscope.optim.FISTA` (gradient of the smooth loss at the parameters ``y_k``).

    .. math::

        x_k = S_{\eta\lambda}(y_k - \eta \nabla f(y_k)), \quad
        t_{k+1} = \tfrac{1 + \sqrt{1 + 4t_k^2}}{2}, \quad
        y_{k+1} = x_k + \tfrac{t_k - 1}{t_{k+1}} (x_k - x_{k-1})

    References:
        Beck & Teboulle (2009), SIAM J. Imaging Sci. 2(1):183–202.

    """
    return FISTA(params, lr=lr, l1=l1, weight_decay=weight_decay)


def _subgradient(
    params: Any,
    lr: float,
    weight_decay: float,
    l1: float,
    schedule: str,
    f_star: float | None = None,
    **_: Any,
) -> Optimizer:
    r"""Subgradient method: :class:`gdscope.optim.Subgradient`.

    .. math::  w_{t+1} = w_t - \eta_t\,(g_t + \lambda \operatorname{sign}(w_t))

    ``η_t = η`` (``"constant"``), ``η/√(t+1)`` (``"sqrt"``) or ``η (F(w_t) − F*)/‖g‖²``
    (``"polyak"``, needs ``f_star``); the best iterate is tracked.

    References:
        Shor (1985); Polyak (1987), "Introduction to Optimization", §5.3.

    """
    return Subgradient(
        params, lr=lr, l1=l1, schedule=schedule, f_star=f_star, weight_decay=weight_decay
    )


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Optimizer]
    lr_rule: str  # "sgd" (update linear in the gradient) | "adaptive" (entrywise normalized)
    extras: tuple[str, ...] = ()
    momentum: str = "none"  # "none" | "optional" (default 0) | "default" (default 0.9)
    l1: bool = False
    schedules: bool = False


_ENTRIES: dict[str, _Entry] = {
    "gd": _Entry(_gd, "sgd"),
    "sgd": _Entry(_gd, "sgd"),
    "heavy_ball": _Entry(_heavy_ball, "sgd", extras=("dampening",), momentum="default"),
    "nesterov": _Entry(_nesterov, "sgd", momentum="default"),
    "rmsprop": _Entry(
        _rmsprop, "adaptive", extras=("alpha", "eps", "centered"), momentum="optional"
    ),
    "adam": _Entry(_adam, "adaptive", extras=("betas", "eps", "amsgrad")),
    "prox_gd": _Entry(_prox_gd, "sgd", l1=True),
    "fista": _Entry(_fista, "sgd", l1=True),
    "subgradient": _Entry(_subgradient, "sgd", extras=("f_star",), l1=True, schedules=True),
}

ALIASES: dict[str, str] = {"ista": "prox_gd"}

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    **{name: entry.build for name, entry in _ENTRIES.items()},
    **{alias: _ENTRIES[target].build for alias, target in ALIASES.items()},
}
"""Study name → builder; each builder's docstring states its update rule."""


def _lookup(name: str) -> tuple[str, _Entry]:
    key = ALIASES.get(name, name)
    if key in _ENTRIES:
        return key, _ENTRIES[key]
    check.known("optimizer", name, OPTIMIZERS)
    raise AssertionError("unreachable: an alias points to no optimizer")


def check_optimizer(
    name: str,
    *,
    lr: float = 0.1,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    schedule: str = "constant",
    **kwargs: Any,
) -> None:
    """Raise the ``ValueError`` :func:`make_optimizer` would raise for these options, building nothing.

    For validating a trial config before anything runs: momentum where the optimizer takes none
    (or none where it needs some), an ``l1`` or a schedule it does not apply, an unknown extra
    option or a bad value of one.
    """
    key, entry = _lookup(name)
    check.positive_float("lr", lr)
    check.nonnegative_float("weight_decay", weight_decay)
    _momentum(key, entry, momentum)
    _check_options(key, entry, check.nonnegative_float("l1", l1), schedule, kwargs)


def _momentum(key: str, entry: _Entry, momentum: float | None) -> float:
    if momentum is None:
        return DEFAULT_MOMENTUM if entry.momentum == "default" else 0.0
    momentum = check.real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if entry.momentum == "none" and momentum != 0.0:
        fix = "use betas=(β1, β2)" if key == "adam" else "use 'heavy_ball' or 'nesterov'"
        raise ValueError(f"optimizer {key!r} takes no momentum, got momentum={momentum!r}; {fix}")
    if key == "nesterov" and momentum == 0.0:
        raise ValueError("nesterov needs momentum in (0, 1), got momentum=0.0; or use 'gd'")
    return momentum


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _betas(value: Any) -> tuple[float, float]:
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise ValueError(f"betas must be a pair (β1, β2) in [0, 1), got {value!r}")
    return (
        check.real("betas[0]", value[0], low=0.0, high=1.0, high_open=True),
        check.real("betas[1]", value[1], low=0.0, high=1.0, high_open=True),
    )


_EXTRA_CHECKS: dict[str, Callable[[Any], Any]] = {
    "dampening": lambda v: check.real("dampening", v, low=0.0, high=1.0),
    "alpha": lambda v: check.real("alpha", v, low=0.0, high=1.0, high_open=True),
    "eps": lambda v: check.real("eps", v, low=0.0),
    "centered": lambda v: _flag("centered", v),
    "amsgrad": lambda v: _flag("amsgrad", v),
    "betas": _betas,
    "f_star": lambda v: None if v is None else check.real("f_star", v),
}
"""Value checks of the extra options (torch's own give no fix, or none: ``centered='no'`` ran)."""


def _check_options(key: str, entry: _Entry, l1: float, schedule: str, kwargs: dict) -> None:
    if l1 and not entry.l1:
        raise ValueError(
            f"optimizer {key!r} does not apply l1, got l1={l1!r}; use 'prox_gd', 'fista' or "
            "'subgradient', or add the penalty to the loss"
        )
    check_schedule(schedule)
    if schedule != "constant" and not entry.schedules:
        raise ValueError(
            f"optimizer {key!r} has no step-size schedule, got schedule={schedule!r}; "
            "use 'subgradient' or a torch.optim.lr_scheduler"
        )
    for extra, value in kwargs.items():
        if extra not in entry.extras:
            accepted = ", ".join(entry.extras) or "none"
            hint = check.did_you_mean(extra, entry.extras)
            raise ValueError(
                f"optimizer {key!r} got unknown option {extra!r}; accepted extra options: "
                f"{accepted}{hint}"
            )
        _EXTRA_CHECKS[extra](value)


def param_groups(
    model: nn.Module, lr: float, *, optimizer: str = "gd", weight_decay: float | None = None
) -> list[dict[str, Any]]:
    """Return one param group per distinct learning-rate multiplier ``c`` of ``model``.

    Each group is ``{"params": [...], "lr": lr * c, "lr_multiplier": c}`` with the multipliers of
    ``optimizer``'s rule (:func:`gdscope.optim.groups.rule_groups`; with ``weight_decay``
    given, each group adds ``"weight_decay": weight_decay / c``), groups in order of
    first appearance in ``model.named_parameters()``; frozen parameters are left out.
    ``optimizer`` is a name of :data:`OPTIMIZERS`, or ``"adamw"`` for a ``torch.optim.AdamW``
    the caller builds.
    """
    rule = "adaptive" if optimizer == "adamw" else _lookup(optimizer)[1].lr_rule
    return rule_groups(model, lr, rule, optimizer=optimizer, weight_decay=weight_decay)


def make_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[Any],
    lr: float,
    *,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    l1: float = 0.0,
    schedule: str = "constant",
    **kwargs: Any,
) -> Optimizer:
    """Build the optimizer a study names.

    Args:
        name: one of :data:`OPTIMIZERS` (``"ista"`` is an alias of ``"prox_gd"``).
        model_or_params: an ``nn.Module`` (its lr multipliers under the optimizer's rule become
            param groups, see :func:`param_groups`), or parameters / param-group dicts as
            torch.optim takes them.
        lr: base step size ``η``, finite and ``> 0``.
        momentum: ``β ∈ [0, 1)`` for ``heavy_ball``/``nesterov`` (default 0.9) and ``rmsprop``
            (default 0); an error for the others.
        weight_decay: coupled L2 coefficient ``≥ 0`` (added to the gradient).
        l1: L1 strength ``≥ 0`` for ``prox_gd``/``fista``/``subgradient`` only.
        schedule: ``"constant"``, or ``"sqrt"``/``"polyak"`` for ``subgradient``.
        **kwargs: the extra options of the torch optimizer (``betas``, ``eps``, ``alpha``,
            ``centered``, ``amsgrad``, ``dampening``) or ``f_star`` for ``subgradient``.

    Returns:
        A ``torch.optim.Optimizer``.

    Raises:
        ValueError: unknown name (with the closest match), ``lr`` not finite and positive,
            ``momentum`` outside ``[0, 1)`` or given where it does not apply, negative
            ``weight_decay``/``l1``, an option the optimizer does not take, a model whose
            parameterization has no learning-rate rule for the optimizer (``meanfield`` with
            ``adam``/``rmsprop``).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = make_optimizer("nesterov", model, lr=0.1, momentum=0.9)

    """
    key, entry = _lookup(name)
    lr = check.positive_float("lr", lr)
    weight_decay = check.nonnegative_float("weight_decay", weight_decay)
    l1 = check.nonnegative_float("l1", l1)
    beta = _momentum(key, entry, momentum)
    _check_options(key, entry, l1, schedule, kwargs)
    if isinstance(model_or_params, nn.Module):
        params: Any = param_groups(model_or_params, lr, optimizer=key, weight_decay=weight_decay)
    else:
        params = list(model_or_params)
    return entry.build(
        params,
        lr=lr,
        momentum=beta,
        weight_decay=weight_decay,
        l1=l1,
        schedule=schedule,
        **kwargs,
    )
