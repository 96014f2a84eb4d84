"""Probes that ``gdscope.train`` schedules by name, sharing work within and across checkpoints.

``PROBES[name](ctx)`` returns ``{metric: value}`` for one checkpoint, from the pure instruments
of :mod:`gdscope.probes`. The :class:`~gdscope.training.context.ProbeContext` caches what several
probes need at the same checkpoint, so ``{"ntk_spectrum": 10, "sandwich": 10}`` builds one Gram
per checkpoint; ``memory`` carries state across checkpoints (the Gram and activation pattern at
initialization, the previous top Hessian eigenvector that warm-starts the next Lanczos run).
Probes never log, plot or write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from gdscope import losses
from gdscope.functional import apply
from gdscope.probes import geometry, linearization
from gdscope.probes.coord_check import hidden_activations
from gdscope.probes.coord_check import rms as coordinate_rms
from gdscope.probes.fitting import fit_indicators
from gdscope.probes.gauss_newton import ggn_sharpness
from gdscope.probes.hessian import hessian_trace, sharpness
from gdscope.probes.infinite_dynamics import InfiniteWidthGD
from gdscope.probes.infinite_width import covered_activation
from gdscope.probes.kernel_regression import (
    KernelSolution,
    flat_targets,
    kernel_solution,
    regression_targets,
    sphere_holdout,
)
from gdscope.probes.kernel_regression import rms as gap_rms
from gdscope.probes.ntk import kernel_drift, kernel_target_alignment
from gdscope.probes.sparsity import zero_fraction
from gdscope.probes.trace import hessian_trace_hutchpp
from gdscope.training.context import ProbeContext
from gdscope.training.curvature import (
    DENSITY_FAMILY,
    hessian_density_probe,
    preconditioned_sharpness_probe,
)
from gdscope.training.du_gram import du_bound, h_infinity_gap
from gdscope.training.grad_progress import grad_norm_drop
from gdscope.training.output_hessian import output_hessian_norm_probe


def _loss(ctx: ProbeContext) -> dict[str, float]:
    return {"loss": ctx.loss()}


def _residual(ctx: ProbeContext) -> dict[str, float]:
    """``‖f(X) − Y‖`` on the training set (float64) and its ratio to the first checkpoint's.

    The targets as the mse loss reads them (:func:`~gdscope.probes.kernel_regression.
    regression_targets`). The rate of ``residual`` is that of ``‖u − y‖`` in the kernel-level
    studies (the loss falls at its square).
    """
    output = ctx.train_output()
    flat = output.reshape(output.shape[0], -1)
    diff = flat.double().cpu() - regression_targets(ctx.data[1], flat.shape[1])
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


def _ntk_spectrum(ctx: ProbeContext) -> dict[str, float]:
    spec = ctx.spectrum()
    gram = ctx.gram()
    initial = ctx.memory.setdefault("ntk_gram_init", gram)
    n = ctx.data[0].shape[0]
    targets = regression_targets(ctx.data[1], gram.shape[0] // n).reshape(-1, 1)
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


SHARPNESS_TOL = 1e-6
"""Relative Lanczos residual of the scheduled ``sharpness`` and ``ggn_sharpness``. The residual
rule certifies *an* eigenpair: from a warm start left near ``λ₂``'s eigenvector (two eigenvalues
crossed at the edge of stability), ``tol = 1e-3`` stopped at ``λ₂`` at 6 of 601 checkpoints of
the edge-of-stability study's run (up to 4.4 % low); at ``1e-6`` the Krylov space goes on until
``λ₁`` shows, and every checkpoint equals a cold start's value."""


def _sharpness(ctx: ProbeContext) -> dict[str, float]:
    value, vector = sharpness(
        ctx.model, ctx.loss_fn, ctx.data, tol=SHARPNESS_TOL,
        v0=ctx.warm_start("sharpness_vector"), return_vector=True,
    )  # fmt: skip
    ctx.memory["sharpness_vector"] = vector
    return {"sharpness": value}


def _ggn_sharpness(ctx: ProbeContext) -> dict[str, float]:
    """``λ_max`` of the Gauss–Newton matrix ``Jᵀ H_F J``, warm-started (``ctx.warm_start``)."""
    value, vector = ggn_sharpness(
        ctx.model, ctx.loss_fn, ctx.data, tol=SHARPNESS_TOL,
        v0=ctx.warm_start("ggn_vector"), return_vector=True,
    )  # fmt: skip
    ctx.memory["ggn_vector"] = vector
    return {"ggn_sharpness": value}


