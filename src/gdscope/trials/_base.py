"""What every trial kind shares: the frozen config base, constrained number types, divergence."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from gdscope import _checks as check
from gdscope.config import canonical_hash

PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Momentum = Annotated[float, Field(ge=0, lt=1)]
Dtype = Literal["float32", "float64"]


def _auto_or(low: float, high: float, low_open: bool, high_open: bool, accepted: str) -> Any:
    def validate(value: Any) -> float | Literal["auto"]:
        if value == "auto":
            return "auto"
        try:
            return check.real("", value, low=low, high=high, low_open=low_open, high_open=high_open)
        except ValueError:
            raise ValueError(f"must be 'auto' or {accepted}, got {value!r}") from None

    return PlainValidator(validate)


AutoPositive = Annotated[
    float | Literal["auto"], _auto_or(0.0, math.inf, True, False, "a finite number > 0")
]
"""``"auto"`` or a finite number ``> 0``."""
AutoMomentum = Annotated[
    float | Literal["auto"], _auto_or(0.0, 1.0, False, True, "a number in [0, 1)")
]
"""``"auto"`` or a number in ``[0, 1)``."""


class KindConfig(BaseModel):
    """Base of the trial-kind configs: frozen, unknown keys rejected, hashed like ``TrialConfig``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    RECORDED_METRICS: ClassVar[tuple[str, ...]] = ()
    """The series every run of this kind records (its ``run`` function's docstring says when)."""

    def recorded_metrics(self) -> set[str]:
        """Every metric a run of this config may record."""
        return set(self.RECORDED_METRICS)

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the config: equal configs ↔ equal hashes."""
        return canonical_hash(self.model_dump(mode="json"))


def torch_dtype(name: Dtype) -> torch.dtype:
    """Return the torch dtype named by a config's ``dtype`` field."""
    return torch.float64 if name == "float64" else torch.float32


def numpy_dtype(name: Dtype) -> type[np.floating[Any]]:
    """Return the numpy dtype named by a config's ``dtype`` field."""
    return np.float64 if name == "float64" else np.float32


def one_of_pair(data: Any, given: str, default: str) -> Any:
    """Before validation: if ``given`` is set and ``default`` is not, drop ``default``'s default.

    Lets a config with two mutually exclusive fields keep a default on ``default`` while the user
    sets only ``given`` (``KernelDynamicsConfig(steps_per_kappa=40)``); both set is caught after.
    """
    if isinstance(data, dict) and data.get(given) is not None and default not in data:
        return {**data, default: None}
    return data


def exactly_one(model: BaseModel, first: str, second: str) -> None:
    """Raise ``ValueError`` unless exactly one of two fields of ``model`` is not ``None``."""
    a, b = getattr(model, first), getattr(model, second)
    if (a is None) == (b is None):
        seen = f"{first}={a!r}, {second}={b!r}"
        raise ValueError(f"set exactly one of {first} and {second}, got {seen}")
