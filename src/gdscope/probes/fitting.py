"""Whether the training set is fitted: training error and a 0/1 "interpolated" flag (seed 004).

Allen-Zhu, Li, Song (2019) claim that an over-parameterized network reaches 100% training
accuracy. Two metrics make that checkable by the generic reducers:

* ``train_error = 1 − accuracy``, so ``steps_to_eps(train_error, eps)`` with a tiny ``eps`` is
  the first step at which every training point is classified correctly;
* ``interpolated`` is ``1.0`` when ``train_error == 0`` and ``0.0`` otherwise, so
  ``max(interpolated)`` is a per-trial indicator whose mean over seeds is the fraction of seeds
  that fit.

Accuracy follows :func:`gdscope.losses.accuracy` (sign agreement for ±1 targets, argmax for
class labels).
"""

from __future__ import annotations

import torch

from gdscope import losses

__all__ = ["fit_indicators"]


def fit_indicators(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Return ``{"train_error": 1 − accuracy, "interpolated": 1.0 if error is 0 else 0.0}``."""
    error = 1.0 - float(losses.accuracy(output, target))
    error = max(error, 0.0)
    return {"train_error": error, "interpolated": 1.0 if error == 0.0 else 0.0}
