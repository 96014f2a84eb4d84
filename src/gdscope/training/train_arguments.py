"""What :func:`gdscope.training.train` refuses before it runs: arguments it would misuse silently.

An optimizer built over another model's parameters trains nothing (the run "completes" with the
model as it was); ``data`` that is not an ``(x, y)`` pair, or of another dtype than the model,
fails deep inside the first step with torch's words. Each is one line here, naming the argument
and the fix.

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

__all__ = ["check_train_arguments"]


def check_train_arguments(model: nn.Module, optimizer: Any, data: Any, eval_data: Any) -> None:
    """Raise ``ValueError``/``TypeError`` on an optimizer or a data set ``train`` would misuse.

    ``data`` and ``eval_data`` (when given) must be ``(x, y)`` pairs of tensors with as many
    targets as inputs, and a floating ``x`` the dtype of the model's parameters; every tensor
    ``optimizer`` updates must be a parameter of ``model``.
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
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    for name, pair in (("data", data), ("eval_data", eval_data)):
        if pair is None and name == "eval_data":
            continue
        if not (isinstance(pair, tuple | list) and len(pair) == 2) or not all(
            isinstance(t, Tensor) for t in pair
        ):
            raise TypeError(f"{name} must be a pair (x, y) of tensors, got {_kind(pair)}")
        x, y = pair
        if x.shape[:1] != y.shape[:1]:
            raise ValueError(
                f"{name}: x has {x.shape[0] if x.ndim else 0} examples and y "
                f"{y.shape[0] if y.ndim else 0}; give one target row per input"
            )
        if x.is_floating_point() and dtype is not None and x.dtype != dtype:
            raise ValueError(
                f"{name}: x is {x.dtype} but the model's parameters are {dtype}; pass "
                f"x.to({dtype}) (and a floating y), or convert the model"
            )


def _kind(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"one tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
