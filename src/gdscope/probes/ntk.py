r"""The empirical neural tangent kernel and what theory says about it.

.. math::  K(x, x') = J(x)\, J(x')^\top, \qquad J(x) = ∂ f(θ, x) / ∂θ,

over the trainable parameters ``θ`` (Jacot, Gabriel & Hongler 2018, "Neural tangent kernel").
Rows are example-major (row ``i·k + a`` for example ``i``, output ``a``), as in
:func:`gdscope.probes._reference.dense_ntk`. Two fast paths compute it (Novak, Sohl-Dickstein &
Schoenholz 2022, "Fast finite width neural tangent kernel"): a structured one for nets made of
linear and convolution layers, and a generic ``torch.func`` Jacobian contraction for any module.
Both tile over examples within a memory budget and sum per-layer (per-parameter) Grams in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gdscope.functional import without_autocast

from . import _ntk_jacobian as jac
from . import _ntk_structured as st
from ._arguments import refuse_inference_model
from ._checks import (
    buffers_restored,
    check_deterministic,
    refuse_coupled_examples,
    refuse_kept_parameters,
)
from ._gram import blas_threads_like_torch, uses_syrk
from ._ntk_plain import plain_gram
from ._ntk_spectral import (
    NTKSpectrum,
    gram_eigs,
    h_infinity,
    kernel_drift,
    kernel_target_alignment,
    spectrum_of,
)
from ._ntk_tf32 import allow_tf32, check_tf32
from ._ntk_tiling import bytes_per_example, features_fn, tiled
from ._ntk_uses import (
    PlainStack,
    UseTrace,
    plain_stack,
    plain_structure,
    plain_uses,
    traced_forward,
    unsupported_modules,
)
from ._stock import closed_form_two_layer

__all__ = [
    "NTKSpectrum",
    "gram_eigs",
    "h_infinity",
    "kernel_drift",
    "kernel_target_alignment",
    "ntk_gram",
    "ntk_method",
    "ntk_spectrum",
]

METHODS = ("auto", "structured", "jacobian")


@without_autocast
def ntk_gram(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    trace: bool = False,
    method: str = "auto",
    memory_budget: int = 2**30,
    accumulate: torch.dtype | None = torch.float64,
    tf32: bool = False,
) -> Tensor:
    r"""Return the empirical NTK Gram ``J(x1) J(x2)ᵀ`` over the trainable parameters.

    Frozen parameters and buffers are held fixed. With ``k`` outputs the full Gram is
    ``(n1·k, n2·k)`` with entry ``[(i·k + a), (j·k + b)] = ⟨∂f_a(x1_i)/∂θ, ∂f_b(x2_j)/∂θ⟩``; with
    ``trace=True`` it is the class trace ``K_tr[i, j] = Σ_a K[(i, a), (j, a)]`` of shape ``(n1, n2)``.

    Methods:
    * ``"structured"`` (auto when every module holding trainable parameters is a
      :class:`~gdscope.models.layers.ScaledLinear`, ``ScaledConv2d``, ``nn.Linear`` or ``nn.Conv2d``
      (``groups=1``, zero padding), each with the weight and bias shapes its size attributes say
      (a weight put in without them is not covered), or the model is a ``TwoLayer``):
      ``K = Σ_ℓ α_ℓ² Σ_{pq} (H_i H_jᵀ)_{pq} (Δ_i Δ_jᵀ)_{pq} + α_{b,ℓ}² (ΣΔ_i)(ΣΔ_j)ᵀ``, with layer
      inputs ``H`` from forward hooks and ``Δ = ∂f/∂y_ℓ`` from one batched backward per output
      (a plain stack of linear layers and activations: both from a forward and backward pass
      written out, :mod:`gdscope.probes._ntk_plain`, which sums a Gram of fewer than 96 rows
      in that pass); a
      conv layer takes the cheaper of the Gram and per-example-gradient routes (flop counts in
      :func:`gdscope.probes._ntk_structured.layer_gram`). For ``TwoLayer`` this is
      ``K_ij = x_iᵀx_j · m⁻¹ Σ_r a_r² σ'(w_rᵀx_i) σ'(w_rᵀx_j)`` (+ the ``a`` term if trained).
      It requires that examples do not interact and that each trainable parameter is read
      only by its own layer's (unmodified) forward, once per call: ``"auto"`` checks the
      latter in a traced forward on ``x1[:1]`` (see :func:`ntk_method`; a plain stack of linear
      layers and activations is known from its code, :func:`~gdscope.probes._ntk_uses.plain_stack`)
      and otherwise falls back to the Jacobian route, so a tied decoder
      ``F.linear(h, enc.weight.t())`` is exact.
    * ``"jacobian"`` (auto otherwise): per-example Jacobians by ``vmap(jacrev)``, contracted
      parameter by parameter.

    Both tile over examples so that one tile's features (layer inputs and signals, or Jacobian)
    take about ``memory_budget`` bytes; features are computed once when all of them fit the
    budget and recomputed per tile pair otherwise. Only the upper block triangle of a
    symmetric Gram is computed. Products are taken in the model's dtype on its device; the sum
    over layers and parameters is accumulated in ``accumulate``.

    Args:
        model: the network, in eval mode if it has dropout or BatchNorm.
        x1: ``(n1, ...)`` inputs.
        x2: ``(n2, ...)`` inputs for a cross-Gram; ``None`` for ``K(x1, x1)``.
        trace: return the ``(n1, n2)`` class-trace Gram.
        method: ``"auto"``, ``"structured"`` or ``"jacobian"``.
        memory_budget: bytes one tile's features may take.
        accumulate: dtype of the sum over layers and of the result (``None``: the model's dtype).
        tf32: on CUDA, allow TF32 matmuls and convolutions, then recompute up to 16×16 random
            example pairs in full float32 and warn (``RuntimeWarning``) if the largest error
            relative to the largest entry exceeds ``1e-3``. A no-op on CPU.

    Returns:
        The Gram on the model's device, dtype ``accumulate`` (or the model's).

    Raises:
        ValueError: on an unknown method, a nondeterministic model (dropout or BatchNorm in
            training mode), inputs the model rejects, ``"structured"`` on an unsupported model,
            or a model without trainable parameters.

    Example:
        >>> from gdscope.models import mlp
        >>> net = mlp(d_in=4, width=32, depth=3, out_dim=2, seed=0)
        >>> ntk_gram(net, torch.randn(5, 4)).shape
        torch.Size([10, 10])

    """
    _check_method(method)
    structure = None if method == "jacobian" else plain_structure(model)
    if structure is None:
        check_deterministic(model, what="NTK", per_example=True)
    # A plain stack's written-out pass runs no module: nothing to put back. Any other forward
    # may move buffers (a training-mode InstanceNorm or spectral_norm).
    with contextlib.nullcontext() if structure is not None else buffers_restored(model):
        param = _first_trainable(model, structure)
        x1 = _like(x1, param, model)
        x2 = None if x2 is None else _like(x2, param, model)
        _check_shapes(x1, x2)
        plain = plain_uses(structure, x1)
        if plain is not None and plain.outputs is not None:  # its code says what a trace would
            k, resolved, use_trace = plain.outputs, "structured", plain
        else:
            k = _check_inputs(model, x1)
            if structure is None:  # a plain stack's code reads nothing kept, couples nothing
                few = x1[:2] if x1.shape[0] > 1 or x2 is None else torch.cat([x1[:1], x2[:1]])
                trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
                refuse_kept_parameters(model, trainable, few, "NTK")  # no route sees such reads
                refuse_coupled_examples(model, few, "NTK")
            resolved, use_trace = _plan(model, method, x1[:1].clone())
        acc = param.dtype if accumulate is None else accumulate
        per_example = bytes_per_example(model, resolved, x1, k, use_trace)
        steps = None if plain is None or structure is None else structure.steps
        tf32 = tf32 and param.device.type == "cuda"
        if not tf32 and _one_pass(steps, x1, x2, k, _tile(memory_budget, per_example)):
            return plain_gram(steps, x1, trace, acc)  # type: ignore[arg-type]: steps is set
        compute = _gram_fn(
            model, resolved, trace, memory_budget, acc, k, per_example, plain is not None, steps
        )
        if not tf32:
            return compute(x1, x2)
        with allow_tf32():
            gram = compute(x1, x2)
        check_tf32(gram, compute, x1, x2, k, trace)
        return gram


@without_autocast
def ntk_method(model: nn.Module, x: Tensor, method: str = "auto") -> str:
    r"""Return the path :func:`ntk_gram` takes for ``model`` on inputs like ``x``.

    ``"structured"`` needs (i) every module holding trainable parameters to be a supported layer
    with its stock ``forward`` (see :func:`ntk_gram`), and (ii) in a forward on ``x[:1]`` traced
    by :func:`gdscope.probes._ntk_uses.uncovered_uses`, every tensor op reading a trainable
    parameter ``θ_ℓ`` to run in a call of its own layer ``ℓ``, once per call, so that
    ``∂f/∂θ_ℓ = α Σ_p Δ_p H_pᵀ`` holds with nothing left out. ``"auto"`` takes the structured
    path when both hold and ``"jacobian"`` otherwise.

    Args:
        model: the network.
        x: ``(n, ...)`` inputs (only the first example is run).
        method: ``"auto"``, ``"structured"`` or ``"jacobian"``.

    Returns:
        ``"structured"`` or ``"jacobian"``.

    Raises:
        ValueError: on an unknown method, or ``"structured"`` on a model it would get wrong.

    Example:
        >>> import torch.nn.functional as F
        >>> from gdscope.models import mlp
        >>> ntk_method(mlp(d_in=4, width=8, depth=2, seed=0), torch.randn(3, 4))
        'structured'
        >>> class Tied(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.enc = nn.Linear(4, 8)
        ...
        ...     def forward(self, x):
        ...         return F.linear(torch.tanh(self.enc(x)), self.enc.weight.t())
        >>> ntk_method(Tied(), torch.randn(3, 4))
        'jacobian'

    """
    _check_method(method)
    param = _first_trainable(model, None)
    x = _like(x[:1], param, model).clone()  # the caller's x stays as it is; indices stay integers
    if method != "jacobian" and plain_stack(model, x) is not None:
        return "structured"
    return _plan(model, method, x)[0]


def ntk_spectrum(
    model_or_gram: nn.Module | Tensor,
    x: Tensor | None = None,
    *,
    k: int | None = None,
    method: str = "auto",
) -> NTKSpectrum:
    r"""Return ``λ_min``, ``λ_max`` and ``κ = λ_max/λ_min`` of an NTK Gram, in float64.

    ``"dense"`` diagonalizes the whole Gram (``eigvalsh`` in float64); ``"lanczos"`` finds only
    ``λ_min`` and ``λ_max`` by Lanczos with full reorthogonalization (see :func:`gram_eigs`), to
    a residual of ``10⁻⁸`` relative; for ``k > 1`` eigenvalues at each end it diagonalizes too
    (one Krylov space cannot see a repeated eigenvalue's multiplicity: ``O(n³)``, 6 s at
    ``n = 3000`` on 2 cores). ``"auto"`` is dense up to ``n = 2048`` and Lanczos above. Eigenvalues govern the linear convergence rate of gradient
    descent in the kernel regime (Du et al. 2019; Jacot et al. 2018).

    Args:
        model_or_gram: a model (then ``x`` is required and the full Gram ``ntk_gram(model, x)``
            is used) or a symmetric ``(n, n)`` Gram.
        x: inputs when a model is given.
        k: eigenvalues wanted at each end for Lanczos (default 1).
        method: ``"auto"``, ``"dense"`` or ``"lanczos"``.

    Returns:
        An :class:`NTKSpectrum`.

    Raises:
        ValueError: on a model without ``x``, a non-square Gram, an unknown method or ``k < 1``.

    """
    if isinstance(model_or_gram, Tensor):
        gram = model_or_gram
    else:
        if x is None:
            raise ValueError("ntk_spectrum(model, x): x is required when a model is given")
        gram = ntk_gram(model_or_gram, x)
    return spectrum_of(gram, k=k, method=method)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def _plan(model: nn.Module, method: str, x: Tensor) -> tuple[str, UseTrace | None]:
    """Resolve the method; for the structured path also return the traced forward on ``x``."""
    if method == "jacobian":
        return method, None
    unsupported = unsupported_modules(model)
    if method == "structured" and unsupported:
        raise ValueError(
            f"method='structured' supports only (Scaled)Linear/(Scaled)Conv2d layers and TwoLayer; "
            f"these modules hold trainable parameters it cannot handle: {unsupported}. "
            "Use method='jacobian' (or 'auto')."
        )
    if unsupported:
        return "jacobian", None
    if closed_form_two_layer(model):  # its own closed form: nothing to trace
        return "structured", None
    with torch.inference_mode(False):  # also in a caller's: the trace reads version counters,
        use_trace = traced_forward(model, x.clone())  # which no inference tensor keeps
    uncovered = use_trace.problems
    if method == "structured" and uncovered:
        raise ValueError(
            "method='structured' would be wrong: its per-layer identity misses these reads of "
            f"trainable parameters: {uncovered}. Use method='jacobian' (or 'auto')."
        )
    return ("jacobian", None) if uncovered else ("structured", use_trace)


def _first_trainable(model: nn.Module, structure: PlainStack | None) -> Tensor:
    """Return the first trainable parameter (the inputs take its device and dtype)."""
    if structure is not None:  # the plain-stack walk has met it
        param = structure.first_trainable
    else:
        param = next((p for p in model.parameters() if p.requires_grad), None)
    if param is None:
        raise ValueError("the model has no trainable parameters, so its NTK is empty")
    return param


def _like(x: Tensor, param: Tensor, model: nn.Module) -> Tensor:
    """``x`` detached, on ``param``'s device in its dtype; an embedding's indices stay integers."""
    indices = not x.is_floating_point() and any(
        isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()
    )
    dtype = x.dtype if indices else param.dtype
    if x.requires_grad or x.dtype != dtype or x.device != param.device:
        return x.detach().to(param.device, dtype)
    return x


def _tile(budget: int, per_example: int) -> int:
    """Examples whose features fit ``budget`` bytes (at least one)."""
    return max(1, budget // max(1, per_example))


def _one_pass(
    steps: list[nn.Module] | None, x1: Tensor, x2: Tensor | None, k: int, tile: int
) -> bool:
    """Whether :func:`plain_gram` sums the Gram in one pass: a plain stack's small ``K(x1, x1)``.

    ``tile`` examples' features fit the memory budget; ``syrk`` pays only from
    :data:`~gdscope.probes._gram.SYRK_MIN_ROWS` rows on, below them the call's own work counts.
    """
    n = x1.shape[0]
    return steps is not None and x2 is None and n <= tile and not uses_syrk(n * k)


def _check_shapes(x1: Tensor, x2: Tensor | None) -> None:
    if x1.ndim < 1 or x1.shape[0] == 0:
        raise ValueError(f"x1 must have shape (n, ...) with n >= 1, got {tuple(x1.shape)}")
    if x2 is not None and (x2.ndim < 1 or x2.shape[0] == 0 or x2.shape[1:] != x1.shape[1:]):
        raise ValueError(
            f"x2 must have shape (n2, {', '.join(map(str, x1.shape[1:]))}) like x1 "
            f"{tuple(x1.shape)}, got {tuple(x2.shape)}"
        )


def _check_inputs(model: nn.Module, x1: Tensor) -> int:
    """Validate ``x1`` by one forward on a single example; return the number of outputs ``k``.

    A non-finite output is refused: backward passes mask some (a frozen ``nan`` weight behind
    a dead ReLU unit gives finite derivatives of a ``nan`` output), so the Gram would not show it.
    """
    refuse_inference_model(model, "ntk_gram")
    try:
        with torch.no_grad():
            out = model(x1[:1].clone())  # a copy: an in-place first module would edit x1
    except RuntimeError as err:
        raise ValueError(f"the model rejected inputs of shape {tuple(x1.shape)}: {err}") from err
    if not bool(out.isfinite().all()):
        raise ValueError(
            "NTK: the model's output on the first input is not finite (a diverged model, or a "
            "non-finite frozen weight): its tangent kernel is undefined; check the weights"
        )
    return out.reshape(1, -1).shape[1]


def _gram_fn(
    model: nn.Module,
    method: str,
    trace: bool,
    budget: int,
    acc: torch.dtype,
    k: int,
    per_example: int,
    plain: bool,
    steps: list[nn.Module] | None,
) -> Callable[[Tensor, Tensor | None], Tensor]:
    features = features_fn(model, method, plain, steps, k)

    def pair(f1: object, f2: object) -> Tensor:
        if method == "jacobian":
            return jac.contract(f1, f2, trace, acc)  # type: ignore[arg-type]
        return st.features_gram(f1, f2, trace, budget, acc)  # type: ignore[arg-type]

    def compute(x1: Tensor, x2: Tensor | None) -> Tensor:
        tile = _tile(budget, per_example)
        if _one_pass(steps, x1, x2, k, tile):
            return plain_gram(steps, x1, trace, acc)  # type: ignore[arg-type]: steps is set
        n_total = x1.shape[0] + (0 if x2 is None else x2.shape[0])
        cache = n_total * per_example <= budget
        syrk = x2 is None and uses_syrk(min(tile, x1.shape[0]) * k)  # probes/_gram.py
        with blas_threads_like_torch() if syrk else contextlib.nullcontext():
            return tiled(x1, x2, tile, features, pair, trace, k, acc, cache)

    return compute
