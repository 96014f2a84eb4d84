"""From a ``TrialConfig`` to live objects (model, data, optimizer, loss) and a ``Trace``.

Input and output sizes come from the data: ``d_in`` from ``x``, the number of outputs from the
targets (class count for integer labels, columns for float targets). With ``loss="auto"``, integer
labels get cross-entropy and float targets get ``mse``; ``mse`` on integer labels trains on one-hot
targets. The trial ``seed`` seeds the model, the batch order and (unless ``data.seed`` is set) the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import Tensor, nn

from gdscope import _checks as check
from gdscope import losses, models
from gdscope.config import TrialConfig
from gdscope.config.base import STORED
from gdscope.optim import make_optimizer
from gdscope.probes.hessian import sharpness
from gdscope.probes.ntk import ntk_gram
from gdscope.training import Stop, Trace, train
from gdscope.trials.networks import build_network, load_data, output_count


@dataclass
class Trial:
    """The live objects of one configured trial."""

    config: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: tuple[Tensor, Tensor]
    eval_data: tuple[Tensor, Tensor] | None
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    tuning: dict[str, float]
    """Hyper-parameters tuned at init (``"auto_kernel"``, ``"auto_sharpness"``), recorded at step 0."""

    def run(self) -> Trace:
        """Train as configured and return the ``Trace``."""
        cfg = self.config
        trace = train(
            self.model,
            self.optimizer,
            self.data,
            cfg.steps,
            loss_fn=self.loss_fn,
            probes=cfg.probes,
            batch_size=cfg.batch_size,
            stop=Stop(cfg.stop.loss_below, cfg.stop.accuracy_at_least),
            eval_data=self.eval_data,
            seed=cfg.seed,
        )
        trace.record(0, self.tuning)
        return trace


def build_trial(config: TrialConfig) -> Trial:
    """Build model, data, optimizer and loss for ``config`` (deterministic in ``config``)."""
    dtype = getattr(torch, config.dtype)
    device = torch.device(config.device)
    train_set, eval_set = load_data(config, dtype, device)
    x, y = train_set
    loss_name = config.loss
    if loss_name == "auto":
        loss_name = "cross_entropy" if y.dtype == torch.long else "mse"
    out_dim = output_count(y, eval_set)
    if loss_name in ("mse", "mae", "pseudo_huber") and y.dtype == torch.long:
        train_set = (x, F.one_hot(y, out_dim).to(dtype))
        if eval_set is not None:
            eval_set = (eval_set[0], F.one_hot(eval_set[1], out_dim).to(dtype))
    model = build_network(config, x, out_dim, dtype, device)
    if not any(p.requires_grad for p in model.parameters()):  # torch.optim: "empty parameter list"
        raise ValueError(
            f"{model_label(config)}: the network has no trainable parameters (none with "
            "requires_grad=True), so there is nothing to train or measure; return a model with "
            "trainable parameters"
        )
    opt_cfg = config.optimizer
    tuning = {}
    if "auto_kernel" in (opt_cfg.lr, opt_cfg.momentum):
        tuning = kernel_tuning(model, train_set[0], opt_cfg.name, loss_name)
    momentum = tuning["tuned_momentum"] if opt_cfg.momentum == "auto_kernel" else opt_cfg.momentum
    lr = tuning["tuned_lr"] if opt_cfg.lr == "auto_kernel" else opt_cfg.lr
    if opt_cfg.lr == "auto_sharpness":
        loss_fn = losses.get_loss(loss_name)
        tuning.update(
            sharpness_tuning(model, loss_fn, train_set, opt_cfg.name, opt_cfg.lr_fraction, momentum)
        )
        lr = tuning["tuned_lr"]
    l1 = opt_cfg.l1
    if opt_cfg.l1_scale == "readout_lambda_max":
        tuning.update(readout_l1_tuning(model, losses.get_loss(loss_name), train_set, l1))
        l1 = tuning["tuned_l1"]
    optimizer = make_optimizer(
        opt_cfg.name,
        model,
        float(lr),
        momentum=momentum,
        weight_decay=opt_cfg.weight_decay,
        l1=l1,
        schedule=opt_cfg.schedule,
    )
    return Trial(config, model, optimizer, train_set, eval_set, losses.get_loss(loss_name), tuning)


def model_label(config: TrialConfig) -> str:
    """``model.factory 'module:function'`` or ``model.kind 'name'``: the field naming the model."""
    factory = config.model.factory
    return f"model.factory {factory.ref!r}" if factory else f"model.kind {config.model.kind!r}"


def kernel_tuning(model: nn.Module, x: Tensor, optimizer: str, loss: str) -> dict[str, float]:
    r"""Tune step and momentum from the NTK at initialization, as docs/claims.md's seed-003 tunings.

    For ``mse`` (½·mean) the loss Hessian in function space is ``K/n`` with ``K = J Jᵀ``, so with
    ``λ_max``, ``λ_min`` of ``K/n`` and ``κ = λ_max/λ_min``: GD and NAG take ``η = 1/λ_max`` and
    ``β = (√κ − 1)/(√κ + 1)``; heavy ball takes ``η = 4/(√λ_max + √λ_min)²`` and ``β`` squared
    (Polyak 1964; Liu & Pan 2021).

    Returns:
        ``{"tuned_lr", "tuned_momentum", "kernel_kappa", "kernel_lambda_min", "kernel_lambda_max"}``.

    Raises:
        ValueError: for a loss other than ``mse`` or a singular kernel.

    """
    if loss != "mse":
        raise ValueError(f"optimizer.lr: 'auto_kernel' needs loss 'mse', got loss {loss!r}")
    n = x.shape[0]
    eig = torch.linalg.eigvalsh(ntk_gram(model, x).double()) / n
    lam_min, lam_max = float(eig[0]), float(eig[-1])
    if not lam_min > 0:
        raise ValueError(
            f"optimizer.lr: 'auto_kernel' needs a positive-definite NTK at init, got λ_min = {lam_min:.3e}"
        )
    kappa = lam_max / lam_min
    beta = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    lr = 1 / lam_max
    if optimizer == "heavy_ball":
        lr, beta = 4 / (math.sqrt(lam_max) + math.sqrt(lam_min)) ** 2, beta**2
    return {
        "tuned_lr": lr,
        "tuned_momentum": beta,
        "kernel_kappa": kappa,
        "kernel_lambda_min": lam_min,
        "kernel_lambda_max": lam_max,
    }


def stability_edge(optimizer: str, sharpness: float, momentum: float | None) -> float:
    r"""Largest stable step on a quadratic of curvature ``S`` (the sharpness).

    GD and SGD: ``2/S``; heavy ball: ``(2 + 2β)/S``; PyTorch's Nesterov:
    ``(2 + 2β)/((1 + 2β) S)`` (Cohen et al. 2021, appendix on momentum; the thresholds the
    catalogue's momentum-thresholds study checks). ``momentum=None`` is the optimizer's
    default β = 0.9.

    >>> stability_edge("gd", 4.0, None), stability_edge("heavy_ball", 4.0, 0.5)
    (0.5, 0.75)
    """
    beta = 0.9 if momentum is None else momentum
    if optimizer == "heavy_ball":
        return (2 + 2 * beta) / sharpness
    if optimizer == "nesterov":
        return (2 + 2 * beta) / ((1 + 2 * beta) * sharpness)
    return 2 / sharpness


def sharpness_tuning(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    data: tuple[Tensor, Tensor],
    optimizer: str,
    fraction: float,
    momentum: float | None,
) -> dict[str, float]:
    r"""``lr = fraction × stability edge`` from the sharpness ``S₀`` of the full training loss at init.

    ``S₀ = λ_max(∇²L(θ₀))`` of the same loss and normalization the step uses (Lanczos, relative
    tolerance 1e-4), and the edge is :func:`stability_edge`. With ``fraction < 1`` the run starts
    below the edge of stability (Cohen et al. 2021), so no catapult (Lewkowycz et al. 2020) comes
    from the step size alone. Parameter groups with lr multipliers (μP) are refused: their edge
    is set by the preconditioned Hessian, not by ``S₀``.

    Returns:
        ``{"tuned_lr", "init_sharpness", "lr_times_sharpness"}`` (the last is ``η·S₀``).

    Raises:
        ValueError: lr multipliers other than 1, or a sharpness that is not positive.

    """
    multipliers = set(models.lr_multipliers(model).values())
    if multipliers - {1.0}:
        raise ValueError(
            "optimizer.lr: 'auto_sharpness' needs one learning rate for every parameter, but the "
            f"parameterization sets lr multipliers {sorted(multipliers)}; give lr a number"
        )
    s0 = float(sharpness(model, loss_fn, data, tol=1e-4))
    if not (math.isfinite(s0) and s0 > 0):
        raise ValueError(
            f"optimizer.lr: 'auto_sharpness' needs a positive sharpness at init, got {s0:.3e}; "
            "give lr a number"
        )
    lr = fraction * stability_edge(optimizer, s0, momentum)
    return {"tuned_lr": lr, "init_sharpness": s0, "lr_times_sharpness": lr * s0}


def readout_l1_tuning(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    data: tuple[Tensor, Tensor],
    fraction: float,
) -> dict[str, float]:
    r"""``λ = fraction × λ_max`` of the readout of an ``mlp`` at init (``l1_scale = "readout_lambda_max"``).

    ``λ_max = max |∂L/∂θ_r|`` over the readout's parameters ``θ_r``, evaluated at ``θ_r = 0`` with
    every other layer at its init: the smallest ``λ`` at which ``θ_r = 0`` is a fixed point of
    proximal GD on the readout alone (for ``mse`` the lasso's ``‖Φᵀy‖_∞/n`` on the features ``Φ``
    at init). The readout is restored afterwards.

    Returns:
        ``{"tuned_l1", "l1_lambda_max"}``.

    Raises:
        ValueError: a model without ``layers`` (not an ``mlp``) or ``λ_max = 0``.

    """
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError("optimizer.l1_scale: 'readout_lambda_max' needs an mlp (a readout layer)")
    readout = list(layers[-1].parameters())
    saved = [p.detach().clone() for p in readout]
    try:
        with torch.no_grad():
            for p in readout:
                p.zero_()
        x, y = data
        grads = torch.autograd.grad(loss_fn(model(x), y), readout)
    finally:
        with torch.no_grad():
            for p, value in zip(readout, saved, strict=True):
                p.copy_(value)
    lam_max = max(float(g.detach().abs().max()) for g in grads)
    if not (math.isfinite(lam_max) and lam_max > 0):
        raise ValueError(
            f"optimizer.l1_scale: 'readout_lambda_max' needs λ_max > 0 at init, got {lam_max:.3e}"
        )
    return {"tuned_l1": fraction * lam_max, "l1_lambda_max": lam_max}


def run_trial(config: TrialConfig) -> Trace:
    """Build and run one network trial."""
    return build_trial(config).run()


def trial_kinds() -> dict[str, tuple[type[BaseModel], Callable[[Any], Trace]]]:
    """Return ``{kind: (config class, run function)}`` for every trial kind."""
    from gdscope.trials import TRIAL_KINDS

    return {"network": (TrialConfig, run_trial), **TRIAL_KINDS}


class _TrialValidator:
    """``validate_trial(raw)``: validate one trial config dict of any kind.

    ``kind`` defaults to ``"network"``; ``validate_trial.config_class(raw)`` names the pydantic
    class it uses, so that an unknown key's message can list the accepted ones.
    ``validate_stored_trial`` validates a config read back from a store (``stored = True``:
    the :data:`~gdscope.config.base.STORED` context, so that it keeps its stored hash).

    Raises:
        pydantic.ValidationError: a field is wrong (the error names its path).
        ValueError: the kind is unknown.

    """

    def __init__(self, *, stored: bool = False) -> None:
        self.context = {STORED: True} if stored else None

    def __call__(self, raw: Mapping[str, Any]) -> Any:
        return self.config_class(raw).model_validate(dict(raw), context=self.context)

    def config_class(self, raw: Mapping[str, Any]) -> type[BaseModel]:
        """Return the config class of ``raw``'s trial kind."""
        kinds = trial_kinds()
        return kinds[check.known("trial kind", raw.get("kind", "network"), kinds)][0]


validate_trial = _TrialValidator()
validate_stored_trial = _TrialValidator(stored=True)


def run_config(raw: Mapping[str, Any] | BaseModel) -> Trace:
    """Run one trial config of any kind (a picklable entry point for runners).

    ``raw`` is a config dict, validated here, or a config :func:`validate_trial` returned (as
    a study's trials are: validated once, when the study expands), run as it is.
    """
    config: Any = raw if isinstance(raw, BaseModel) else validate_trial(raw)
    return trial_kinds()[config.kind][1](config)