def _hessian_trace(ctx: ProbeContext) -> dict[str, float]:
    """Return Hutchinson's trace estimate from the same 20 probes (seed 0) at every checkpoint.

    Two checkpoints then differ by the Hessian, not by the draws, whatever the schedule.
    """
    generator = torch.Generator().manual_seed(0)
    estimate, std_error = hessian_trace(
        ctx.model, ctx.loss_fn, ctx.data, samples=20, generator=generator
    )
    return {"hessian_trace": estimate, "hessian_trace_se": std_error}


def _hessian_trace_hutchpp(ctx: ProbeContext) -> dict[str, float]:
    """Return Hutch++'s trace estimate and standard error, same 30 products (seed 0) each time.

    Lower error than ``hessian_trace`` where a few eigenvalues dominate, higher on a flat
    spectrum (:func:`~gdscope.probes.trace.hessian_trace_hutchpp`).
    """
    generator = torch.Generator().manual_seed(0)
    estimate, std_error = hessian_trace_hutchpp(
        ctx.model, ctx.loss_fn, ctx.data, probes=30, generator=generator, return_error=True
    )
    return {"hessian_trace_hutchpp": estimate, "hessian_trace_hutchpp_se": std_error}


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
        "linearization_gap": linearization.linearization_gap(
            ctx.model, ctx.init_params, ctx.params, ctx.data[0]
        )
    }
    if ctx.eval_data is not None:
        out["test_linearization_gap"] = linearization.linearization_gap(
            ctx.model, ctx.init_params, ctx.params, ctx.eval_data[0]
        )
    lr = ctx.gd_step
    covered = covered_activation(ctx.model) is not None and losses.is_mse(ctx.loss_fn)
    if lr is not None and covered and ctx.data[1].is_floating_point():
        x, y = ctx.data
        if _INFINITE_GD_KEY not in ctx.memory:  # Θ and its eigenvectors, once a run
            with torch.no_grad():
                f0 = apply(ctx.model, ctx.init_params, x)
            ctx.memory[_INFINITE_GD_KEY] = InfiniteWidthGD(ctx.model, x, y, f0)
        infinite = ctx.memory[_INFINITE_GD_KEY]
        reference = infinite.outputs(lr=lr, steps=ctx.step)
        net = ctx.train_output().double().cpu().reshape(reference.shape)
        out["linearization_infinite_gap"] = gap_rms(net - reference)
        if ctx.eval_data is not None:
            x_test = ctx.eval_data[0]
            with torch.no_grad():
                if _INFINITE_TEST_KEY not in ctx.memory:
                    ctx.memory[_INFINITE_TEST_KEY] = apply(ctx.model, ctx.init_params, x_test)
                net_test = ctx.model(x_test).double().cpu()
            f0_test = ctx.memory[_INFINITE_TEST_KEY]
            reference = infinite.predict(x_test, f0_test, lr=lr, steps=ctx.step)
            out["test_linearization_infinite_gap"] = gap_rms(
                net_test.reshape(reference.shape) - reference
            )
    return out


_INFINITE_GD_KEY = "linearization_infinite_gd"
_INFINITE_TEST_KEY = "linearization_infinite_f0_test"


_COORD_CHECK_KEY = "coord_check_init"
_KERNEL_KEY = "kernel_regression_init"


def activation_rms(ctx: ProbeContext) -> dict[str, float]:
    """Probe: per-layer RMS of the hidden representations and of their change since init.

    ``h<l>`` is ``h_l`` of :func:`gdscope.probes.coord_check.hidden_activations`: the activation
    output of a plain MLP; of a residual one, the stream ``h_1 = σ(L_1 x)``, then after each block.
    """
    x = ctx.data[0]
    if _COORD_CHECK_KEY not in ctx.memory:
        ctx.memory[_COORD_CHECK_KEY] = hidden_activations(ctx.model, x, ctx.init_params)
    hidden0, out0 = ctx.memory[_COORD_CHECK_KEY]
    hidden, out = hidden_activations(ctx.model, x)
    metrics: dict[str, float] = {}
    for index, (h, h0) in enumerate(zip(hidden, hidden0, strict=True), start=1):
        metrics[f"activation_rms/h{index}"] = coordinate_rms(h)
        metrics[f"activation_delta_rms/h{index}"] = coordinate_rms(h - h0)
    metrics["output_rms"] = coordinate_rms(out)
    metrics["output_delta_rms"] = coordinate_rms(out - out0)
    return metrics


