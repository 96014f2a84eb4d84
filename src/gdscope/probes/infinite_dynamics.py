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
``f_t(X)`` approaches as ``width^{-1/2}``: the finite-width kernel ``K_0`` differs from ``Θ``
by ``O(width^{-1/2})`` and the network from its linearization likewise (Lee et al. 2019,
Theorem 2.1). ``Θ`` is :func:`~gdscope.probes.infinite_width.mlp_kernels`' of the distribution
the network was drawn from, so the network must be a plain random gdscope ``mlp``.

>>> import torch
>>> from gdscope.models import mlp
>>> net = mlp(3, 8, depth=2, parameterization="ntk", seed=0, dtype=torch.float64)
>>> x, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
>>> f0 = net(x).detach()
>>> bool(torch.allclose(infinite_width_gd(net, x, y, f0, lr=0.5, steps=0), f0, atol=1e-12))
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gdscope.probes.infinite_width import mlp_kernels

__all__ = ["infinite_width_gd", "plain_gd_lr"]


def infinite_width_gd(
    model: nn.Module, x: Tensor, y: Tensor, f0: Tensor, *, lr: float, steps: int
) -> Tensor:
    """Return ``f^∞_t(X)``, ``(n, k)`` float64: the infinite-width linear model after ``steps``.

    Args:
        model: a plain random gdscope ``mlp`` (what :func:`~gdscope.probes.mlp_kernels`
            covers); only its architecture and init distribution are read.
        x: the ``(n, d)`` training inputs.
        y: targets ``(n, k)`` (or ``(n,)``).
        f0: the network's outputs at initialization on ``x``, ``(n, k)``.
        lr: the step ``η`` of full-batch GD on the half mean squared error.
        steps: ``t ≥ 0``.

    Raises:
        ValueError: for a model :func:`~gdscope.probes.mlp_kernels` does not cover, or a
            negative ``steps``.

    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    theta = torch.from_numpy(mlp_kernels(model, x).ntk)
    f0 = f0.detach().double().cpu().reshape(x.shape[0], -1)
    y = y.detach().double().cpu().reshape(f0.shape)
    values, vectors = torch.linalg.eigh(theta)
    decay = (1.0 - lr * values / x.shape[0]) ** steps
    return y + vectors @ (decay[:, None] * (vectors.T @ (f0 - y)))


def plain_gd_lr(optimizer: torch.optim.Optimizer | None) -> float | None:
    """Return ``η`` if ``optimizer`` is plain GD, one step for every parameter, else ``None``.

    Plain: ``torch.optim.SGD`` without momentum, weight decay or a schedule (no group's
    ``initial_lr`` differs from its ``lr``), every group at the same ``lr`` (per-parameter
    multipliers, as μP's, precondition GD: its kernel is then not ``Θ``).
    """
    if type(optimizer) is not torch.optim.SGD:
        return None
    groups = optimizer.param_groups
    lrs = {float(g["lr"]) for g in groups}
    if len(lrs) != 1 or any(g["momentum"] != 0 or g["weight_decay"] != 0 for g in groups):
        return None
    if any(float(g.get("initial_lr", g["lr"])) != float(g["lr"]) for g in groups):
        return None
    return lrs.pop()
