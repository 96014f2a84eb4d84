"""What :func:`gdscope.training.train` refuses before it runs: arguments it would misuse silently.

An optimizer built over another model's parameters trains nothing (the run "completes" with the
model as it was); a mini-batch stop rule whose metric nothing measures never fires; ``data``
that is not an ``(x, y)`` pair fails deep inside the first step with torch's words, and so do
inputs of another dtype than the model (explained once the model failed on them). Each is one
line here, naming the argument and the fix.

>>> import torch
>>> net = torch.nn.Linear(3, 1)
>>> other = torch.nn.Linear(3, 1)
>>> check_train_arguments(net, torch.optim.SGD(other.parameters()), None, None)
Traceback (most recent call last):
ValueError: optimizer updates 2 tensors that are not the model's parameters (of 2); build it from model.parameters()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gdscope.functional import unmatched_dtype
from gdscope.probes._arguments import described

__all__ = ["check_train_arguments", "explain_dtype", "unmeasured_stop"]


_STOP_RULES = (("loss", "loss_below"), ("accuracy", "accuracy_at_least"))
"""Each stop criterion's metric and its field (of ``Stop`` and of ``config.StopConfig``)."""


def unmeasured_stop(stop: Any, measured: Any, batch_size: int | None, n: int | None) -> str | None:
    """Say why a stop rule would never fire, or ``None``: mini-batches and nothing records its metric.

    With mini-batches (``batch_size`` below a known ``n``) a criterion of ``stop`` (a
    :class:`~gdscope.training.loop.Stop` or a config's ``StopConfig``; ``None``: none) is checked
    where its metric is measured; ``measured`` holds the metrics the scheduled probes record
    (:func:`~gdscope.training.scheduled.scheduled_metrics`).

    >>> from gdscope.training.loop import Stop
    >>> unmeasured_stop(Stop(loss_below=0.1), {"grad_norm"}, 8, 64)
    'stop.loss_below = 0.1 is checked where loss is measured, and with batch_size = 8 nothing \
measures it; add probes.loss (--probe loss=1 checks it every step)'
    """
    if stop is None or batch_size is None or n is None or batch_size == n:
        return None  # full batch: every step's loss (and accuracy, when asked) is checked
    for metric, rule in _STOP_RULES:
        value = getattr(stop, rule)
        if value is not None and metric not in measured:
            return (
                f"stop.{rule} = {value} is checked where {metric} is measured, and with "
                f"batch_size = {batch_size} nothing measures it; add probes.{metric} "
                f"(--probe {metric}=1 checks it every step)"
            )
    return None


def check_train_arguments(model: nn.Module, optimizer: Any, data: Any, eval_data: Any) -> None:
    """Raise ``ValueError``/``TypeError`` on an optimizer or a data set ``train`` would misuse.

    ``data`` and ``eval_data`` (when given) must be ``(x, y)`` pairs of tensors with as many
    targets as inputs; every tensor ``optimizer`` updates must be a parameter of ``model``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    updated = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = sum(id(p) not in own for p in updated)
    if foreign:
        raise ValueError(
            f"optimizer updates {foreign} tensors that are not the model's parameters (of "
            f"{len(updated)}); build it from model.parameters()"
        )
    for name, pair in (("data", data), ("eval_data", eval_data)):
        if pair is None and name == "eval_data":
            continue
        if not (isinstance(pair, tuple | list) and len(pair) == 2) or not all(
            isinstance(t, Tensor) for t in pair
        ):
            raise TypeError(f"{name} must be a pair (x, y) of tensors, got {described(pair)}")
        x, y = pair
        if x.shape[:1] != y.shape[:1]:
            raise ValueError(
                f"{name}: x has {x.shape[0] if x.ndim else 0} examples and y "
                f"{y.shape[0] if y.ndim else 0}; give one target row per input"
            )


def explain_dtype(model: nn.Module, data: Any, error: RuntimeError) -> None:
    """Raise a one-line ``ValueError`` if ``error`` came from inputs of another dtype than the model.

    Said only after the model failed, by the rule of :func:`gdscope.functional.unmatched_dtype`.
    """
    dtype = unmatched_dtype(data[0], model.parameters(), error)
    if dtype is not None:
        raise ValueError(
            f"data: x is {data[0].dtype} but the model's parameters are {dtype}, and the model "
            f"failed on it; pass x.to({dtype}) (and a floating y), or convert the model"
        ) from error
