r"""Schedulable probe: the spectral norm of the output Hessian ``∂²f(x)/∂θ²`` on a few inputs.

Liu, Zhu & Belkin (2020), "On the linearity of large non-linear models": with a linear output
layer the spectral norm of the Hessian of the network output with respect to its parameters
falls like ``width^{-1/2}`` (reference experiment R6). The probe evaluates
:func:`gdscope.probes.output_hessian.output_hessian_norm` on the first ``OUTPUT_HESSIAN_EXAMPLES``
training inputs (the data loaders draw points in random order, so these are a random subset).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from gdscope.probes.output_hessian import output_hessian_norm

if TYPE_CHECKING:
    from gdscope.training.context import ProbeContext

OUTPUT_HESSIAN_EXAMPLES = 4
"""How many training inputs the probe takes the maximum over."""


def output_hessian_norm_probe(ctx: ProbeContext) -> dict[str, float]:
    """Return ``{"output_hessian_norm": max_i ‖∂²f(x_i)/∂θ²‖₂}`` over the first few inputs.

    Lanczos starts from a fixed generator (seed 0), so the value is deterministic. The value is
    nan for a model with several outputs per example, so the probe can be scheduled on any run.

    """
    if ctx.train_output().numel() != ctx.data[0].shape[0]:
        return {"output_hessian_norm": math.nan}
    x = ctx.data[0][:OUTPUT_HESSIAN_EXAMPLES]
    generator = torch.Generator(device=x.device).manual_seed(0)
    return {"output_hessian_norm": output_hessian_norm(ctx.model, x, generator=generator)}
