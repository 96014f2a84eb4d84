r"""The spectral norm of the output's Hessian in the parameters, per example.

``max_i ‖∇²_θ f(θ, x_i)‖₂`` for a scalar-output model: how far the network is from linear in its
parameters around ``θ``, by Lanczos on cached-graph Hessian-vector products of each output.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from gdscope.functional import apply
from gdscope.probes._checks import (
    check_deterministic,
    refuse_coupled_examples,
    refuse_kept_parameters,
    refuse_random_modules,
)
from gdscope.probes._differentiating import differentiating
from gdscope.probes._hvp import HessianOperator, Scalar, Term
from gdscope.probes._second_order import refuse_wrong_second_derivatives
from gdscope.probes.lanczos import lanczos_topk

__all__ = ["output_hessian_norm"]


@differentiating
def output_hessian_norm(
    model: nn.Module,
    x: Tensor,
    *,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> float:
    r"""Return ``max_i ‖∂²f(x_i)/∂θ²‖₂`` for a model with one scalar output per example.

    Liu, Zhu & Belkin (2020, "On the linearity of large non-linear models") show this spectral norm
    falls like ``width^{-1/2}`` for a linear readout, which is why wide nets are nearly linear in
    their parameters. Each example's norm is its largest-magnitude eigenvalue, by Lanczos
    (``which="LM"``) on cached-graph products, to relative tolerance ``tol``.

    Raises:
        ValueError: if ``x`` is empty, the model does not give one output per example, is random,
            normalizes with batch statistics (each example is differentiated alone, so even
            inside :func:`~gdscope.probes.allow_batch_statistics`), mixes the examples of a
            batch, reads a parameter other than through its modules (a tensor kept from
            ``__init__``), or uses an op whose second derivative torch gets wrong
            (:mod:`gdscope.probes._second_order`).

    """
    if x.shape[0] == 0:
        raise ValueError("output_hessian_norm got x with 0 examples; pass at least one")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    # examples are differentiated one at a time: batch statistics would be a batch of one's
    refuse_random_modules(model, what="output_hessian_norm", per_example=True)
    with torch.no_grad():
        out = apply(model, {n: p.detach() for n, p in params.items()}, x[:1])
    if out.numel() != 1:
        raise ValueError(
            f"output_hessian_norm needs one scalar output per example, got output shape "
            f"{tuple(out.shape)} for one example; select an output first"
        )
    refuse_coupled_examples(
        model, x[:2], "output_hessian_norm", "each output's Hessian is that of one example"
    )
    refuse_kept_parameters(model, params, x, "output_hessian_norm")
    terms = [Term(_output_term(model, x[i : i + 1]), 1.0) for i in range(x.shape[0])]
    check_deterministic(
        model, what="output_hessian_norm", fn=terms[0].fn, params=params, per_example=True
    )
    refuse_wrong_second_derivatives(model, what="output_hessian_norm")
    norms = []
    for term in terms:
        op = HessianOperator(params, [term], cache=True)
        res = lanczos_topk(
            op.matvec, op.dim, 1, which="LM", tol=tol, generator=generator, device=op.device
        )
        norms.append(abs(float(res.values[0])))
        if not res.converged:
            warnings.warn(
                f"output_hessian_norm: Lanczos stopped after {res.iterations} products with "
                f"residual {res.residual_norms[0].item():.3e} > tol·|θ| = {tol * norms[-1]:.3e}",
                RuntimeWarning,
                stacklevel=3,
            )
    return max(norms)


def _output_term(model: nn.Module, x: Tensor) -> Scalar:
    return lambda p: apply(model, p, x).reshape(())
