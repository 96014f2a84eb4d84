"""Probes that ``gdscope.train`` schedules by name, sharing work within and across checkpoints.

``PROBES[name](ctx)`` returns ``{metric: value}`` for one checkpoint. A ``ProbeContext`` caches
what several probes need at the same checkpoint (the model output, the full-batch gradient, the
NTK Gram and its spectrum), so ``{"ntk_spectrum": 10, "sandwich": 10}`` builds one Gram per
checkpoint; ``memory`` carries state across checkpoints (the Gram and activation pattern at
initialization, the previous top Hessian eigenvector that warm-starts the next Lanczos run).
Probes never log, plot or write.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdscope import losses
from gdscope.functional import Params
from gdscope.probes import geometry
from gdscope.probes.coord_check import activation_rms
from gdscope.probes.du_gram import du_bound, h_infinity_gap
from gdscope.probes.fitting import train_error_probe
from gdscope.probes.grad_progress import grad_norm_drop
from gdscope.probes.hessian import hessian_trace, sharpness
from gdscope.probes.kernel_regression import kernel_regression
from gdscope.probes.ntk import (
    NTKSpectrum,
    kernel_drift,
    kernel_target_alignment,
    ntk_gram,
    ntk_spectrum,
)
from gdscope.probes.output_hessian import output_hessian_norm_probe
from gdscope.probes.sparsity import zero_fraction_probe

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ProbeContext:
    """What a scheduled probe may read at one checkpoint.

    Attributes:
        model: the network, holding the parameters θ_t of this checkpoint.
        params: detached views of the trainable parameters θ_t.
        init_params: a copy of θ_0.
        loss_fn: the training loss ``loss_fn(output, target)``.
        data: the full training set ``(x, y)``.
        eval_data: held-out ``(x, y)`` or ``None``.
        step: the checkpoint's step t.
        cache: work shared by the probes of this checkpoint.
        memory: state kept across the checkpoints of one run.

    """

    model: nn.Module
    params: Params
    init_params: Params
    loss_fn: LossFn
    data: tuple[Tensor, Tensor]
    eval_data: tuple[Tensor, Tensor] | None
    step: int
    cache: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def train_output(self) -> Tensor:
        """Return the model output on the whole training set (computed once per checkpoint)."""

        def compute() -> Tensor:
            with torch.no_grad():
                return self.model(self.data[0])

        return self._cached("train_output", compute)

    def loss(self) -> float:
        """Return the full-batch training loss."""
        return self._cached("loss", lambda: float(self.loss_fn(self.train_output(), self.data[1])))

    def train_grads(self) -> list[Tensor]:
        """Return the full-batch gradients, one per trainable parameter (computed once)."""

        def compute() -> list[Tensor]:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            with torch.enable_grad():
                loss = self.loss_fn(self.model(self.data[0]), self.data[1])
                return list(torch.autograd.grad(loss, trainable))

        return self._cached("train_grads", compute)

    def grad_norm_sq(self) -> float:
        """Return ``‖∇L‖²`` of the full-batch loss, accumulated in float64."""
        return self._cached(
            "grad_norm_sq",
            lambda: sum(float(torch.sum(g.double() ** 2)) for g in self.train_grads()),
        )

    def gram(self) -> Tensor:
        """Return the NTK Gram ``J Jᵀ`` (``nk × nk``, float64) on the training inputs."""
        return self._cached("ntk_gram", lambda: ntk_gram(self.model, self.data[0]))

    def spectrum(self) -> NTKSpectrum:
        """Return the spectrum of :meth:`gram` (float64)."""
        return self._cached("ntk_spectrum", lambda: ntk_spectrum(self.gram()))


def _loss(ctx: ProbeContext) -> dict[str, float]:
    return {"loss": ctx.loss()}


def _residual(ctx: ProbeContext) -> dict[str, float]:
    """``‖f(X) − Y‖`` on the training set (float64) and its ratio to the first checkpoint's.

    Integer labels are one-hot encoded, as the mse loss reads them. The rate of ``residual`` is
    that of ``‖u − y‖`` in the kernel-level studies (the loss falls at its square).
    """
    output = ctx.train_output()
    target = ctx.data[1]
    if target.dtype == torch.long:
        target = F.one_hot(target, output.shape[-1])
    diff = output.double() - target.reshape(output.shape).double()
    residual = float(torch.linalg.vector_norm(diff))
    initial = ctx.memory.setdefault("residual_init", residual)
    relative = residual / initial if initial > 0 else 0.0
    return {"residual": residual, "relative_residual": relative}


def _accuracy(ctx: ProbeContext) -> dict[str, float]:
    return {"accuracy": float(losses.accuracy(ctx.train_output(), ctx.data[1]))}


def _grad_norm(ctx: ProbeContext) -> dict[str, float]:
    return {"grad_norm": math.sqrt(ctx.grad_norm_sq())}


def _dist_from_init(ctx: ProbeContext) -> dict[str, float]:
    return geometry.distance_from_init(ctx.params, ctx.init_params)


def _spectral_dist_from_init(ctx: ProbeContext) -> dict[str, float]:
    out = geometry.distance_from_init(ctx.params, ctx.init_params, spectral=True)
    return {k: v for k, v in out.items() if "spec_dist" in k}


def _neuron_displacement(ctx: ProbeContext) -> dict[str, float]:
    return {
        f"max_neuron_displacement/{name}": geometry.per_neuron_displacement(
            ctx.params, ctx.init_params, name
        )
        for name, p in ctx.params.items()
        if p.ndim >= 2
    }


def _test(ctx: ProbeContext) -> dict[str, float]:
    if ctx.eval_data is None:
        raise ValueError("probe 'test' needs eval_data=(x_test, y_test) in train()")
    with torch.no_grad():
        out = ctx.model(ctx.eval_data[0])
    return {
        "test_loss": float(ctx.loss_fn(out, ctx.eval_data[1])),
        "test_accuracy": float(losses.accuracy(out, ctx.eval_data[1])),
    }


def _targets_matrix(y: Tensor, k: int) -> Tensor:
    if y.dtype == torch.long:
        return F.one_hot(y, k).to(torch.float64)
    return y.reshape(y.shape[0], -1).to(torch.float64)


def _ntk_spectrum(ctx: ProbeContext) -> dict[str, float]:
    spec = ctx.spectrum()
    gram = ctx.gram()
    initial = ctx.memory.setdefault("ntk_gram_init", gram)
    n = ctx.data[0].shape[0]
    targets = _targets_matrix(ctx.data[1], gram.shape[0] // n).reshape(-1, 1)
    return {
        "ntk_lambda_min": spec.lambda_min,
        "ntk_lambda_max": spec.lambda_max,
        "ntk_kappa": spec.kappa,
        "ntk_lambda_min_over_n": spec.lambda_min / n,
        "ntk_drift": kernel_drift(gram, initial),
        "ntk_alignment": kernel_target_alignment(gram, targets.to(gram.device)),
    }


def _sandwich(ctx: ProbeContext) -> dict[str, float]:
    spec = ctx.spectrum()
    bounds = geometry.square_loss_sandwich(
        ctx.loss(), ctx.grad_norm_sq(), ctx.data[0].shape[0], spec.lambda_min, spec.lambda_max
    )
    return {"sandwich_lower": bounds.lower, "sandwich_upper": bounds.upper}


def _pl_ratio(ctx: ProbeContext) -> dict[str, float]:
    return {"pl_ratio": geometry.pl_ratio(ctx.loss(), ctx.grad_norm_sq())}


def _sharpness(ctx: ProbeContext) -> dict[str, float]:
    value, vector = sharpness(
        ctx.model, ctx.loss_fn, ctx.data, v0=ctx.memory.get("sharpness_vector"), return_vector=True
    )
    ctx.memory["sharpness_vector"] = vector
    return {"sharpness": value}


def _hessian_trace(ctx: ProbeContext) -> dict[str, float]:
    generator = ctx.memory.setdefault("hutchinson_generator", torch.Generator().manual_seed(0))
    estimate, std_error = hessian_trace(
        ctx.model, ctx.loss_fn, ctx.data, samples=20, generator=generator
    )
    return {"hessian_trace": estimate, "hessian_trace_se": std_error}


def _activation_flips(ctx: ProbeContext) -> dict[str, float]:
    x = ctx.data[0]
    if "activation_pattern_init" not in ctx.memory:
        ctx.memory["activation_pattern_init"] = geometry.activation_pattern(
            ctx.model, x, params=ctx.init_params
        )
    initial = ctx.memory["activation_pattern_init"]
    return {"activation_flips": geometry.activation_flips(ctx.model, x, initial)}


def _linearization_gap(ctx: ProbeContext) -> dict[str, float]:
    out = {
        "linearization_gap": geometry.linearization_gap(
            ctx.model, ctx.init_params, ctx.params, ctx.data[0]
        )
    }
    if ctx.eval_data is not None:
        out["test_linearization_gap"] = geometry.linearization_gap(
            ctx.model, ctx.init_params, ctx.params, ctx.eval_data[0]
        )
    return out


PROBES: dict[str, Callable[[ProbeContext], dict[str, float]]] = {
    "loss": _loss,
    "residual": _residual,
    "accuracy": _accuracy,
    "grad_norm": _grad_norm,
    "dist_from_init": _dist_from_init,
    "spectral_dist_from_init": _spectral_dist_from_init,
    "neuron_displacement": _neuron_displacement,
    "test": _test,
    "ntk_spectrum": _ntk_spectrum,
    "sandwich": _sandwich,
    "pl_ratio": _pl_ratio,
    "sharpness": _sharpness,
    "hessian_trace": _hessian_trace,
    "activation_flips": _activation_flips,
    "linearization_gap": _linearization_gap,
    "kernel_regression": kernel_regression,
    "activation_rms": activation_rms,
    "zero_fraction": zero_fraction_probe,
    "train_error": train_error_probe,
    "h_infinity_gap": h_infinity_gap,
    "du_bound": du_bound,
    "grad_norm_drop": grad_norm_drop,
    "output_hessian_norm": output_hessian_norm_probe,
}
"""Probes ``train`` can schedule by name: ``{name: fn(ProbeContext) -> {metric: value}}``."""
