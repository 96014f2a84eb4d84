"""Second derivatives the installed torch gets wrong: refused before a Hessian probe runs.

A Hessian-vector product differentiates the gradient graph, so every op of the forward needs a
right second derivative. ``torch._weight_norm`` (behind ``torch.nn.utils.weight_norm`` and
``torch.nn.utils.parametrizations.weight_norm``) fails ``torch.autograd.gradgradcheck`` in torch
2.13 on the CPU: the Hessian of a weight-normed net came out 0.8 % off in its top eigenvalue and
24 % off in its trace. Whether the installed torch has the bug is checked, not assumed, once per
device type, by that ``gradgradcheck`` on a 3 × 4 float64 weight.
"""

from __future__ import annotations

import functools
from typing import cast

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["refuse_wrong_second_derivatives", "weight_norm_second_derivative_ok"]


def refuse_wrong_second_derivatives(model: nn.Module, *, what: str) -> None:
    """Raise if a module of ``model`` uses an op whose second derivative torch gets wrong here.

    Raises:
        ValueError: naming the module, the op and the fix.

    """
    for name, module in model.named_modules():
        if _weight_normed(module):
            device = next(module.parameters()).device
            if not weight_norm_second_derivative_ok(device.type):
                raise ValueError(
                    f"{what}: module {name!r} uses weight normalization, whose second derivative "
                    f"torch {torch.__version__} computes wrongly on {device.type} (gradgradcheck "
                    "of torch._weight_norm fails), so its Hessian products would be wrong; "
                    "remove it (torch.nn.utils.parametrize.remove_parametrizations) first"
                )


@functools.cache
def weight_norm_second_derivative_ok(device_type: str) -> bool:
    """Return whether ``torch._weight_norm`` passes ``gradgradcheck`` on ``device_type``."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, generator=gen, dtype=torch.float64).to(device_type).requires_grad_()
    g = (torch.rand(3, 1, generator=gen, dtype=torch.float64) + 0.5).to(device_type)
    g.requires_grad_()
    forked = (
        torch.random.fork_rng(devices=[])
        if device_type == "cpu"
        else torch.random.fork_rng(device_type=device_type)
    )
    with forked:  # its random grad_outputs: the caller's random stream stays as it was
        return bool(
            torch.autograd.gradgradcheck(
                lambda v, g: torch._weight_norm(v, g, 0), (v, g), raise_exception=False
            )
        )


def _weight_normed(module: nn.Module) -> bool:
    hooked = any(isinstance(h, WeightNorm) for h in module._forward_pre_hooks.values())
    if hooked or not parametrize.is_parametrized(module):
        return hooked
    lists = cast("nn.ModuleDict", module.parametrizations).values()
    return any(type(p).__name__ == "_WeightNorm" for plist in lists for p in plist.children())