def _held_out(ctx: ProbeContext) -> Tensor | None:
    if ctx.eval_data is not None:
        return ctx.eval_data[0]
    if "kernel_regression_holdout" not in ctx.memory:
        ctx.memory["kernel_regression_holdout"] = sphere_holdout(ctx.data[0])
    return ctx.memory["kernel_regression_holdout"]


def kernel_regression(ctx: ProbeContext) -> dict[str, float]:
    """Probe: the network against kernel regression with ``K_0`` started from ``f_0``."""
    x, y = ctx.data
    x_test = _held_out(ctx)
    if _KERNEL_KEY not in ctx.memory:
        ctx.memory[_KERNEL_KEY] = kernel_solution(ctx.model, ctx.init_params, x, y, x_test)
    sol: KernelSolution = ctx.memory[_KERNEL_KEY]
    moved = math.sqrt(
        sum(
            float(torch.sum((ctx.params[k].double() - ctx.init_params[k].double()) ** 2))
            for k in ctx.params
        )
    )
    out = {
        "min_norm_ratio": moved / sol.min_norm if sol.min_norm > 0 else math.nan,  # nan: no K_0⁻¹
        "kernel_min_norm": sol.min_norm,
        "kernel_rademacher": sol.rademacher,
        "kernel_regression_train_gap": gap_rms(
            ctx.train_output().reshape(-1).double().cpu() - flat_targets(y, ctx.train_output())
        ),
    }
    if x_test is not None and sol.test_prediction is not None:
        with torch.no_grad():
            net = ctx.model(x_test).reshape(-1).double().cpu()
        pred = sol.test_prediction
        out["kernel_regression_gap"] = gap_rms(net - pred)
        if sol.infinite_prediction is not None:
            out["kernel_infinite_gap"] = gap_rms(net - sol.infinite_prediction)
            out["kernel_to_infinite_gap"] = gap_rms(pred - sol.infinite_prediction)
        if ctx.eval_data is not None:
            target = flat_targets(ctx.eval_data[1], pred.reshape(x_test.shape[0], -1))
            out["kernel_test_loss"] = 0.5 * float(torch.sum((pred - target) ** 2)) / x_test.shape[0]
    return out


def train_error_probe(ctx: ProbeContext) -> dict[str, float]:
    """Probe: training error and the interpolation flag on the full training set."""
    return fit_indicators(ctx.train_output(), ctx.data[1])


def zero_fraction_probe(ctx: ProbeContext) -> dict[str, float]:
    """Probe: ``zero_fraction`` of the model's trainable parameters at this checkpoint."""
    trainable = [p for p in ctx.model.parameters() if p.requires_grad]
    return {"zero_fraction": zero_fraction(trainable)}


@dataclass(frozen=True)
class ScheduledProbe:
    """A probe ``train`` can schedule: ``fn(ctx) -> {metric: value}`` and the metrics it records.

    ``metrics`` names every key ``fn`` may return; a name ending in ``/`` stands for a family
    (``"dist_from_init/"`` covers ``"dist_from_init/layers.0.weight"``). A study refuses, when it
    loads, a claim reading a metric no scheduled probe of its trials records.
    """

    fn: Callable[[ProbeContext], dict[str, float]]
    metrics: tuple[str, ...]
    needs_optimizer: bool = False
    """Whether ``fn`` reads :attr:`ProbeContext.optimizer` (a monitor refuses it without one)."""
    square_loss_only: bool = False
    """Whether it holds for :func:`gdscope.losses.mse` alone (a run with another is refused)."""

    def __call__(self, ctx: ProbeContext) -> dict[str, float]:
        """Measure this probe at ``ctx``'s checkpoint."""
        return self.fn(ctx)


