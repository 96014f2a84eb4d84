"""Subgradient method with constant, ``1/√t`` and Polyak step sizes, and best-iterate tracking."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from gdscope import _checks as check

__all__ = ["SCHEDULES", "Subgradient"]

SCHEDULES = ("constant", "sqrt", "polyak")


def check_schedule(schedule: str) -> str:
    """Return ``schedule`` if it is one of :data:`SCHEDULES`, else raise ``ValueError``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; accepted: {', '.join(SCHEDULES)}")
    return schedule


class Subgradient(Optimizer):
    r"""Subgradient descent on ``F(w) = f(w) + (μ/2)‖w‖² + λ‖w‖₁`` with best-iterate tracking.

    .. math::

        g_t = \nabla f(w_t) + \mu w_t + \lambda \operatorname{sign}(w_t), \qquad
        w_{t+1} = w_t - \eta_t\, g_t

    ``p.grad`` must hold a (sub)gradient of ``f`` (the loss you backpropagate, **without** the L1
    term, which the optimizer adds). At ``w_i = 0`` the subgradient ``sign(0) = 0`` is chosen
    (``torch.sign``), as autograd does for ``|x|``. Step sizes, with ``η = lr`` of the group:

    - ``"constant"``: ``η_t = η``; on ``|x|`` the iterates end on a cycle, a floor of order ``η``;
    - ``"sqrt"``: ``η_t = η / √(t + 1)``, ``t = 0, 1, …``; the best iterate satisfies
      ``min_{s≤t} F(w_s) − F* = O(1/√t)`` for Lipschitz convex ``F``;
    - ``"polyak"``: ``η_t = η · max(F(w_t) − F*, 0) / ‖g_t‖²`` with ``‖g_t‖²`` over all
      parameters; ``lr = 1`` is Polyak's step, ``lr ∈ (0, 2)`` its relaxed form. It needs
      ``F(w_t)``: pass ``step(closure)`` (closure returns ``f(w_t)``) or ``step(loss=f(w_t))``;
      ``requires_closure`` is then ``True`` so that training loops pass the closure. ``f_star``
      defaults to 0, a lower bound for every gdscope loss (exact when the model interpolates;
      with ``F* > 0`` the step does not vanish and the iterates stay in a neighbourhood).

    Best iterate: whenever ``F(w_t)`` is known (a closure or ``loss=`` is given) and below the
    best seen, ``w_t`` (before the update) is copied. ``best_loss`` is that ``F``
    (``inf`` until one is recorded); :meth:`best_params` returns the copies and
    :meth:`load_best` writes them into the parameters.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: ``η > 0``.
        l1: ``λ ≥ 0``.
        schedule: ``"constant"``, ``"sqrt"`` or ``"polyak"``.
        f_star: optimal value ``F*`` for ``"polyak"`` (default 0).
        weight_decay: L2 coefficient ``μ ≥ 0``.

    Raises:
        ValueError: on a bad argument (the message names it and its value).

    References:
        Shor (1985), "Minimization Methods for Non-Differentiable Functions". Polyak (1987),
        "Introduction to Optimization", §5.3. Boyd, Xiao, Mutapcic (2003), "Subgradient methods",
        Stanford EE392o notes (best-iterate bounds). Kumar (2024), arXiv 2401.08426.

    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        l1: float = 0.0,
        schedule: str = "constant",
        f_star: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        check_schedule(schedule)
        f_star = None if f_star is None else check.real("f_star", f_star)
        defaults = {
            "lr": check.positive_float("lr", lr),
            "l1": check.nonnegative_float("l1", l1),
            "weight_decay": check.nonnegative_float("weight_decay", weight_decay),
        }
        super().__init__(params, defaults)
        self.schedule = schedule
        self.f_star = 0.0 if f_star is None else float(f_star)
        self.requires_closure = schedule == "polyak"
        self.best_loss = math.inf
        self.steps = 0

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _subgradients(self) -> list[tuple[Tensor, Tensor, dict[str, Any]]]:
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("subgradient methods do not support sparse gradients")
                g = p.grad.add(p, alpha=group["weight_decay"])
                out.append((p, g.add(torch.sign(p), alpha=group["l1"]), group))
        return out

    def _objective(self, loss: Any) -> float:
        penalty = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                penalty += group["l1"] * float(p.abs().sum())
                penalty += 0.5 * group["weight_decay"] * float(p.pow(2).sum())
        value = loss.detach() if isinstance(loss, Tensor) else loss
        return float(value) + penalty

    def _record_best(self, objective: float) -> None:
        if objective < self.best_loss:
            self.best_loss = objective
            for p in self._params():
                self.state[p]["best"] = p.detach().clone()

    def _step_size(self, lr: float, objective: float | None, grad_sq: float) -> float:
        if self.schedule == "constant":
            return lr
        if self.schedule == "sqrt":
            return lr / math.sqrt(self.steps + 1)
        assert objective is not None  # checked in step
        gap = max(objective - self.f_star, 0.0)
        return lr * gap / grad_sq if grad_sq > 0 else 0.0

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], Any] | None = None, *, loss: Any = None
    ) -> Any:
        """Take one subgradient step.

        Args:
            closure: optional; re-evaluates and returns the smooth loss ``f(w_t)`` after
                ``backward()``.
            loss: optional ``f(w_t)`` already computed (used when ``closure`` is None).

        Returns:
            The closure's loss, or ``loss``.

        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is None and self.schedule == "polyak":
            raise ValueError(
                "schedule='polyak' needs the loss f(w_t): call step(closure) with a closure that "
                "returns the loss, or step(loss=...)"
            )
        objective = None if loss is None else self._objective(loss)
        if objective is not None:
            self._record_best(objective)
        subgrads = self._subgradients()
        grad_sq = sum(float(g.pow(2).sum()) for _, g, _ in subgrads)
        for p, g, group in subgrads:
            p.sub_(g, alpha=self._step_size(group["lr"], objective, grad_sq))
        self.steps += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Torch's state dict plus the run's step count and best objective.

        So that a run resumed from it continues the same ``"sqrt"`` schedule (``η/√(t + 1)``)
        and keeps its best iterate (a fresh ``best_loss = inf`` let the next, worse objective
        overwrite it).
        """
        out = super().state_dict()
        out["subgradient"] = {"steps": self.steps, "best_loss": self.best_loss}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load :meth:`state_dict`'s output (a plain torch state dict restarts the counters)."""
        own = state_dict.get("subgradient", {})
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "subgradient"})
        self.steps = int(own.get("steps", 0))
        self.best_loss = float(own.get("best_loss", math.inf))

    def best_params(self) -> list[Tensor]:
        """Return copies of the best iterate's parameters (current parameters if none recorded)."""
        return [self.state[p].get("best", p).detach().clone() for p in self._params()]

    @torch.no_grad()
    def load_best(self) -> None:
        """Copy the best iterate into the parameters."""
        for p, best in zip(self._params(), self.best_params(), strict=True):
            p.copy_(best)
