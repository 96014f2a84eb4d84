"""Proximal gradient methods for ``F(w) = f(w) + λ‖w‖₁``: ISTA (:class:`ProximalGD`) and FISTA.

Both are ``torch.optim.Optimizer`` subclasses. ``step()`` reads ``p.grad`` of the **smooth** part
``f`` only (do not add the L1 penalty to the loss you backpropagate); the optimizer applies the
proximal operator of ``λ‖·‖₁``, the soft-threshold, which produces exact zeros.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from gdscope import _checks as check

__all__ = ["FISTA", "ProximalGD", "soft_threshold"]


def soft_threshold(z: Tensor, t: float) -> Tensor:
    r"""Soft-threshold :math:`S_t(z) = \operatorname{sign}(z)\max(|z| - t, 0)` (prox of ``t‖·‖₁``).

    Entries with ``|z| ≤ t`` become exact zeros.
    """
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0)


def _closure_loss(closure: Callable[[], Any] | None) -> Any:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _smooth_grad(p: Tensor, weight_decay: float) -> Tensor:
    grad = p.grad
    assert grad is not None  # callers skip parameters without gradients
    if grad.is_sparse:
        raise RuntimeError("proximal methods do not support sparse gradients")
    return grad.add(p, alpha=weight_decay) if weight_decay else grad


class _Proximal(Optimizer):
    """The hyper-parameters both proximal methods share: ``lr``, ``l1``, ``weight_decay``."""

    def __init__(
        self, params: Iterable[Any], lr: float, l1: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        defaults = {
            "lr": check.positive_float("lr", lr),
            "l1": check.nonnegative_float("l1", l1),
            "weight_decay": check.nonnegative_float("weight_decay", weight_decay),
        }
        super().__init__(params, defaults)


class ProximalGD(_Proximal):
    r"""Proximal gradient descent (ISTA) for ``f(w) + λ‖w‖₁``.

    .. math::

        w_{t+1} = S_{\eta\lambda}\big(w_t - \eta\,(\nabla f(w_t) + \mu w_t)\big),
        \qquad S_\tau(z) = \operatorname{sign}(z)\max(|z| - \tau, 0)

    with ``η = lr`` (per param group), ``λ = l1`` and ``μ = weight_decay`` (an L2 term treated
    as part of the smooth ``f``). With ``η = 1/L`` (``L`` the Lipschitz constant of ``∇f``),
    ``F(w_t) − F* ≤ L‖w_0 − w*‖² / (2t)``.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: step size ``η > 0``.
        l1: L1 strength ``λ ≥ 0`` (``λ = 0`` is plain gradient descent).
        weight_decay: L2 coefficient ``μ ≥ 0`` added to the smooth gradient.

    Example:
        >>> w = torch.zeros(3, requires_grad=True)
        >>> opt = ProximalGD([w], lr=0.5, l1=0.1)
        >>> loss = 0.5 * ((w - torch.tensor([1.0, 0.05, -2.0])) ** 2).sum()
        >>> loss.backward(); opt.step()

    References:
        Daubechies, Defrise, De Mol (2004), "An iterative thresholding algorithm for linear inverse
        problems with a sparsity constraint", CPAM 57(11). Beck & Teboulle (2009), SIAM J.
        Imaging Sci. 2(1):183–202, §2–3.

    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one proximal step; ``closure`` (optional) re-evaluates the smooth loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, l1 = group["lr"], group["l1"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                z = p - lr * _smooth_grad(p, group["weight_decay"])
                p.copy_(soft_threshold(z, lr * l1))
        return loss


class FISTA(_Proximal):
    r"""FISTA (Beck & Teboulle 2009): ISTA with Nesterov's ``t_k`` momentum.

    The parameters hold the extrapolated point ``y_k`` at which the user evaluates ``∇f``:

    .. math::

        x_k &= S_{\eta\lambda}\big(y_k - \eta\,(\nabla f(y_k) + \mu y_k)\big) \\
        t_{k+1} &= \tfrac12\big(1 + \sqrt{1 + 4 t_k^2}\big), \qquad t_1 = 1 \\
        y_{k+1} &= x_k + \frac{t_k - 1}{t_{k+1}}\,(x_k - x_{k-1}), \qquad y_1 = x_0

    The rate ``F(x_k) − F* ≤ 2L‖x_0 − w*‖² / (k+1)²`` (``η = 1/L``) holds for the proximal
    iterates ``x_k``, available as :meth:`iterates` (they carry the exact zeros; ``y_k``
    converges to the same point).

    Args:
        params: iterable of tensors or param-group dicts.
        lr: step size ``η > 0``.
        l1: L1 strength ``λ ≥ 0``.
        weight_decay: L2 coefficient ``μ ≥ 0`` added to the smooth gradient.

    References:
        Beck & Teboulle (2009), "A fast iterative shrinkage-thresholding algorithm for linear
        inverse problems", SIAM J. Imaging Sci. 2(1):183–202, §4.

    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Take one FISTA step; ``closure`` (optional) re-evaluates the smooth loss at ``y_k``."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, l1 = group["lr"], group["l1"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"] = 1.0
                    state["x"] = p.detach().clone()
                x = soft_threshold(p - lr * _smooth_grad(p, group["weight_decay"]), lr * l1)
                t = state["t"]
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
                p.copy_(x + ((t - 1.0) / t_next) * (x - state["x"]))
                state["x"], state["t"] = x, t_next
        return loss

    def iterates(self) -> list[Tensor]:
        """Return the proximal iterates ``x_k`` (the parameters before the first step)."""
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                x = self.state[p].get("x") if p in self.state else None
                out.append((p if x is None else x).detach().clone())
        return out