_NTK = ("ntk_lambda_min", "ntk_lambda_max", "ntk_kappa", "ntk_lambda_min_over_n", "ntk_drift")
_KERNEL_REGRESSION = ("min_norm_ratio", "kernel_min_norm", "kernel_rademacher")
_KERNEL_REGRESSION += ("kernel_regression_train_gap", "kernel_regression_gap", "kernel_test_loss")
_KERNEL_REGRESSION += ("kernel_infinite_gap", "kernel_to_infinite_gap")
_DISTANCE = ("dist_from_init", "rel_dist_from_init", "dist_from_init/", "rel_dist_from_init/")
_ACTIVATIONS = ("activation_rms/", "activation_delta_rms/", "output_rms", "output_delta_rms")
_PRECONDITIONED = ("preconditioned_sharpness", "adaptive_threshold")
_PRECONDITIONED += ("preconditioned_sharpness_ratio",)
_SANDWICH = ("sandwich_lower", "sandwich_upper")

PROBES: dict[str, ScheduledProbe] = {
    "loss": ScheduledProbe(_loss, ("loss",)),
    "residual": ScheduledProbe(_residual, ("residual", "relative_residual")),
    "accuracy": ScheduledProbe(_accuracy, ("accuracy",)),
    "grad_norm": ScheduledProbe(_grad_norm, ("grad_norm",)),
    "dist_from_init": ScheduledProbe(_dist_from_init, _DISTANCE),
    "spectral_dist_from_init": ScheduledProbe(
        _spectral_dist_from_init, ("spec_dist_from_init/", "rel_spec_dist_from_init/")
    ),
    "neuron_displacement": ScheduledProbe(_neuron_displacement, ("max_neuron_displacement/",)),
    "test": ScheduledProbe(_test, ("test_loss", "test_accuracy")),
    "ntk_spectrum": ScheduledProbe(_ntk_spectrum, (*_NTK, "ntk_alignment")),
    "sandwich": ScheduledProbe(_sandwich, _SANDWICH, square_loss_only=True),
    "pl_ratio": ScheduledProbe(_pl_ratio, ("pl_ratio",)),
    "sharpness": ScheduledProbe(_sharpness, ("sharpness",)),
    "ggn_sharpness": ScheduledProbe(_ggn_sharpness, ("ggn_sharpness",)),
    "preconditioned_sharpness": ScheduledProbe(
        preconditioned_sharpness_probe, _PRECONDITIONED, needs_optimizer=True
    ),
    "hessian_density": ScheduledProbe(hessian_density_probe, (DENSITY_FAMILY,)),
    "hessian_trace": ScheduledProbe(_hessian_trace, ("hessian_trace", "hessian_trace_se")),
    "hessian_trace_hutchpp": ScheduledProbe(
        _hessian_trace_hutchpp, ("hessian_trace_hutchpp", "hessian_trace_hutchpp_se")
    ),
    "activation_flips": ScheduledProbe(_activation_flips, ("activation_flips",)),
    "linearization_gap": ScheduledProbe(
        _linearization_gap,
        (
            "linearization_gap",
            "test_linearization_gap",
            "linearization_infinite_gap",
            "test_linearization_infinite_gap",
        ),
    ),
    "kernel_regression": ScheduledProbe(kernel_regression, _KERNEL_REGRESSION),
    "activation_rms": ScheduledProbe(activation_rms, _ACTIVATIONS),
    "zero_fraction": ScheduledProbe(zero_fraction_probe, ("zero_fraction",)),
    "train_error": ScheduledProbe(train_error_probe, ("train_error", "interpolated")),
    "h_infinity_gap": ScheduledProbe(h_infinity_gap, ("h_infinity_gap", "h_infinity_lambda_min")),
    "du_bound": ScheduledProbe(du_bound, ("du_bound", "du_step", "du_rate")),
    "grad_norm_drop": ScheduledProbe(
        grad_norm_drop, ("grad_norm_sq_running_min", "grad_norm_sq_drop")
    ),
    "output_hessian_norm": ScheduledProbe(output_hessian_norm_probe, ("output_hessian_norm",)),
}
"""Probes ``train`` can schedule by name: ``{name: ScheduledProbe(fn, metrics)}``."""


def scheduled_metrics(schedule: Iterable[str]) -> set[str]:
    """Every metric (or ``/`` family) the probes named in ``schedule`` record."""
    return {metric for name in schedule for metric in PROBES[name].metrics}
