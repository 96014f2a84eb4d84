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

from gdscope.probes.ntk import h_infinity

if TYPE_CHECKING:
    from gdscope.training.context import ProbeContext


def _applies(ctx: ProbeContext) -> bool:
    """Whether the inputs are ``(n, d)`` with unit-norm rows (where ``H∞`` is defined)."""
    x = ctx.data[0]
    if x.ndim != 2:
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

    Both values are nan where the comparison does not apply (several outputs per example, or
    inputs off the unit sphere), so the probe can be scheduled on any run.

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
    r"""Return Du et al.'s bound ``L(0)·(1 − η̂λ₀/(2n))^t`` on the mse loss at step ``t``.

    ``η̂`` is the step GD actually took, read off the first update:
    ``η̂ = ⟨θ₀ − θ₁, ∇L(θ₀)⟩ / ‖∇L(θ₀)‖²`` — the ``lr`` of plain full-batch GD, the setting
    the bound is stated for. The probe must therefore run at steps 0 and 1 (schedule it every
    step); it also returns ``du_step = η̂`` and ``du_rate = 1 − η̂λ₀/(2n)``. All three are nan
    where the bound does not apply (inputs off the unit sphere, several outputs, step 1 not
    measured), so the probe can be scheduled on any run.

    """
    n = ctx.data[0].shape[0]
    nan = {"du_bound": math.nan, "du_step": math.nan, "du_rate": math.nan}
    if not _applies(ctx) or ctx.train_output().numel() != n:
        return nan
    _, lam0 = _h_infinity(ctx)
    if ctx.step == 0:
        grads = {
            name: g.detach().to(torch.float64).clone()
            for (name, _), g in zip(ctx.params.items(), ctx.train_grads(), strict=True)
        }
        ctx.memory["du_bound"] = {"loss0": ctx.loss(), "grad0": grads, "step": math.nan}
        return {**nan, "du_bound": ctx.loss()}
    state = ctx.memory.get("du_bound")
    if state is None:
        return nan
    if ctx.step == 1:
        grad0 = state["grad0"]
        moved = sum(
            float(torch.sum((ctx.init_params[k].double() - ctx.params[k].double()) * grad0[k]))
            for k in grad0
        )
        norm_sq = sum(float(torch.sum(g * g)) for g in grad0.values())
        state["step"] = moved / norm_sq if norm_sq > 0 else math.nan
    eta = state["step"]
    if math.isnan(eta):
        return nan
    rate = 1.0 - eta * lam0 / (2.0 * n)
    return {
        "du_bound": state["loss0"] * rate**ctx.step,
        "du_step": eta,
        "du_rate": rate,
    }
