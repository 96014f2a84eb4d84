"""How a curvature probe runs: autograd on, and the model's buffers as they were.

A Hessian, Gauss–Newton or preconditioned-sharpness probe builds gradient graphs, so it turns
autograd on for its own work even inside a caller's ``torch.no_grad()`` or
``torch.inference_mode()``, and a caller's ``torch.autocast`` off (it measures the model in its
own dtype, :func:`gdscope.functional.autocast_off`) (inputs and targets made in inference mode are copied where a graph
would save them: :func:`gdscope.functional.savable`). A forward pass in training mode may update
a module's buffers (``InstanceNorm(track_running_stats=True)``'s running statistics,
``spectral_norm``'s power-iteration vectors) without changing the function measured; the probe
puts every buffer back as it found it (a probe that returns an operator leaves them as its
graph saved them).

>>> import torch, gdscope as gs
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> x, y = torch.randn(8, 3), torch.randn(8)
>>> with torch.no_grad():
...     inside = gs.probes.sharpness(net, gs.losses.mse, (x, y))
>>> abs(inside - gs.probes.sharpness(net, gs.losses.mse, (x, y))) < 1e-6
True
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Concatenate, ParamSpec, TypeVar

import torch
from torch import nn

from gdscope.functional import autocast_off
from gdscope.probes._arguments import (
    check_generator,
    check_loss_and_batch,
    refuse_inference_model,
)
from gdscope.probes._checks import buffers_restored

__all__ = ["differentiating", "differentiating_operator"]

P = ParamSpec("P")
R = TypeVar("R")
Probe = Callable[Concatenate[nn.Module, P], R]

_RUNNING: ContextVar[bool] = ContextVar("gdscope_probe_running", default=False)


def differentiating(probe: Probe[P, R]) -> Probe[P, R]:
    """Run ``probe(model, ...)`` with autograd on and ``model``'s buffers restored afterwards.

    Only the outermost probe restores them: a graph an inner one built (an operator) may have
    saved a buffer (training-mode batch norm saves its running statistics), and is used until
    the outermost probe returns.
    """
    return _wrap(probe, restore=True)


def differentiating_operator(probe: Probe[P, R]) -> Probe[P, R]:
    """:func:`differentiating` for a probe that returns an operator holding a live graph.

    Its buffers are left as its graph saved them (restoring them would invalidate the graph).
    """
    return _wrap(probe, restore=False)


def _wrap(probe: Probe[P, R], *, restore: bool) -> Probe[P, R]:
    names = list(inspect.signature(probe).parameters)[1:]  # after the model
    takes_loss = names[:2] == ["loss_fn", "batch"]

    @functools.wraps(probe)
    def run(model: nn.Module, /, *args: P.args, **kwargs: P.kwargs) -> R:
        outermost = not _RUNNING.get()
        if outermost:  # a probe inside another gets the arguments that one checked
            if takes_loss:
                given = dict(zip(names, args, strict=False)) | kwargs
                check_loss_and_batch(given.get("loss_fn"), given.get("batch"), probe.__name__)
            check_generator(kwargs.get("generator"), probe.__name__)
            refuse_inference_model(model, probe.__name__)
        kept = buffers_restored(model) if restore and outermost else contextlib.nullcontext()
        token = _RUNNING.set(True)
        try:
            with kept, torch.inference_mode(False), torch.enable_grad(), autocast_off():
                return probe(model, *args, **kwargs)
        finally:
            _RUNNING.reset(token)

    return run
