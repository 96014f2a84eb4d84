r"""The infinite-width network trained by gradient descent: its outputs in closed form.

As the width grows, a network trained by full-batch GD on the square loss
``L = (1/2n) Σ_i ‖f(x_i) − y_i‖²`` follows its linearization, whose kernel is the
infinite-width NTK ``Θ`` (Lee et al. 2019, "Wide neural networks of any depth evolve as linear
models under gradient descent", eq. (9)–(11) in discrete time). On the training inputs the
residual ``r_t = f_t(X) − y`` of the linear model with kernel ``Θ ⊗ I_k`` evolves as

.. math::  r_{t+1} = (I − \tfrac{η}{n} Θ)\, r_t
           \quad\Longrightarrow\quad
           f^{∞}_t(X) = y + U (I − \tfrac{η}{n} Λ)^t U^\top (f_0(X) − y),
           \qquad Θ = U Λ U^\top,

each output column alike. Started from the network's own ``f_0``, this is the reference that
``f_t(X)`` approaches as ``width^{-1/2}``: the network stays within ``O(width^{-1/2})`` of its
linearization (Lee et al. 2019, Theorem 2.1), whose kernel ``K_0`` fluctuates about ``Θ`` by
``O(width^{-1/2})`` (its entries are averages over the units of a layer). ``Θ`` is
:func:`~gdscope.probes.infinite_width.mlp_kernels`' of the distribution the network was drawn
from, so the network must be a plain random gdscope ``mlp``; the scale of ``Θ`` matters here
(the step is ``ηΘ/n``), where kernel regression's ``Θ_* Θ^{-1}`` does not see it.
neural-tangents' ``predict.gradient_descent_mse`` runs in continuous time on the loss divided
by ``y.size = n·k``: its ``learning_rate`` is ``η·k`` here, and the two agree to first order in
``η`` at fixed ``ηt`` (``k = 3``, ``η = 0.5``, 10 steps: 4.6e-2 apart; at ``η/1000`` and
``1000×`` the steps: 4.4e-5).

>>> import torch
>>> from gdscope.models import mlp
>>> net = mlp(3, 8, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
>>> x, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
>>> f0 = net(x).detach()
>>> bool(torch.allclose(infinite_width_gd(net, x, y, f0, lr=0.5, steps=0), f0, atol=1e-12))
True
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope.functional import without_autocast
from gdscope.probes.infinite_width import mlp_kernels

__all__ = ["InfiniteWidthGD", "infinite_width_gd", "plain_gd_lr"]

Inputs = Tensor | np.ndarray


class InfiniteWidthGD:
    """The infinite-width linear model trained by GD on ``(x, y)`` from ``f_0``; ``Θ`` decomposed once.

    Args:
        model: a plain random gdscope ``mlp`` (what :func:`~gdscope.probes.mlp_kernels`
            covers); only its architecture and init distribution are read.
        x: the ``(n, d)`` training inputs.
        y: targets ``(n, k)`` (or ``(n,)``).
        f0: the network's outputs at initialization on ``x``, ``(n, k)``.

    ``x``, ``y`` and ``f0`` are tensors or NumPy arrays of real numbers (read in float64), as
    :func:`~gdscope.probes.mlp_kernels`, which this wraps, reads its inputs.

    Raises:
        ValueError: for a model :func:`~gdscope.probes.mlp_kernels` does not cover; ``x``
            not ``(n, d)``; ``y`` and ``f0`` not ``(n, k)`` (``(n,)`` for one output) with
            ``x``'s ``n`` rows, or not finite (a nan target would make every output nan).

    """

    def __init__(self, model: nn.Module, x: Inputs, y: Inputs, f0: Inputs) -> None:
        x, y, f0 = _as_tensor("x", x), _as_tensor("y", y), _as_tensor("f0", f0)
        if x.ndim != 2:
            raise ValueError(
                f"x must be (n, d) inputs, got shape {tuple(x.shape)}; pass one row per input"
            )
        self.n = x.shape[0]
        if f0.ndim not in (1, 2) or f0.shape[0] != self.n:
            raise ValueError(
                f"f0 must be (n, k) or (n,) with n = {self.n} rows like x, got shape "
                f"{tuple(f0.shape)}; pass the network's outputs on x at initialization"
            )
        self.f0 = _finite("f0", f0).reshape(self.n, -1)
        k = self.f0.shape[1]
        allowed = [(self.n, k), (self.n,)] if k == 1 else [(self.n, k)]
        if tuple(y.shape) not in allowed:
            raise ValueError(
                f"y must be ({self.n}, {k}) like f0 (or ({self.n},) for one output), got shape "
                f"{tuple(y.shape)}; pass one target row per input (one-hot class labels)"
            )
        self.y = _finite("y", y).reshape(self.f0.shape)
        self._model, self._x = model, x
        self._kept_cross: tuple[Tensor, Tensor] | None = None  # (x_*, Θ(x_*, X)) of predict
        theta = torch.from_numpy(mlp_kernels(model, x).ntk)
        self.values, self.vectors = torch.linalg.eigh(theta)

    def outputs(self, *, lr: float, steps: int) -> Tensor:
        """Return ``f^∞_t(X)``, ``(n, k)`` float64, after ``steps ≥ 0`` steps of size ``lr``."""
        lr, steps = _step_arguments(lr, steps)
        decay = (1.0 - lr * self.values / self.n) ** steps
        return self.y + self.vectors @ (decay[:, None] * (self.vectors.T @ (self.f0 - self.y)))

    def predict(self, x_test: Inputs, f0_test: Inputs, *, lr: float, steps: int) -> Tensor:
        r"""Return ``f^∞_t(x_*)``, ``(m, k)`` float64, on inputs ``x_test`` after ``steps`` of ``lr``.

        Each step moves the outputs off the training set by ``−(η/n) Θ(x_*, X) r_j``, so

        .. math::  f^∞_t(x_*) = f_0(x_*) − Θ(x_*, X)\, U\, \mathrm{diag}(g_i)\, U^\top r_0,
                   \qquad g_i = \frac{η}{n} \sum_{j<t} (1 − \tfrac{η}{n} λ_i)^j
                   = \frac{1 − (1 − ηλ_i/n)^t}{λ_i},

        (Lee et al. 2019, eq. (9)–(11) in discrete time), ``g_i = ηt/n`` where ``λ_i = 0``: a
        flat direction of ``Θ`` never moves. As ``t → ∞`` with ``η < 2n/λ_max`` it is kernel
        regression from ``f_0``, ``f_0(x_*) + Θ(x_*, X) Θ^{-1}(y − f_0(X))``; at ``x_* = X``
        it is :meth:`outputs`.

        Args:
            x_test: ``(m, d)`` inputs.
            f0_test: the network's outputs on ``x_test`` at initialization, ``(m, k)`` (or
                ``(m,)`` for one output).
            lr: the GD step size ``η ≥ 0``.
            steps: the number of steps ``t ≥ 0``.

        Raises:
            ValueError: for ``f0_test`` not ``(m, k)`` or not finite, or ``x_test`` not the
                model's inputs (tensors or NumPy arrays, as in the constructor).

        """
        lr, steps = _step_arguments(lr, steps)
        x_test, f0_test = _as_tensor("x_test", x_test), _as_tensor("f0_test", f0_test)
        m, k = (x_test.shape[0] if x_test.ndim else 0), self.f0.shape[1]
        if tuple(f0_test.shape) not in ([(m, k), (m,)] if k == 1 else [(m, k)]):
            raise ValueError(
                f"f0_test must be ({m}, {k}) like x_test's rows and f0's outputs, got shape "
                f"{tuple(f0_test.shape)}; pass the network's outputs on x_test at initialization"
            )
        cross = self._cross(x_test)
        gains = _summed_steps(lr * self.values / self.n, steps) * (lr / self.n)
        moved = self.vectors @ (gains[:, None] * (self.vectors.T @ (self.f0 - self.y)))
        return _finite("f0_test", f0_test).reshape(m, k) - cross @ moved

    def _cross(self, x_test: Tensor) -> Tensor:
        """``Θ(x_*, X)``, kept for the last ``x_test``: a schedule asks at every checkpoint."""
        kept = self._kept_cross
        if kept is None or kept[0].shape != x_test.shape or not torch.equal(kept[0], x_test):
            kept = (x_test.clone(), torch.from_numpy(mlp_kernels(self._model, x_test, self._x).ntk))
            self._kept_cross = kept
        return kept[1]


def _as_tensor(name: str, value: object) -> Tensor:
    """``value``, a tensor or NumPy array of real numbers, as a float64 CPU tensor; one line else."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ValueError(
                f"{name} must hold real numbers, got dtype {value.dtype}; pass a float array"
            )
        value = torch.from_numpy(value.astype(np.float64))
    if not isinstance(value, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor or a NumPy array, got {type(value).__name__}; "
            f"pass torch.as_tensor({name})"
        )
    if value.is_complex():
        raise ValueError(f"{name} must be real, got dtype {value.dtype}; pass {name}.real")
    return value.detach().to("cpu", torch.float64)


