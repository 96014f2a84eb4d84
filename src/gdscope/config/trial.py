"""``TrialConfig``: one network trial, validated with field paths, with a stable content hash.

A ``TrialConfig`` fixes everything a run depends on: model, data, optimizer, loss, probe schedule,
stop criteria, steps, seed, dtype and device. Same config → same numbers (``gdscope.trials.trial.run_trial``).
Validation errors name the dotted field, the value seen and what is accepted
(:func:`gdscope._validation.format_errors`); an unknown key gets a "did you mean".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import (
    Field,
    NonNegativeFloat,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gdscope import _checks as check
from gdscope.config.base import read_back
from gdscope.config.parts import Count, DataConfig, FrozenPart, ModelConfig, PositiveCount
from gdscope.models.parameterization import get_parameterization
from gdscope.optim.registry import OPTIMIZERS, check_optimizer
from gdscope.training.scheduled import scheduled_metrics
from gdscope.training.train_arguments import unmeasured_stop

_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


SHARPNESS_EDGE_OPTIMIZERS = ("gd", "sgd", "heavy_ball", "nesterov", "prox_gd", "subgradient")
"""Optimizers whose largest stable step on a quadratic the sharpness sets (``auto_sharpness``).
``prox_gd`` and ``subgradient`` take a GD step on the smooth loss (the L1 term's prox or bounded
``λ sign θ`` kick does not move the edge ``2/S``); ``subgradient``'s ``polyak`` schedule is refused."""
ADAPTIVE = ("adam", "rmsprop")
"""Optimizers with a diagonal preconditioner ``P`` (the ``preconditioned_sharpness`` probe reads it)."""


class OptimizerConfig(FrozenPart):
    """Which optimizer (``gdscope.optim`` registry name) and its hyper-parameters."""

    name: str = "gd"
    lr: float | Literal["auto_kernel", "auto_sharpness"] = 0.1
    """A positive step size; ``"auto_kernel"``: tuned from the NTK at init; ``"auto_sharpness"``:
    ``lr_fraction`` times the stability edge set by the sharpness at init (see trial.py)."""
    lr_fraction: float = Field(default=0.5, gt=0)
    """``c`` of ``lr = "auto_sharpness"``: ``η = c · 2/S₀`` for GD (the edge of heavy ball and
    Nesterov for those); ``c < 1`` trains below the edge of stability at init."""
    momentum: float | Literal["auto_kernel"] | None = None
    """``β ∈ [0, 1)``, ``None`` for the optimizer's default, or ``"auto_kernel"`` (from κ)."""
    l1: NonNegativeFloat = 0.0
    l1_scale: Literal["absolute", "readout_lambda_max"] = "absolute"
    """``"readout_lambda_max"`` (``mlp``): ``l1`` is a fraction of ``λ_max`` of the readout at init,
    ``max |∂L/∂θ_r|`` over the readout's parameters ``θ_r`` set to 0, the other layers at their
    init: the smallest ``λ`` at which ``θ_r = 0`` is a fixed point of proximal GD on the readout
    (the lasso's ``‖Φᵀy‖_∞/n`` on the features at init); see ``trial.readout_l1_tuning``."""
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["constant", "sqrt", "polyak"] = "constant"

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        return check.known("optimizer", name, OPTIMIZERS)

    @field_validator("lr")
    @classmethod
    def _finite_lr(cls, lr: float | str) -> float | str:
        if isinstance(lr, float | int) and not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"lr must be a finite number greater than 0, 'auto_kernel' or 'auto_sharpness', "
                f"got {lr}"
            )
        return lr

    HASH_OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("lr_fraction", "l1_scale")

    @field_validator("momentum")
    @classmethod
    def _momentum_range(cls, momentum: float | str | None) -> float | str | None:
        if isinstance(momentum, float | int) and not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) or 'auto_kernel', got {momentum}")
        return momentum

    @model_validator(mode="after")
    def _options_fit_the_optimizer(self) -> OptimizerConfig:
        momentum = self.momentum if isinstance(self.momentum, float | int) else None
        check_optimizer(self.name, momentum=momentum, l1=self.l1, schedule=self.schedule)
        if self.lr == "auto_sharpness" and self.name not in SHARPNESS_EDGE_OPTIMIZERS:
            raise ValueError(
                f"lr = 'auto_sharpness' needs an optimizer whose stability edge the sharpness "
                f"sets ({', '.join(SHARPNESS_EDGE_OPTIMIZERS)}), got {self.name!r}; give lr a number"
            )
        if self.lr == "auto_sharpness" and self.schedule == "polyak":
            raise ValueError(
                "lr = 'auto_sharpness' sets a step size, but schedule 'polyak' reads lr as a "
                "relaxation factor; give lr a number"
            )
        if self.lr_fraction != 0.5 and self.lr != "auto_sharpness":
            raise ValueError(
                f"lr_fraction = {self.lr_fraction} applies only with lr = 'auto_sharpness', "
                f"got lr = {self.lr!r}; remove lr_fraction"
            )
        return self


