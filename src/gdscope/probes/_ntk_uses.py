r"""Which models the structured NTK covers: supported layers, and a traced forward of the reads.

The structured identity ``∂f/∂θ_ℓ = α Σ_p Δ_p H_pᵀ`` (:mod:`gdscope.probes._ntk_structured`;
Novak, Sohl-Dickstein & Schoenholz 2022) holds for a parameter only when its own layer's stock
``forward`` is the one op that reads it, once per call. :func:`unsupported_modules` checks the
module types; :func:`traced_forward` runs the model once on two copies of one example under a
``TorchFunctionMode`` that sees every op and reports any other read, and, in the same pass, counts
the per-example size of the features the structured path will hold (layer inputs and outputs), so
that :func:`gdscope.probes.ntk_gram` plans its tiles without a forward and backward of its own.
:func:`plain_stack` answers the same without running the model for the stacks whose code says it
(a stock ``nn.Sequential`` or gdscope ``MLP`` of linear layers and activations, with no hooks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from gdscope.models.layers import ScaledConv2d, ScaledLinear
from gdscope.models.mlp import MLP

from ._ntk_axis import copies_of_one, off_axis_0
from ._ntk_shapes import linear_sizes_agree, sizes_agree
from ._stock import closed_form_two_layer, global_hooks, hookless, is_stock, stock_layer

LINEAR_TYPES = (ScaledLinear, nn.Linear)
CONV_TYPES = (ScaledConv2d, nn.Conv2d)
_NESTED = (list, tuple, dict)


def unsupported_modules(model: nn.Module) -> list[str]:
    """Return the names of modules holding trainable parameters that the structured path cannot handle.

    A global module hook (``register_module_forward_hook`` and kin) runs inside every layer's
    call, where the structured identity assumes the stock forward alone: then every module.
    """
    if global_hooks():
        return ["<every module> (global module hooks are registered)"]
    if closed_form_two_layer(model):
        return []
    bad, owners = [], {}
    for name, module in model.named_modules():
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        tied = [
            owners[id(p)]
            for p in module.parameters(recurse=False)
            if p.requires_grad and owners.setdefault(id(p), name) != name
        ]
        if tied:  # one Gram per module would miss the cross terms between the uses
            bad.append(f"{name or '<root>'} (shares a parameter with {tied[0] or '<root>'})")
            continue
        if not stock_layer(module):  # a forward, _conv_forward or _add_bias of its own
            bad.append(f"{name or '<root>'} ({type(module).__name__}, own code)")
            continue
        own = {n for n, p in module.named_parameters(recurse=False) if p.requires_grad}
        if not is_stock(module) or not own <= {"weight", "bias"}:  # e.g. hook-based weight_norm
            bad.append(
                f"{name or '<root>'} ({type(module).__name__} with hooks or other parameters)"
            )
            continue
        if not sizes_agree(module):  # a weight put in whose shape its attributes do not say
            bad.append(f"{name or '<root>'} ({type(module).__name__}, stale size attributes)")
            continue
        if isinstance(module, LINEAR_TYPES):
            continue
        if isinstance(module, ScaledConv2d):
            continue
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
            continue
        bad.append(f"{name or '<root>'} ({type(module).__name__})")
    return bad


@dataclass(frozen=True)
class UseTrace:
    """What one traced forward found.

    Attributes:
        problems: reads of trainable parameters the structured identity does not cover.
        input_numel: entries of the layer inputs (conv: patches) the structured path holds per
            example, summed over the calls of layers with a trainable weight.
        output_numel: entries of the outputs of layers with trainable parameters per example
            (the signals ``Δ`` hold ``k`` times as many).
        outputs: the model's outputs per example, where :func:`plain_stack` read it off the
            readout (``None`` after a traced forward).

    """

    problems: list[str]
    input_numel: int
    output_numel: int
    outputs: int | None = None


class _UseTracer(TorchFunctionMode):
    """Record every tensor-valued op reading a trainable parameter, and which module call ran it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.owner = {
            id(p): module
            for module in model.modules()
            for p in module.parameters(recurse=False)
            if p.requires_grad
        }
        self.name = {id(p): name for name, p in model.named_parameters()}
        self.module_name = {id(m): name or "<root>" for name, m in model.named_modules()}
        self.stack: list[tuple[nn.Module, int]] = []
        self.calls = 0
        self.read: set[tuple[int, int]] = set()  # (module call, parameter) pairs seen
        self.problems: list[str] = []
        self.inputs: list[tuple[str, Tensor, int]] = []  # (layer, its input, the input's version)
        self.input_numel = 0
        self.output_numel = 0

    def enter(self, module: nn.Module, args: object) -> None:
        self.calls += 1
        self.stack.append((module, self.calls))

    def leave(self, module: nn.Module, args: tuple[object, ...], output: object) -> None:
        self.stack.pop()
        trainable = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not trainable or not isinstance(output, Tensor):
            return
        given = args[0] if args and isinstance(args[0], Tensor) else None
        if given is None:  # the structured path reads a layer's input as its first argument
            self.problems.append(
                f"{self.module_name[id(module)]} is called without its input as the first "
                "positional argument (a keyword input)"
            )
            return
        self.inputs.append((self.module_name[id(module)], given, given._version))
        rows = {output.shape[0] if output.ndim else 0, given.shape[0]}
        if rows != {2}:  # traced on two copies of one example: they are not along axis 0 here
            self.problems.append(
                f"{self.module_name[id(module)]} sees {sorted(rows)} rows on axis 0 for two "
                "examples (the examples are not along axis 0 of its input and output)"
            )
        elif not (
            copies_of_one(given) and copies_of_one(output)
        ):  # a sequence-first view of two tokens
            self.problems.append(
                f"{self.module_name[id(module)]} sees two rows on axis 0 that differ for two "
                "copies of one example (the examples are not along axis 0 of its input and output)"
            )
        self.output_numel += output.numel() // 2
        weight = getattr(module, "weight", None)
        if not (isinstance(weight, Tensor) and weight.requires_grad):
            return
        if isinstance(module, CONV_TYPES) and output.ndim >= 2:  # shapes only: no traced op
            positions = math.prod(output.shape[2:])  # output positions of the one example
            self.input_numel += positions * math.prod(weight.shape[1:])  # C_in·kh·kw each
        elif args and isinstance(args[0], Tensor):
            self.input_numel += args[0].numel() // 2

    def __torch_function__(
        self,
        func: Callable[..., object],
        types: object,
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        """Run ``func``; record it if it reads trainable parameters and yields a tensor."""
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, Tensor) or any(isinstance(t, Tensor) for t in tree_leaves(out)):
            flat = (*args, *kwargs.values())  # not .shape, .dim(), ...: those yield no tensor
            if any(isinstance(a, _NESTED) for a in flat):
                flat = tree_leaves((args, kwargs))
            owner = self.owner
            read = {id(t) for t in flat if isinstance(t, Tensor) and id(t) in owner}
            for pid in sorted(read):
                self._record(pid, getattr(func, "__name__", str(func)))
        return out

    def _record(self, pid: int, op: str) -> None:
        module, call = self.stack[-1] if self.stack else (None, 0)
        where = "outside any module" if module is None else f"in {self.module_name[id(module)]}"
        if module is not self.owner[pid]:
            self.problems.append(f"{self.name[pid]} read by {op} {where}, outside its own layer")
        elif (call, pid) in self.read:
            self.problems.append(f"{self.name[pid]} read twice in one call of its layer ({op})")
        self.read.add((call, pid))