def _finite(name: str, value: Tensor) -> Tensor:
    """``value`` if every entry is finite; a one-line ``ValueError`` naming one that is not."""
    bad = value[~torch.isfinite(value)]
    if bad.numel():
        raise ValueError(
            f"{name} must be finite, got an entry {float(bad[0])!r}; drop or impute the "
            "non-finite values"
        )
    return value


def _step_arguments(lr: float, steps: int) -> tuple[float, int]:
    """Check ``lr`` (finite, ``≥ 0``) and ``steps`` (an int ``≥ 0``), in one line each."""
    try:
        steps = check.nonnegative_int("steps", steps)
    except ValueError:
        raise ValueError(
            f"steps must be an int >= 0, got {steps!r}; pass a number of GD steps"
        ) from None
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 <= lr < math.inf:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}; pass the GD step size")
    return float(lr), steps


def _summed_steps(a: Tensor, steps: int) -> Tensor:
    r"""``Σ_{j<t} (1 − a)^j`` elementwise: ``(1 − (1 − a)^t)/a``, and ``t`` at ``a = 0``.

    Near ``a = 0`` (a flat direction, or ``Θ``'s rounding about 0) as ``−expm1(t·log1p(−a))/a``,
    which keeps its digits where ``1 − (1 − a)^t`` would cancel.

    >>> _summed_steps(torch.tensor([0.0, 1e-20, 0.5, 1.0, 3.0], dtype=torch.float64), 3).tolist()
    [3.0, 3.0, 1.75, 1.0, 3.0]
    """
    out = torch.full_like(a, float(steps))
    near = (a.abs() < 0.5) & (a != 0)
    out[near] = -torch.expm1(steps * torch.log1p(-a[near])) / a[near]
    far = a.abs() >= 0.5
    out[far] = (1.0 - (1.0 - a[far]) ** steps) / a[far]
    return out


