"""The arguments of a probe, checked before any work: a batch ``(x, y)``, a loss of two, a generator.

Every curvature probe reads ``x, y = batch`` and calls ``loss_fn(model(x), y)``. Given anything
else (a bare tensor, a dict, a loss of one argument) Python's own error is about unpacking or
arity, deep inside the probe; this names the argument, what it got and the fix, in one line.

>>> import torch
>>> check_loss_and_batch(lambda out, y: (out - y).pow(2).mean(), torch.zeros(4, 3), "sharpness")
Traceback (most recent call last):
...
ValueError: sharpness: batch must be a pair (x, y) of the model's inputs and the targets, got a \
tensor of shape (4, 3); pass batch=(x, y)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "check_generator",
    "check_loss_and_batch",
    "check_params",
    "described",
    "refuse_inference_model",
]


def refuse_inference_model(model: nn.Module, what: str) -> None:
    """Raise if a parameter of ``model`` was made inside ``torch.inference_mode()``.

    Such an inference tensor can never enter a graph: torch's own error ("Setting
    requires_grad=True on inference tensor outside InferenceMode") names neither the model nor
    the fix.
    """
    for name, p in model.named_parameters():
        if p.is_inference():
            raise ValueError(
                f"{what}: parameter {name!r} was made inside torch.inference_mode(), which no "
                "derivative can reach; build the model outside it (torch.no_grad() is enough "
                "for a model that is only evaluated), or load its weights into a new one"
            )


def check_params(params: object, what: str) -> None:
    """Raise a one-line ``TypeError`` unless ``params`` maps names to tensors.

    >>> check_params(torch.nn.MSELoss(), "gradient_norm")
    Traceback (most recent call last):
    ...
    TypeError: gradient_norm(model, params, loss_fn, batch): params must map parameter names to tensors (dict(model.named_parameters())), got MSELoss
    """
    if not (isinstance(params, Mapping) and all(isinstance(t, Tensor) for t in params.values())):
        raise TypeError(
            f"{what}(model, params, loss_fn, batch): params must map parameter names to tensors "
            f"(dict(model.named_parameters())), got {type(params).__name__}"
        )


def check_loss_and_batch(loss_fn: object, batch: object, what: str) -> None:
    """Raise a one-line ``ValueError`` unless ``batch`` is ``(x, y)`` and ``loss_fn(out, y)`` binds.

    A tensor ``x`` must hold at least one example (an empty batch's loss has no curvature to
    measure: the probes returned 0); ``x`` and ``y`` are not otherwise looked into (what the
    model and the loss take). A loss whose
    signature Python cannot read is taken as it is.
    """
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise ValueError(
            f"{what}: batch must be a pair (x, y) of the model's inputs and the targets, got "
            f"{described(batch)}; pass batch=(x, y)"
        )
    x = batch[0]  # pyright: ignore[reportIndexIssue]
    if isinstance(x, Tensor) and (x.ndim == 0 or x.shape[0] == 0):
        raise ValueError(
            f"{what}: batch's x has no examples (shape {tuple(x.shape)}); pass at least one "
            "example, rows along axis 0"
        )
    if not callable(loss_fn):
        raise ValueError(
            f"{what}: loss_fn must be a function loss_fn(output, target), got "
            f"{type(loss_fn).__name__}; pass e.g. gdscope.losses.mse"
        )
    try:  # the callable's own signature: a decorator may fill in what the wrapped one takes
        signature = inspect.signature(loss_fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(batch[0], batch[1])  # pyright: ignore[reportIndexIssue]
    except TypeError:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        raise ValueError(
            f"{what}: loss_fn is called as loss_fn(output, target), but {name}{signature} "
            f"cannot take two arguments; wrap it, e.g. lambda output, target: ..."
        ) from None


def described(batch: object) -> str:
    """Say what a value given for a pair ``(x, y)`` is: a tensor's shape, a dict's keys, a length."""
    if isinstance(batch, Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, Mapping):
        return f"a {type(batch).__name__} with keys {list(batch)[:4]}"
    if isinstance(batch, tuple | list):
        return f"a {type(batch).__name__} of {len(batch)} items"
    return f"a {type(batch).__name__}"


def check_generator(generator: object, what: str) -> None:
    """Raise a one-line ``ValueError`` unless ``generator`` is a ``torch.Generator`` or ``None``.

    >>> check_generator(0, "hessian_trace")
    Traceback (most recent call last):
    ...
    ValueError: hessian_trace: generator must be a torch.Generator or None, got int 0; pass \
generator=torch.Generator().manual_seed(0)
    """
    if generator is None or isinstance(generator, torch.Generator):
        return
    seed = generator if isinstance(generator, int) and not isinstance(generator, bool) else 0
    raise ValueError(
        f"{what}: generator must be a torch.Generator or None, got {type(generator).__name__} "
        f"{generator!r}; pass generator=torch.Generator().manual_seed({seed})"
    )