def traced_forward(model: nn.Module, x: Tensor) -> UseTrace:
    r"""Run the model once (no grad) on two copies of ``x``'s first example; report its reads.

    Runs under a ``TorchFunctionMode`` that sees every op, with forward hooks keeping the stack of
    running modules. A trainable parameter is covered when every tensor-valued op reading it runs
    directly in a call of its own layer, once per call, on an input and an output whose axis 0
    holds the examples (two rows here: a layer run on a sequence-first view, on examples folded
    with their tokens, or on a constant broadcast onto the batch is reported; one example would
    not tell a sequence of length 1 or a constant from the batch): then ``∂f/∂θ`` is exactly the
    ``Δ Hᵀ`` (``Σ Δ``) of that layer's calls. A tied decoder ``F.linear(h, enc.weight.t())``, a
    weight read by the parent, a bypassed layer ``forward`` or a hook reading the weight again is
    reported. The trace follows that example's control flow; the sizes are per example.
    """
    tracer = _UseTracer(model)
    modules = list(model.modules())
    handles = [m.register_forward_pre_hook(tracer.enter, prepend=True) for m in modules]
    handles += [m.register_forward_hook(tracer.leave, always_call=True) for m in modules]
    try:
        with torch.no_grad(), tracer:
            model(torch.cat([x[:1], x[:1]]))
    finally:
        for handle in handles:
            handle.remove()
    for name, given, version in tracer.inputs:  # the structured path keeps them by reference
        if given._version != version:
            tracer.problems.append(f"the input of {name} is written in place after {name} reads it")
    tracer.problems += off_axis_0(model, x, tracer.module_name)
    problems = list(dict.fromkeys(tracer.problems))
    return UseTrace(problems, tracer.input_numel, tracer.output_numel)