@without_autocast
def infinite_width_gd(
    model: nn.Module, x: Inputs, y: Inputs, f0: Inputs, *, lr: float, steps: int
) -> Tensor:
    """Return ``f^∞_t(X)``, ``(n, k)`` float64: :class:`InfiniteWidthGD` after ``steps`` of ``lr``."""
    return InfiniteWidthGD(model, x, y, f0).outputs(lr=lr, steps=steps)


def plain_gd_lr(optimizer: torch.optim.Optimizer | None, model: nn.Module) -> float | None:
    """Return ``η`` if ``optimizer`` is plain GD on every trainable parameter of ``model``.

    Plain: ``torch.optim.SGD`` minimizing, without momentum, weight decay or a schedule (no
    group's ``initial_lr`` differs from its ``lr``), every group at the same ``lr`` (per-parameter
    multipliers, as μP's, precondition GD: its kernel is then not ``Θ``), its parameters exactly
    the model's trainable ones. ``None`` otherwise.
    """
    if type(optimizer) is not torch.optim.SGD:
        return None
    groups = optimizer.param_groups
    lrs = {float(g["lr"]) for g in groups}
    if len(lrs) != 1 or any(g["momentum"] != 0 or g["weight_decay"] != 0 for g in groups):
        return None
    if any(g.get("maximize", False) for g in groups):
        return None
    if any(float(g.get("initial_lr", g["lr"])) != float(g["lr"]) for g in groups):
        return None
    stepped = {id(p) for g in groups for p in g["params"]}
    if stepped != {id(p) for p in model.parameters() if p.requires_grad}:
        return None
    return lrs.pop()