class StopConfig(FrozenPart):
    """Early stop: training loss ≤ ``loss_below`` or training accuracy ≥ ``accuracy_at_least``."""

    loss_below: float | None = Field(default=None, ge=0)
    accuracy_at_least: float | None = Field(default=None, gt=0, le=1)


TUNED_METRICS: dict[str, tuple[str, ...]] = {
    "auto_kernel": (
        "tuned_lr",
        "tuned_momentum",
        "kernel_kappa",
        "kernel_lambda_min",
        "kernel_lambda_max",
    ),
    "auto_sharpness": ("tuned_lr", "init_sharpness", "lr_times_sharpness"),
    "readout_lambda_max": ("tuned_l1", "l1_lambda_max"),
}
"""What a trial records at step 0 for each option tuned at init (``gdscope.trials.trial``'s tunings)."""


class TrialConfig(FrozenPart):
    """One trial: everything a run depends on. ``seed`` seeds the model, the data and batch order."""

    kind: Literal["network"] = "network"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: Literal["auto", "mse", "cross_entropy", "hinge", "mae", "pseudo_huber"] = "auto"
    steps: Count = 100
    batch_size: PositiveCount | None = None
    probes: dict[str, PositiveCount] = Field(default_factory=lambda: {"loss": 1})
    stop: StopConfig = Field(default_factory=StopConfig)
    seed: Count = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not _DEVICE.fullmatch(device):
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
        return device

    @field_validator("batch_size")
    @classmethod
    def _batch_fits_the_data(cls, batch_size: int | None, info: ValidationInfo) -> int | None:
        data = info.data.get("data")  # validated before batch_size (field order)
        n = data.known_n() if isinstance(data, DataConfig) else None
        if batch_size is not None and n is not None and batch_size > n:
            raise ValueError(
                f"larger than data.n={n}, the training set; use at most {n}, or leave "
                "batch_size unset for full-batch gradient descent"
            )
        return batch_size

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, probes: dict[str, int]) -> dict[str, int]:
        from gdscope.training import PROBES

        for name in probes:
            check.known("probe", name, PROBES)
        return probes

    @model_validator(mode="after")
    def _l1_scale_fits_the_model(self) -> TrialConfig:
        if self.optimizer.l1_scale == "readout_lambda_max" and (
            self.model.kind != "mlp" or self.model.trained != "all"
        ):
            raise ValueError(
                "optimizer.l1_scale = 'readout_lambda_max' needs a trained mlp readout (model.kind "
                f"'mlp', model.trained 'all'), got kind {self.model.kind!r}, trained "
                f"{self.model.trained!r}; give l1 as a number (l1_scale = 'absolute')"
            )
        return self

    @model_validator(mode="after")
    def _stop_reads_a_measured_metric(self, info: ValidationInfo) -> TrialConfig:
        """Refuse a stop rule that mini-batch training would never check (not in a stored config).

        With mini-batches a :class:`StopConfig` criterion is checked where its metric is
        measured (``gdscope.training.Stop``): without the ``loss`` or ``accuracy`` probe it never
        fires, and the run would end at ``steps`` as if no rule had been given
        (:func:`~gdscope.training.train_arguments.unmeasured_stop`; ``n`` known only where the
        loader takes it).
        """
        if read_back(info):
            return self  # written by a gdscope that ran it so: it keeps its hash and verifies
        n = self.data.known_n()
        why = unmeasured_stop(self.stop, scheduled_metrics(self.probes), self.batch_size, n)
        if why:
            raise ValueError(why)
        return self

    @model_validator(mode="after")
    def _square_loss_probes(self, info: ValidationInfo) -> TrialConfig:
        """Refuse a probe of the square loss alone (``sandwich``) beside another ``loss``."""
        from gdscope.training import PROBES

        # auto: mse on real-valued targets (gs.train checks the loss it resolves to); stored:
        # recorded so by a gdscope that allowed it, it keeps its hash
        if read_back(info) or self.loss in ("mse", "auto"):
            return self
        for name in self.probes:
            if PROBES[name].square_loss_only:
                raise ValueError(
                    f"probes.{name} holds for the square loss only (loss = 'mse'), got loss "
                    f"{self.loss!r}; use loss 'mse', or drop the probe"
                )
        return self

    @model_validator(mode="after")
    def _preconditioner_exists(self) -> TrialConfig:
        if "preconditioned_sharpness" in self.probes and self.optimizer.name not in ADAPTIVE:
            raise ValueError(
                "probes.preconditioned_sharpness reads the preconditioner of an adaptive "
                f"optimizer, got optimizer.name {self.optimizer.name!r}; use one of "
                f"{', '.join(ADAPTIVE)}, or probe 'sharpness' instead"
            )
        return self

    @model_validator(mode="after")
    def _lr_rule_exists(self) -> TrialConfig:
        kind, name = self.model.parameterization, self.optimizer.name
        if name in ADAPTIVE and not get_parameterization(kind).adaptive_rule:
            raise ValueError(
                f"optimizer.name {name!r} has no learning-rate rule under model.parameterization "
                f"{kind!r} (its lr multipliers are for SGD-like optimizers); use optimizer gd, "
                "sgd, heavy_ball or nesterov, or parameterization 'mup'"
            )
        return self

    @model_validator(mode="after")
    def _optimizer_fits_the_dtype(self, info: ValidationInfo) -> TrialConfig:
        """Refuse a step size (or decay, L1 strength) that the trial's ``dtype`` cannot hold.

        The optimizers multiply ``lr``, ``weight_decay`` and ``l1`` into the parameters as
        numbers of their dtype: one past its largest finite value (float32: 3.403e+38) stopped
        the first step with an overflow error. Not in a stored config (it keeps its hash).
        """
        if read_back(info):
            return self
        largest = float(np.finfo(self.dtype).max)
        for name in ("lr", "weight_decay", "l1"):
            value = getattr(self.optimizer, name)
            if isinstance(value, str) or abs(value) <= largest:
                continue
            if not math.isfinite(value):
                raise ValueError(f"optimizer.{name} must be a finite number, got {value}")
            raise ValueError(
                f"optimizer.{name} = {value:g} is larger than {self.dtype} can hold (its largest "
                f"finite value is {largest:.4g}); use dtype 'float64' (--dtype float64) or a "
                f"smaller {name}"
            )
        return self

    def recorded_metrics(self) -> set[str]:
        """Every metric (or ``/`` family) a run of this config may record.

        The scheduled probes' metrics, the ``loss`` (a diverging or stopping run records it),
        the ``accuracy`` a stopping run records, and the hyper-parameters tuned at init
        (:data:`TUNED_METRICS`).
        """
        from gdscope.training.scheduled import scheduled_metrics

        names = scheduled_metrics(self.probes) | {"loss"}
        if self.stop.loss_below is not None or self.stop.accuracy_at_least is not None:
            names.add("accuracy")
        opt = self.optimizer
        tuned = {opt.lr, opt.momentum, opt.l1_scale}
        for option, metrics in TUNED_METRICS.items():
            if option in tuned:
                names.update(metrics)
        return names

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the config: equal configs ↔ equal hashes.

        Fields added later (``HASH_OMITTED_AT_DEFAULT`` of the model and optimizer) enter only when set
        to something other than their default, so adding them changed no stored hash.
        """
        data = self.model_dump(mode="json")
        data["model"] = self.model.hash_payload()
        data["data"] = self.data.hash_payload()
        data["optimizer"] = self.optimizer.hash_payload()
        return canonical_hash({**data, **self._revisions()})

    def _revisions(self) -> dict[str, int]:
        """Entries of conventions revised after trials were stored, so those are not resumed.

        ``preconditioned_sharpness`` 2: Adam's ``P`` holds the first moment's bias correction
        ``1 − β₁ᵗ`` (Cohen et al. 2022, §2). ``mup_adaptive_lr`` 2: a built-in μP network under
        Adam/RMSprop takes Tensor Programs V's adaptive learning-rate multipliers (before: the
        SGD ones). ``scaled_weight_decay`` 2: a built-in μP or mean-field network's weight decay
        is ``λ/c`` in a group of lr multiplier ``c`` (before: ``λ``). ``sharpness_tol`` 2: the
        scheduled ``sharpness``/``ggn_sharpness`` ask Lanczos for ``tol = 1e-6`` (at ``1e-3`` a
        warm start could stop at ``λ₂`` at the edge of stability). ``hessian_trace_draws`` 2: the
        same Hutchinson probes at every checkpoint (before: one stream over the checkpoints).
        ``du_setting`` 2: ``du_bound`` and ``h_infinity_gap`` only on Du et al.'s network under
        plain full-batch GD (before: any model and optimizer). ``du_bound_loss`` 2: ``du_bound``
        is nan under a loss other than mse, whose GD its rate is derived for (before: a "bound"
        under any loss; ``"auto"`` may resolve to mse, and reruns). Every other trial hashes as
        before.
        """
        revisions = {}
        if "preconditioned_sharpness" in self.probes:
            revisions["preconditioned_sharpness_convention"] = 2
        if self.probes.keys() & {"sharpness", "ggn_sharpness"}:
            revisions["sharpness_tol"] = 2
        if "hessian_trace" in self.probes:
            revisions["hessian_trace_draws"] = 2
        if self.probes.keys() & {"du_bound", "h_infinity_gap"}:
            revisions["du_setting"] = 2
        if "du_bound" in self.probes and self.loss != "mse":
            revisions["du_bound_loss"] = 2
        model, optimizer = self.model, self.optimizer
        built_in = model.kind in ("mlp", "cnn", "resnet")
        if built_in and model.parameterization == "mup" and optimizer.name in ADAPTIVE:
            revisions["mup_adaptive_lr"] = 2
        scaled = model.parameterization in ("mup", "meanfield")
        if built_in and scaled and optimizer.weight_decay > 0:
            revisions["scaled_weight_decay"] = 2
        return revisions


def canonical_hash(data: Any) -> str:
    """SHA-256 hex digest of ``data``'s canonical JSON (sorted keys, no spaces).

    The one content hash of every trial kind's config: the store's key of a trial.

    >>> canonical_hash({"b": 1, "a": [2.0]}) == canonical_hash({"a": [2.0], "b": 1})
    True
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