def uncovered_uses(model: nn.Module, x: Tensor) -> list[str]:
    r"""Return the reads of trainable parameters that the structured identity does not cover.

    See :func:`traced_forward` (``TwoLayer``, whose NTK has its own closed form, has none).
    """
    if closed_form_two_layer(model):
        return []
    return traced_forward(model, x).problems


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.Softplus, nn.Sigmoid, nn.SiLU, nn.Identity)
"""Parameter-free modules whose stock forward reads nothing but its input."""


@dataclass(frozen=True)
class PlainStack:
    """What :func:`plain_structure` reads off a plain stack's code.

    Attributes:
        layers: its linear layers, in the order its forward calls them.
        steps: the layers and activations in that order (``nn.Identity`` kept), or ``None`` for
            a residual ``MLP``, whose skips are not a chain of steps.
        first_trainable: the first parameter that requires grad, in ``parameters()`` order
            (``None``: none does).

    """

    layers: list[nn.Linear | ScaledLinear]
    steps: list[nn.Module] | None
    first_trainable: nn.Parameter | None


def plain_stack(model: nn.Module, x: Tensor) -> UseTrace | None:
    r"""Return the :class:`UseTrace` of a plain stack without running it, or ``None``.

    A plain stack is an ``nn.Sequential`` (nested ones too) of ``nn.Linear`` /
    ``ScaledLinear`` layers and stock activations, or a gdscope ``MLP`` (whose ``forward``
    calls each layer once, in order), every module of exactly its library type with its stock
    ``forward``, each module instance and each parameter once in the tree (nothing tied), no
    hook on any module and none registered globally, all parameters of one dtype, each layer's
    weight and bias of the shapes its ``in_features`` / ``out_features`` say, on 2-D inputs whose
    width is the first layer's. Its code then says what :func:`traced_forward` would find: every
    parameter read only by its own layer, once per call (so no problem), ``Σ d_in`` layer-input
    and ``Σ d_out`` output entries per example, and ``k`` = the last layer's ``d_out``. Anything
    else returns ``None``: trace it.

    >>> plain_stack(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), torch.ones(4, 3))
    UseTrace(problems=[], input_numel=8, output_numel=7, outputs=2)
    >>> plain_stack(nn.Sequential(nn.Linear(3, 5)), torch.ones(4, 7)) is None  # wrong width
    True

    """
    return plain_uses(plain_structure(model), x)


