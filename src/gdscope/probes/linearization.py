r"""The linearized network of Lee et al. (2019) and the gap to it.

:math:`f^{\mathrm{lin}}(x) = f(x;θ_0) + J(x;θ_0)(θ_t − θ_0)`, "Wide neural networks of any depth
evolve as linear models under gradient descent", eq. (5). ``J v`` is one forward-mode product
(``torch.func.jvp``), no Jacobian formed; where an op has no forward-mode rule in torch
(multi-head attention's fused kernel, weight normalization, a power iteration in training
mode) it is ``∂(Jᵀu)/∂u · v``, two reverse passes (the transpose trick), exact as well. The
model's buffers are put back afterwards (a training-mode ``spectral_norm`` or
``InstanceNorm(track_running_stats=True)`` would move them).

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
>>> p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
>>> linearization_gap(net, p0, p0, torch.randn(4, 2, dtype=torch.float64))
0.0
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from gdscope.functional import apply, savable, without_autocast
from gdscope.probes._checks import (
    buffers_restored,
    refuse_kept_parameters,
    refuse_kept_reads,
    refuse_random_modules,
    uses_batch_statistics,
)
from gdscope.probes._width import wrong_width_explained

__all__ = ["linearization_gap", "linearized_prediction"]


@without_autocast
def linearized_prediction(
    model: nn.Module, params0: Mapping[str, Tensor], params_t: Mapping[str, Tensor], x: Tensor
) -> Tensor:
    r"""Return the first-order Taylor model :math:`f(x;θ_0) + J(x;θ_0)(θ_t - θ_0)`.

    Raises:
        ValueError: if ``params0`` and ``params_t`` do not name the same tensors; if either
            names a tensor the model does not have, or gives one a shape other than the model's
            (see :func:`_check_names`); if ``x``'s examples are not as wide as the model's first
            layer (:func:`~gdscope.probes._width.wrong_width_explained`: checked only once the
            computation failed); on dropout in training
            mode; on batch norm in training mode (its running-statistics update cannot run under
            forward-mode differentiation: call ``model.eval()``); on a model that reads a
            parameter through a tensor kept from it (``self.w_t = self.lin.weight.t()``), which
            the copies at ``θ₀`` and ``θ_t`` would not reach
            (:func:`~gdscope.probes._checks.refuse_kept_parameters`).

    """
    _check_arguments(model, params0, params_t)
    with wrong_width_explained(model, x, "linearized_prediction"):
        with buffers_restored(model):  # one more forward, on two examples: the jvp hides reads
            refuse_kept_parameters(model, params0, x, "linearized_prediction")
        return _prediction(model, params0, params_t, x)


@without_autocast
def linearization_gap(
    model: nn.Module, params0: Mapping[str, Tensor], params_t: Mapping[str, Tensor], x: Tensor
) -> float:
    r"""Return :math:`\mathrm{RMS}\big(f(x;θ_t) - f^{\mathrm{lin}}(x)\big)` over all output entries.

    Lee et al. (2019) show this gap shrinks like ``width^{-1/2}`` under NTK parameterization
    (reference experiment R2).

    Raises:
        ValueError: as :func:`linearized_prediction`.

    """
    _check_arguments(model, params0, params_t)
    with wrong_width_explained(model, x, "linearization_gap"):
        # a graph, searched for kept reads (also in a caller's inference mode, which records none)
        with torch.inference_mode(False), torch.enable_grad(), buffers_restored(model):
            leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params_t.items()}
            actual = apply(model, leaves, x)
        refuse_kept_reads(model, params_t, actual, "linearization_gap")
        diff = (actual.detach() - _prediction(model, params0, params_t, x)).double()
    return float(diff.pow(2).mean().sqrt())


def _prediction(
    model: nn.Module, params0: Mapping[str, Tensor], params_t: Mapping[str, Tensor], x: Tensor
) -> Tensor:
    """:func:`linearized_prediction` on arguments already checked."""
    primal = {k: v.detach() for k, v in params0.items()}
    tangent = {k: (params_t[k] - params0[k]).detach() for k in params0}
    with buffers_restored(model):
        try:
            result = torch.func.jvp(lambda p: apply(model, p, x), (primal,), (tangent,))
            value, product = result[0], result[1]
        except NotImplementedError:  # an op without a forward-mode rule
            value, product = _transpose_jvp(model, primal, tangent, x)
    return (value + product).detach()


def _transpose_jvp(
    model: nn.Module, primal: dict[str, Tensor], tangent: dict[str, Tensor], x: Tensor
) -> tuple[Tensor, Tensor]:
    """``(f(θ₀), J v)`` by two reverse passes: ``Jᵀu`` is linear in ``u``, so ``∂(vᵀJᵀu)/∂u = J v``."""
    # the graph also in a caller's inference mode (which records none: J v would be 0); the math
    # attention kernel, as the fused one has no second backward
    with torch.inference_mode(False), torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        leaves = {k: savable(v).detach().requires_grad_(True) for k, v in primal.items()}
        out = apply(model, leaves, x)
        if not out.requires_grad:  # reads no parameter: J = 0
            return out.detach(), torch.zeros_like(out)
        probe = torch.zeros_like(out, requires_grad=True)
        pulled = torch.autograd.grad(
            out, list(leaves.values()), probe, create_graph=True, materialize_grads=True
        )
        live = [i for i, g in enumerate(pulled) if g.requires_grad]
        if not live:
            return out.detach(), torch.zeros_like(out)
        vs = list(tangent.values())
        (product,) = torch.autograd.grad([pulled[i] for i in live], probe, [vs[i] for i in live])
    return out.detach(), product.detach()


def _check_arguments(
    model: nn.Module, params0: Mapping[str, Tensor], params_t: Mapping[str, Tensor]
) -> None:
    _check_linearizable(model)
    _check_names(model, params0, params_t)
    missing = sorted(set(params0) - set(params_t))
    if missing:
        raise ValueError(f"params_t lacks {missing}; it must have the keys of params0")
    extra = sorted(set(params_t) - set(params0))
    if extra:  # f(x; θ_t) would read them, the linearization at θ₀ the model's own values
        raise ValueError(
            f"params_t has {extra}, which params0 lacks; the network at θ_t is compared with "
            "its linearization at θ₀, so both must name the same tensors: give params0 their "
            "values at θ₀ or drop them from params_t"
        )


def _check_linearizable(model: nn.Module) -> None:
    refuse_random_modules(model, what="linearized_prediction")
    if uses_batch_statistics(model):
        raise ValueError(
            "linearized_prediction differentiates in forward mode, which cannot run through "
            "batch norm's running-statistics update in training mode; call model.eval()"
        )


def _check_names(model: nn.Module, *given_dicts: Mapping[str, Tensor]) -> None:
    """Refuse a key the model has no parameter or buffer of, or a tensor of another shape.

    ``functional_call(strict=False)`` would set a stray attribute for an unknown name and
    evaluate the model at its own parameter instead: a misspelled or another model's dict gave
    a gap of 0.0 for 0.0814, with no error (a wrong shape: a raw ``RuntimeError`` in a layer).
    """
    shapes = {
        name: tuple(t.shape)
        for named in (model.named_parameters, model.named_buffers)
        for name, t in named(remove_duplicate=False)
    }
    for label, given in zip(("params0", "params_t"), given_dicts, strict=True):
        for key, value in given.items():
            if key not in shapes:
                names = list(shapes)
                shown = ", ".join(map(repr, names[:8])) + (", ..." if len(names) > 8 else "")
                raise ValueError(
                    f"{label} has {key!r}, which is not a parameter or buffer of the model (it "
                    f"has {shown}); key the dict by model.named_parameters() names"
                )
            if tuple(value.shape) != shapes[key]:
                raise ValueError(
                    f"{label}[{key!r}] has shape {tuple(value.shape)} but the model's {key} "
                    f"has shape {shapes[key]}; pass a tensor of that shape"
                )
