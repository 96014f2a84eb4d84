r"""Probes for Du et al.'s two-layer analysis: ``H(θ) → H∞`` and the linear-rate bound along GD.

Du, Zhai, Poczós & Singh (2019), "Gradient descent provably optimizes over-parameterized neural
networks": for :func:`gdscope.models.two_layer` (frozen outer layer) the empirical Gram
``H(θ) = J Jᵀ`` tends to ``H∞`` (:func:`gdscope.probes.ntk.h_infinity`) as the width ``m``
grows, and GD with step ``η`` on ``Φ = ½‖u − y‖²`` obeys
``‖u(k) − y‖² ≤ (1 − ηλ₀/2)^k ‖u(0) − y‖²`` with ``λ₀ = λ_min(H∞)``.

``gdscope.losses.mse`` is ``L = (1/2n)‖u − y‖² = Φ/n``, so a gdscope step ``lr`` on ``L`` is a
Du et al. step ``η = lr/n`` on ``Φ``, and the bound reads ``L(k) ≤ (1 − lr·λ₀/(2n))^k L(0)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from gdscope import losses
from gdscope.models.two_layer import TwoLayer
from gdscope.probes.ntk import h_infinity

if TYPE_CHECKING:
    from gdscope.training.context import ProbeContext


def _applies(ctx: ProbeContext) -> bool:
    """Whether ``H∞`` is the limit of this model's Gram: Du et al.'s network on the unit sphere.

    That is a :class:`~gdscope.models.two_layer.TwoLayer` with a ReLU, its outer weights
    ``a_r = ±1`` frozen, on ``(n, d)`` inputs with unit-norm rows; any other model's Gram has
    another limit (a trained outer layer, tanh, a deeper net: the gap stays at 0.4–1.5 as the
    width grows).
    """
    model, x = ctx.model, ctx.data[0]
    if type(model) is not TwoLayer or type(model.activation) is not nn.ReLU:
        return False
    outer = model.outer
    if isinstance(outer, nn.Parameter) and outer.requires_grad:
        return False
    if not bool((outer.abs() == 1).all()) or x.ndim != 2:
        return False
    norms = torch.linalg.norm(x.detach().to(torch.float64), dim=1)
    return bool(((norms - 1).abs() <= 1e-5).all())


def _h_infinity(ctx: ProbeContext) -> tuple[torch.Tensor, float]:
    """``H∞`` on the training inputs and ``λ₀ = λ_min(H∞)`` (float64, computed once per run)."""
    if "h_infinity" not in ctx.memory:
        h_inf = h_infinity(ctx.data[0].detach().to(torch.float64).cpu())
        lam0 = float(torch.linalg.eigvalsh(h_inf)[0])
        ctx.memory["h_infinity"] = (h_inf, lam0)
    return ctx.memory["h_infinity"]


def h_infinity_gap(ctx: ProbeContext) -> dict[str, float]:
    r"""Return ``‖H(θ) − H∞‖₂ / ‖H∞‖₂`` (spectral norms, float64) and ``λ₀ = λ_min(H∞)``.

    ``H(θ)`` is the NTK Gram of the model over its trainable parameters on the training inputs
    (for ``two_layer`` with a frozen outer layer, exactly Du et al.'s ``H``). Du et al. (2019,
    Lemma 3.1) bound ``‖H(0) − H∞‖`` by ``O(n·√(log(n/δ)/m))``: expect ``m^{-1/2}``.

    Both values are nan where the comparison does not apply (another model than Du et al.'s
    ReLU network with frozen ``±1`` outer weights, or inputs off the unit sphere), so the probe
    can be scheduled on any run.

    """
    nan = {"h_infinity_gap": math.nan, "h_infinity_lambda_min": math.nan}
    if not _applies(ctx):
        return nan
    gram = ctx.gram().to(torch.float64).cpu()
    if gram.shape[0] != ctx.data[0].shape[0]:
        return nan
    h_inf, lam0 = _h_infinity(ctx)
    gap = float(torch.linalg.matrix_norm(gram - h_inf, ord=2))
    return {
        "h_infinity_gap": gap / float(torch.linalg.matrix_norm(h_inf, ord=2)),
        "h_infinity_lambda_min": lam0,
    }


def du_bound(ctx: ProbeContext) -> dict[str, float]:
    r"""Return Du et al.'s bound ``L(0)·(1 − ηλ₀/(2n))^t`` on the mse loss at step ``t``.

    ``η`` is the step of plain full-batch GD (:attr:`ProbeContext.gd_step`), the setting the
    bound is stated for; the probe must run at step 0 (``L(0)``). It also returns
    ``du_step = η`` and ``du_rate = 1 − ηλ₀/(2n)``. All three are nan where the bound does not
    apply (another loss than :func:`gdscope.losses.mse`, whose GD the rate is derived for;
    another model than Du et al.'s, inputs off the unit sphere, momentum, an adaptive method,
    mini-batches, a schedule: no ``gd_step``; step 0 not measured), so the probe can be
    scheduled on any run.

    """
    n = ctx.data[0].shape[0]
    nan = {"du_bound": math.nan, "du_step": math.nan, "du_rate": math.nan}
    eta = ctx.gd_step
    if eta is None or not losses.is_mse(ctx.loss_fn) or not _applies(ctx):
        return nan
    if ctx.step == 0:
        ctx.memory["du_loss0"] = ctx.loss()
    loss0 = ctx.memory.get("du_loss0")
    if loss0 is None:
        return nan
    _, lam0 = _h_infinity(ctx)
    rate = 1.0 - eta * lam0 / (2.0 * n)
    return {"du_bound": loss0 * rate**ctx.step, "du_step": eta, "du_rate": rate}