def plain_uses(stack: PlainStack | None, x: Tensor) -> UseTrace | None:
    """:func:`plain_stack` of a stack :func:`plain_structure` has read (``None``: not plain)."""
    if (
        stack is None
        or type(x) is not Tensor
        or x.ndim != 2
        or x.shape[1] != stack.layers[0].in_features
        or global_hooks()
    ):
        return None
    inputs = outputs = 0
    for layer in stack.layers:  # a plain stack's: weight and bias are its own (no __getattr__)
        weight, bias = layer._parameters["weight"], layer._parameters["bias"]
        if weight is not None and weight.requires_grad:
            inputs += layer.in_features
            outputs += layer.out_features
        elif bias is not None and bias.requires_grad:
            outputs += layer.out_features
    return UseTrace([], inputs, outputs, outputs=stack.layers[-1].out_features)


def plain_structure(model: nn.Module) -> PlainStack | None:
    """Return a plain stack's :class:`PlainStack` (its code, :func:`plain_stack`), or ``None``.

    One walk over the tree (depth first, as ``modules()`` and nested Sequentials call them),
    every module and parameter counted as often as it occurs.
    """
    containers = (MLP, nn.ModuleList) if type(model) is MLP else (nn.Sequential,)
    seen: set[int] = set()
    params: set[int] = set()
    first: nn.Parameter | None = None
    dtype: torch.dtype | None = None
    steps: list[nn.Module] = []
    layers: list[nn.Linear | ScaledLinear] = []
    stack = [model]
    while stack:  # depth first, each module's parameters in order: parameters()'s order
        module = stack.pop()
        kind = type(module)
        if id(module) in seen or not hookless(module):
            return None
        seen.add(id(module))
        for p in module._parameters.values():
            if p is None:
                continue
            if type(p) is not nn.Parameter or id(p) in params:
                return None  # a tensor subclass, or shared by two modules (tied): terms cross
            if dtype is None:
                dtype = p.dtype
            elif p.dtype != dtype:
                return None  # mixed dtypes: the model's own forward is to say what it does
            params.add(id(p))
            if first is None and p.requires_grad:
                first = p
            elif not p.requires_grad and not bool(p.isfinite().all()):
                return None  # its written-out pass would mask it: the forward is to show it
            if p.is_inference():
                return None  # no graph reaches it: refused by the forward's check
        if kind in containers:
            stack += [c for c in reversed(module._modules.values()) if c is not None]
            continue
        if module._modules or (kind not in _ELEMENTWISE and kind not in LINEAR_TYPES):
            return None
        if kind in LINEAR_TYPES:
            if not _own_weights(module):
                return None
            layers.append(module)  # pyright: ignore[reportArgumentType]: a linear layer
        steps.append(module)
    return _ordered(model, layers, steps, first)


def _ordered(
    model: nn.Module,
    layers: list[nn.Linear | ScaledLinear],
    steps: list[nn.Module],
    first: nn.Parameter | None,
) -> PlainStack | None:
    """Return the walk's layers and steps in call order (a Sequential's: the walk's; an MLP's: its own).

    ``None`` where two layers in a row do not fit (the model's own forward is to say how).
    """
    if type(model) is MLP:
        if type(model.activation) not in _ELEMENTWISE or type(model.layers) is not nn.ModuleList:
            return None
        layers = list(model.layers)  # pyright: ignore[reportAssignmentType]
        if not layers or any(type(m) not in LINEAR_TYPES for m in layers):
            return None
        if model.residual:
            return PlainStack(layers, None, first) if _chained(layers) else None
        *body, readout = layers
        steps = [s for layer in body for s in (layer, model.activation)] + [readout]
    elif type(model) is not nn.Sequential or not layers:
        return None
    return PlainStack(layers, steps, first) if _chained(layers) else None


def _chained(layers: list[nn.Linear | ScaledLinear]) -> bool:
    """Whether each layer's output width is the next one's input width."""
    return all(a.out_features == b.in_features for a, b in pairwise(layers))


def _own_weights(layer: nn.Module) -> bool:
    """Whether a layer's weight and bias are its parameters (not a buffer), shaped as it says.

    A weight put into a layer without its size attributes (:func:`sizes_agree`) is not plain.
    """
    own = layer._parameters
    if own.get("weight") is None or "bias" not in own:
        return False
    return linear_sizes_agree(layer)  # pyright: ignore[reportArgumentType]: a linear layer
