r"""The measurements of ``gdscope diagnose``: a network at init and along one short run.

At initialization ``θ₀`` (before any step):

- the sharpness ``S₀ = λ_max(∇²L(θ₀))`` of the training loss on the Hessian probe set (Lanczos,
  relative tolerance 1e-4) and the largest stable step :func:`gdscope.trials.trial.stability_edge`
  (``2/S₀`` for GD and SGD, ``(2+2β)/S₀`` for heavy ball, ``(2+2β)/((1+2β)S₀)`` for PyTorch's
  Nesterov; Cohen et al. 2021);
- the NTK Gram ``K₀ = J Jᵀ`` on the NTK probe set of ``p`` examples and the spectrum of
  ``K₀/p``, the function-space Hessian of the ``mse`` loss (½·mean over examples), normalised as
  :func:`gdscope.trials.trial.kernel_tuning` normalises it.

Along the run (``gdscope.train`` on the trial the :class:`~gdscope.config.TrialConfig` builds):
the loss at every step, and every ``every`` steps the sharpness (on the Hessian probe set,
warm-started Lanczos), the PL ratio ``‖∇L‖²/(2L)`` and the distance from init (on the whole
training set). At the end: ``K_T`` on the NTK probe set, so the relative drift
``‖K_T − K₀‖_F/‖K₀‖_F``, the relative weight movement ``‖θ_T − θ₀‖/‖θ₀‖`` and the fitted linear
rate of the loss (:func:`gdscope.stats.fit_linear_rate`).

The probe sets are a seeded random subset of the training set (one permutation, so the NTK set
lies inside the Hessian set); with ``n`` at most the probe size they are the whole training set.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gdscope.config import TrialConfig
from gdscope.config.trial import SHARPNESS_EDGE_OPTIMIZERS
from gdscope.diagnose.inputs import check_targets, refuse_untrained, trainable_count
from gdscope.diagnose.partial import RunLog
from gdscope.functional import clone_params, params_of
from gdscope.optim.registry import DEFAULT_MOMENTUM, param_groups
from gdscope.probes import refuse_random_modules
from gdscope.probes.geometry import distance_from_init
from gdscope.probes.hessian import sharpness
from gdscope.probes.ntk import kernel_drift, ntk_gram
from gdscope.stats import fit_linear_rate
from gdscope.training import PROBES, ProbeContext, Stop, train
from gdscope.training.loop import ProbeFn
from gdscope.trials.trial import Trial, build_trial, stability_edge

__all__ = [
    "DEFAULT_HESSIAN_EXAMPLES",
    "DEFAULT_NTK_EXAMPLES",
    "EDGE_FRACTION",
    "Measurements",
    "measure",
]

DEFAULT_NTK_EXAMPLES = 64
"""Examples of the NTK probe set (the Gram is ``(p·k) × (p·k)`` for ``k`` outputs)."""
DEFAULT_HESSIAN_EXAMPLES = 256
"""Examples of the Hessian probe set (sharpness at init and along the run)."""
ZERO_EIGENVALUE = 10
"""An NTK eigenvalue within ``10·(p·k)·ε·λ_max`` of zero is zero: below that, rounding decides
its sign (a Gram made singular by a duplicated input gave ±1e-17 with the seed)."""

EDGE_FRACTION = 0.95
"""The run reaches the edge of stability at the first checkpoint with ``S ≥ 0.95·S*``."""
_SUBSET_SHARPNESS = "diagnose_subset_sharpness"


@dataclass(frozen=True)
class Measurements:
    """What ``gdscope diagnose`` measured; every number is a plain float (nan: not measured).

    Kernel quantities are of ``K/p`` on the NTK probe set of ``p`` examples; ``critical_sharpness``
    is the sharpness ``S*`` at which the learning rate is the stability edge (``2/η`` for GD;
    nan where the sharpness sets no edge: an adaptive optimizer, or lr multipliers).
    """

    config: TrialConfig
    parameters: int
    n_train: int
    outputs: int
    ntk_examples: int
    hessian_examples: int
    loss: str
    lr: float
    momentum: float | None
    lr_multipliers: tuple[float, ...]
    sharpness_init: float
    stability_edge: float
    critical_sharpness: float
    edge_note: str
    """Why the stability edge does not apply (empty when it does)."""
    edge_step: int | None
    """First checkpoint with ``S ≥ EDGE_FRACTION·S*`` (``None``: not reached in the run)."""
    sharpness_max: float
    ntk_lambda_min: float
    ntk_lambda_max: float
    ntk_kappa: float
    ntk_drift: float
    weight_movement: float
    pl_ratio_init: float
    pl_ratio_min: float
    loss_init: float
    loss_final: float
    loss_rate: float
    loss_rate_r2: float
    loss_rate_ok: bool
    status: str
    steps: int
    reason: str
    wall_time_s: float
    records: dict[str, tuple[list[int], list[float]]] = field(repr=False)
    schedule: dict[str, int] = field(repr=False)

    @property
    def above_edge(self) -> bool | None:
        """Whether the learning rate is above the stability edge at init (``None``: n/a)."""
        return None if self.edge_note else self.lr > self.stability_edge


_EVAL_FIX = (
    "diagnose trains and measures the model in the mode its factory returns: return "
    "model.eval() (no dropout, batch norm on its running statistics) or build it without them"
)


def measure(
    config: TrialConfig,
    *,
    ntk_examples: int = DEFAULT_NTK_EXAMPLES,
    hessian_examples: int = DEFAULT_HESSIAN_EXAMPLES,
    every: int | None = None,
) -> Measurements:
    """Build ``config``'s trial, measure it at init, train it and measure it again.

    Args:
        config: a network trial with a numeric learning rate.
        ntk_examples: size of the NTK probe set.
        hessian_examples: size of the Hessian probe set.
        every: steps between the sharpness, PL and distance checkpoints (default: about 20
            checkpoints over the run).

    Raises:
        ValueError: the trial cannot be built (a user factory that fails, in one line naming
            it), a network with no trainable parameter its output depends on, a learning rate
            that is not a number, or a bad probe size.
        Interrupted: a ``KeyboardInterrupt`` once the trial is built, with what was measured.

    """
    if isinstance(config.optimizer.lr, bool) or not isinstance(config.optimizer.lr, float | int):
        raise ValueError(
            f"optimizer.lr: diagnose needs the learning rate as a number, got "
            f"{config.optimizer.lr!r} (the tunings 'auto_kernel' and 'auto_sharpness' are for "
            "studies); give it, e.g. 0.1"
        )
    for name, size in (("ntk_examples", ntk_examples), ("hessian_examples", hessian_examples)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    every = every or max(1, config.steps // 20)
    trial = build_trial(config)
    model, loss_fn, (x, y) = trial.model, trial.loss_fn, trial.data
    refuse_random_modules(model, what="diagnose", noun="network", fix=_EVAL_FIX)
    check_targets(config.loss, y)
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    ntk_x = x[order[:ntk_examples].to(x.device)]
    hessian = _rows((x, y), order[:hessian_examples])
    refuse_untrained(model, loss_fn, hessian, config)
    lr = float(config.optimizer.lr)
    schedule = {"loss": 1, "sharpness": every, "pl_ratio": every, "dist_from_init": every}
    log = RunLog()
    try:
        return _measure(config, trial, ntk_x, hessian, schedule, log)
    except KeyboardInterrupt:
        raise log.interrupted(
            config,
            parameters=trainable_count(model),
            n_train=n,
            ntk_examples=ntk_x.shape[0],
            hessian_examples=hessian[0].shape[0],
            loss=_loss_name(config, y),
            schedule=schedule,
            lr=lr,
        ) from None


def _measure(
    config: TrialConfig,
    trial: Trial,
    ntk_x: Tensor,
    hessian: tuple[Tensor, Tensor],
    schedule: dict[str, int],
    log: RunLog,
) -> Measurements:
    """Measure at init, train (the probes logged in ``log`` as they come), measure at the end."""
    model, loss_fn, (x, y) = trial.model, trial.loss_fn, trial.data
    n = x.shape[0]
    lr = float(config.optimizer.lr)
    groups = param_groups(model, 1.0, optimizer=config.optimizer.name)  # the optimizer's rule
    multipliers = tuple(sorted({float(g["lr_multiplier"]) for g in groups}))
    momentum = _momentum(config)
    s0 = float(sharpness(model, loss_fn, hessian, tol=1e-4))
    log.record(0, {"init_sharpness": s0})
    preconditioned = _preconditioner_note(config.optimizer.name, multipliers)
    edge_note = preconditioned or _curvature_note(s0)
    if preconditioned:  # no edge set by the sharpness: none (null in the JSON), nor S*
        edge = critical = math.nan
    else:
        edge = stability_edge(config.optimizer.name, s0, momentum) if s0 > 0 else math.inf
        critical = stability_edge(config.optimizer.name, 1.0, momentum) / lr
    k0 = ntk_gram(model, ntk_x)
    p = ntk_x.shape[0]
    exact = k0  # the spectrum from a float64 copy: a float32 Gram's rounding is 1e-5 of λ_max
    if next(model.parameters()).dtype != torch.float64:
        exact = ntk_gram(copy.deepcopy(model).double(), ntk_x.double())
    eig = torch.linalg.eigvalsh(exact.double()) / p
    lam_min, lam_max = float(eig[0]), float(eig[-1])
    if lam_min <= ZERO_EIGENVALUE * k0.shape[0] * torch.finfo(torch.float64).eps * lam_max:
        lam_min = 0.0  # singular within rounding: its sign would be the seed's
    log.record(0, {"ntk_lambda_min": lam_min, "ntk_lambda_max": lam_max})
    theta0 = clone_params(params_of(model))
    extra = _subset_sharpness(hessian) if hessian[0].shape[0] < n else {}
    sharp_name = _SUBSET_SHARPNESS if extra else "sharpness"
    run_schedule = {sharp_name if k == "sharpness" else k: v for k, v in schedule.items()}
    log.phase = "training"
    trace = train(
        model,
        trial.optimizer,
        trial.data,
        config.steps,
        loss_fn=loss_fn,
        probes=run_schedule,
        batch_size=config.batch_size,
        stop=Stop(config.stop.loss_below, config.stop.accuracy_at_least),
        seed=config.seed,
        extra_probes=log.wrap(run_schedule, extra),
    )
    log.phase = "end"
    drift = moved_final = math.nan
    if all(bool(torch.isfinite(q).all()) for q in model.parameters()):
        drift = kernel_drift(ntk_gram(model, ntk_x), k0)
        moved_final = distance_from_init(params_of(model), theta0)["rel_dist_from_init"]
    steps_s, sharp = _series(trace.records, "sharpness")
    reached = [s for s, v in zip(steps_s, sharp, strict=True) if v >= EDGE_FRACTION * critical]
    loss_steps, loss_values = _series(trace.records, "loss")
    _, pl = _series(trace.records, "pl_ratio")
    rate = _loss_rate(loss_steps, loss_values, config.dtype)
    trace.record(0, {"lr": lr})
    for step in steps_s[1:]:
        trace.record(step, {"lr": lr})
    trace.record(0, {"init_sharpness": s0, "ntk_lambda_min": lam_min, "ntk_lambda_max": lam_max})
    trace.record(trace.steps, {"ntk_drift": drift})
    finite_pl = [v for v in pl if math.isfinite(v)]
    return Measurements(
        config=config,
        parameters=trainable_count(model),
        n_train=n,
        outputs=k0.shape[0] // p,
        ntk_examples=p,
        hessian_examples=hessian[0].shape[0],
        loss=_loss_name(config, y),
        lr=lr,
        momentum=momentum,
        lr_multipliers=multipliers,
        sharpness_init=s0,
        stability_edge=edge,
        critical_sharpness=critical,
        edge_note=edge_note,
        edge_step=reached[0] if reached else None,
        sharpness_max=largest_measured(sharp),
        ntk_lambda_min=lam_min,
        ntk_lambda_max=lam_max,
        ntk_kappa=lam_max / lam_min if lam_min > 0 else math.inf,
        ntk_drift=drift,
        weight_movement=moved_final,
        pl_ratio_init=pl[0] if pl else math.nan,
        pl_ratio_min=min(finite_pl, default=math.nan),
        loss_init=loss_values[0],
        loss_final=loss_values[-1],
        loss_rate=rate[0],
        loss_rate_r2=rate[1],
        loss_rate_ok=rate[2],
        status=trace.status,
        steps=trace.steps,
        reason=trace.reason,
        wall_time_s=trace.wall_time_s,
        records=trace.records,
        schedule=schedule,
    )


def _rows(data: tuple[Tensor, Tensor], index: Tensor) -> tuple[Tensor, Tensor]:
    x, y = data
    index = index.to(x.device)
    return x[index], y[index]


def _momentum(config: TrialConfig) -> float | None:
    """Return β of heavy ball and Nesterov as the run uses it (unset: their default, 0.9).

    ``None`` for the other optimizers. Recorded and printed, so that S* can be read back.
    """
    if config.optimizer.name not in ("heavy_ball", "nesterov"):
        return None
    beta = config.optimizer.momentum
    if beta is None:
        return DEFAULT_MOMENTUM
    return float(beta) if isinstance(beta, float | int) else None


def _preconditioner_note(optimizer: str, multipliers: tuple[float, ...]) -> str:
    """Why no edge set by the sharpness applies to the step (empty when one does)."""
    if optimizer not in SHARPNESS_EDGE_OPTIMIZERS:
        return (
            f"optimizer {optimizer!r} rescales each coordinate, so no edge set by the sharpness "
            "applies (the edge of an adaptive method is that of the preconditioned Hessian)"
        )
    if set(multipliers) - {1.0}:
        return (
            f"the parameterization sets lr multipliers {list(multipliers)}: the edge is set by "
            "the preconditioned Hessian, not by S₀"
        )
    return ""


def _curvature_note(s0: float) -> str:
    """Why no step is unstable at init on the local quadratic of sharpness ``s0`` (empty: one is)."""
    if not s0 > 0:
        return (
            f"S₀ = {s0:.4g}: the loss has no positive curvature at init, so no step size is "
            "unstable on its local quadratic"
        )
    return ""


def _subset_sharpness(batch: tuple[Tensor, Tensor]) -> dict[str, ProbeFn]:
    """Return the probe of this run measuring the sharpness on ``batch`` (a probe subset).

    The built-in ``sharpness`` probe reads the whole training set; this one runs it on a
    :class:`ProbeContext` of the subset. It is handed to this one ``train`` call
    (``extra_probes``), never registered: the global probe registry is not touched, so a user's
    probe of the same name, other threads and worker processes are unaffected.
    """

    def on_subset(ctx: ProbeContext) -> dict[str, float]:
        memory = ctx.memory.setdefault("diagnose_subset", {})
        sub = ProbeContext(
            ctx.model,
            ctx.params,
            ctx.init_params,
            ctx.loss_fn,
            batch,
            None,
            ctx.step,
            memory=memory,
        )
        return PROBES["sharpness"](sub)

    return {_SUBSET_SHARPNESS: on_subset}


def largest_measured(values: list[float]) -> float:
    """Return the largest value that is not nan (nan if none): ``max`` alone keeps a leading nan.

    >>> largest_measured([math.nan, 2.0, 5.0]), largest_measured([2.0, math.nan])
    (5.0, 2.0)
    """
    return max((v for v in values if not math.isnan(v)), default=math.nan)


def _series(
    records: dict[str, tuple[list[int], list[float]]], metric: str
) -> tuple[list[int], list[float]]:
    steps, values = records.get(metric, ([], []))
    return list(steps), [float(v) for v in values]


def _loss_rate(steps: list[int], values: list[float], dtype: str) -> tuple[float, float, bool]:
    """``(ρ, R², ok)`` of the loss, down to a floor of ``10³·ε²·L₀`` of the dtype's ``ε``."""
    if len(values) < 5 or not math.isfinite(values[0]) or values[0] <= 0:
        return math.nan, math.nan, False
    eps = torch.finfo(getattr(torch, dtype)).eps
    fit = fit_linear_rate(steps, values, floor=1e3 * eps**2 * values[0])
    return fit.rate, fit.r2, fit.ok


def _loss_name(config: TrialConfig, y: Tensor) -> str:
    if config.loss != "auto":
        return config.loss
    return "mse" if y.is_floating_point() else "cross_entropy"
