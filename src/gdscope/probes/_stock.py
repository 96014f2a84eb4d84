"""Whether a module runs the library's own code: no hooks, no instance ``forward``, no override.

The structured NTK and the data span assume what a layer's stock code does with its parameters
(``α x Wᵀ + α_b b`` for a linear layer, a convolution of the same kind). A hook, a ``forward``
set on the instance, or a subclass redefining any method (``forward``, ``_conv_forward``,
``_add_bias``, a property) can change that without changing the module's type test, so these
checks look at the instance and at every class between its type and the library's.
"""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import nn

from gdscope.models.layers import ScaledConv2d, ScaledLinear
from gdscope.models.two_layer import TwoLayer

__all__ = ["closed_form_two_layer", "global_hooks", "hookless", "is_stock", "stock_layer"]

STOCK_LAYERS = (nn.Linear, ScaledLinear, nn.Conv2d, ScaledConv2d)
"""The layers whose code the structured NTK knows."""

_INERT = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__annotations__",
        "__dict__",
        "__weakref__",
        "__orig_bases__",  # a generic class (typing.Generic, or PEP 695 below)
        "__parameters__",
        "__type_params__",  # 3.12: a PEP 695 generic class, ``class L[T](nn.Linear)``
        "__firstlineno__",  # 3.13: every class statement (the line it starts on)
        "__static_attributes__",  # 3.13: every class statement (the ``self.X`` it assigns)
        "__annotate_func__",  # 3.14: a class with annotations (PEP 649/749, gh-132261)
        "__annotations_cache__",  # 3.14: those annotations evaluated, once they are read
        "__init__",
        "reset_parameters",
        "extra_repr",
    }
)
"""Class attributes a subclass may define without changing what a call computes: those Python
puts in a class dict itself (each comment says from which version, and in which classes),
construction (the weights it draws are read as they are), and the printed form."""


def stock_layer(module: nn.Module) -> bool:
    """Whether ``module``'s class is a :data:`STOCK_LAYERS` layer's, adding nothing but construction.

    Hooks and an instance ``forward`` are :func:`is_stock`'s to check. A subclass defining anything else (``forward``, ``_conv_forward``, ``_add_bias``, a
    ``weight`` property, a class constant) is not stock: the structured route would assume the
    library's computation (a ``_conv_forward`` doubling the weight gave a Gram 20 % off).

    >>> class Drawn(nn.Linear):
    ...     def reset_parameters(self):
    ...         nn.init.zeros_(self.bias)
    >>> class Doubled(nn.Linear):
    ...     def forward(self, x):
    ...         return 2 * super().forward(x)
    >>> stock_layer(nn.Linear(2, 2)), stock_layer(Drawn(2, 2)), stock_layer(Doubled(2, 2))
    (True, True, False)
    """
    for base in type(module).__mro__:
        if base in STOCK_LAYERS:
            return True
        if set(vars(base)) - _INERT:
            return False
    return False


def global_hooks() -> bool:
    """Whether any global module hook (forward, forward-pre, backward, backward-pre) is registered."""
    hooks = torch.nn.modules.module
    return bool(
        hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


def is_stock(module: nn.Module) -> bool:
    """Return whether ``module`` has no hook, no instance ``forward`` and plain parameters."""
    return hookless(module) and all(
        p is None or type(p) is nn.Parameter for p in module._parameters.values()
    )


def closed_form_two_layer(model: nn.Module) -> TypeGuard[TwoLayer]:
    """Whether ``model`` is a stock :class:`TwoLayer` (NTK in closed form).

    No subclass, no hook anywhere in it, and nothing trained but its ``weight`` and ``outer``
    (an activation with trainable parameters, a ``PReLU``, has terms the closed form lacks).
    """
    if type(model) is not TwoLayer or global_hooks():
        return False
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return trained <= {"weight", "outer"} and all(hookless(m) for m in model.modules())


def hookless(module: nn.Module) -> bool:
    """Return whether ``module`` has no hook of its own and no instance ``forward``."""
    return not (
        "forward" in module.__dict__
        or module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )
