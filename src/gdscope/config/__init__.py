"""Typed, immutable configuration of ONE trial, validated with field paths, with a stable hash.

A ``TrialConfig`` fixes everything a run depends on: model, data, optimizer, loss, probe schedule,
stop criteria, steps, seed, dtype and device. Same config → same numbers (``gdscope.trials.trial.run_trial``).
Validation errors name the dotted field, the value seen and what is accepted
(:func:`gdscope._validation.format_errors`); an unknown key gets a "did you mean". The model and
data parts live in :mod:`gdscope.config.parts`, the trial and its optimizer in
:mod:`gdscope.config.trial`.
"""

from gdscope.config.parts import DataConfig, ModelConfig
from gdscope.config.trial import (
    SHARPNESS_EDGE_OPTIMIZERS,
    TUNED_METRICS,
    OptimizerConfig,
    StopConfig,
    TrialConfig,
    canonical_hash,
)

__all__ = [
    "SHARPNESS_EDGE_OPTIMIZERS",
    "TUNED_METRICS",
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "StopConfig",
    "TrialConfig",
    "canonical_hash",
]
