r"""Fully connected networks under a chosen parameterization.

.. math::

    h_1 = σ(L_1 x), \quad h_{l+1} = σ(L_{l+1} h_l) \;\text{(plain)} \;\text{or}\;
    h_{l+1} = h_l + β\, L_{l+1} σ(h_l) \;\text{(residual)}, \quad f(x) = L_D h_{D-1},

where every ``L_l`` is a :class:`~gdscope.models.layers.ScaledLinear` whose initialization,
forward multiplier and learning-rate multipliers come from the parameterization
(``gdscope.models.parameterization``). Residual branches follow the ``1/√L`` scaling of
Hayou et al. (2021), "Stable ResNet", and Allen-Zhu, Li & Song (2019). The branch ends in a
linear layer (pre-activation, He et al. 2016), so it has mean zero over the random weights and the
stream's scale stays bounded in depth; a branch ``β σ(L h)`` would add a positive mean per block
and grow the stream (and the NTK) with depth.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdscope import _checks as check

from .activations import ACTIVATIONS, activation_gain, get_activation
from .layers import ScaledLinear
from .parameterization import Parameterization, get_parameterization

INITS: tuple[str, ...] = ("random", "identical")
READOUT_INITS: tuple[str, ...] = ("default", "zero")
TRAINED: tuple[str, ...] = ("all", "hidden")
_IDENTICAL_TIES = {"input": "rows", "hidden": "all", "output": "columns"}


class MLP(nn.Module):
    """A stack of ``ScaledLinear`` layers; build it with :func:`mlp`.

    Attributes:
        layers: ``ModuleList`` of the ``depth`` layers, input first, readout last.
        activation: the activation module.
        residual: whether hidden layers are residual blocks.
        branch_scale: ``β`` of the residual blocks (``1.0`` when ``residual`` is false).
        random_init: whether every weight and bias was drawn i.i.d. from its layer's ``spec``
            (``init="random"``, ``readout_init="default"``), the distribution whose
            infinite-width kernels :func:`gdscope.probes.mlp_kernels` computes (as built:
            weights rescaled or overwritten afterwards are not seen).

    """

    def __init__(
        self,
        layers: list[ScaledLinear],
        activation: nn.Module,
        residual: bool,
        branch_scale: float,
        random_init: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activation = activation
        self.residual = residual
        self.branch_scale = branch_scale
        self.random_init = random_init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, d_in)`` to outputs ``(n, out_dim)``."""
        *body, readout = self.layers
        h = x
        for index, layer in enumerate(body):
            if self.residual and index > 0:
                h = h + self.branch_scale * layer(self.activation(h))
            else:
                h = self.activation(layer(h))
        return readout(h)


def mlp(
    d_in: int,
    width: int,
    *,
    depth: int = 3,
    out_dim: int = 1,
    activation: str = "relu",
    bias: bool = True,
    parameterization: str | Parameterization = "standard",
    residual: bool = False,
    branch_scale: float | None = None,
    init_scale: float = 1.0,
    init: str = "random",
    base_width: int = 64,
    readout_init: str = "default",
    trained: str = "all",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> MLP:
    """Build a fully connected network ``d_in → width → … → width → out_dim``.

    The sizes come first; every option is a keyword, named as in :func:`~gdscope.models.cnn`
    and :func:`~gdscope.models.resnet` (``depth``, ``out_dim``, ``activation``, …).

    Args:
        d_in: input dimension.
        width: hidden width ``m``; ``r = width / base_width`` enters μP and mean-field.
        depth: number of weight layers (``1`` is the linear model ``d_in → out_dim``, whose
            single layer takes the ``"output"`` rule with ``r = 1``: it has no hidden width);
            default 3, as ``model.depth`` of a trial.
        out_dim: output dimension.
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        bias: whether layers have biases.
        parameterization: ``standard``, ``ntk``, ``mup``, ``meanfield`` or a ``Parameterization``.
        residual: hidden layers become ``h ← h + β L σ(h)`` (zero-mean branch); input and readout
            layers stay plain.
        branch_scale: ``β``; default ``1/√(depth − 2)`` (one over the root of the number of
            residual blocks). Ignored unless ``residual``.
        init_scale: factor on every weight's init std. The activation gain (``√2`` for ReLU) goes
            to the input and hidden layers, in their init std or (``ntk``) their forward
            multiplier, never to the readout (:mod:`gdscope.models.parameterization`).
        init: ``"random"``, or ``"identical"``: every hidden unit of a layer starts equal and
            (S)GD can never break the symmetry, because every unit then receives the same
            gradient: the input layer copies one random row (and bias) to all units, each
            hidden layer is filled with one random scalar (std ``σ_W/√width``, so that its
            preactivation keeps the variance of random init; bias one scalar) and the readout
            copies one random column to all hidden units. A no-op for ``depth == 1``.
        base_width: width at which μP equals standard.
        readout_init: ``"default"`` (the parameterization's), or ``"zero"``: readout weight and
            bias start at 0, as microsoft/mup advises for μP (Yang et al. 2021, "Tensor Programs
            V", appendix D.2); the output is 0 at init and the hidden layers move from step 2.
        trained: ``"all"``, or ``"hidden"``: the input and readout layers stay at their random
            init (``requires_grad=False``) and only the hidden layers train, the architecture of
            Allen-Zhu, Li & Song (2019) (with ``parameterization="standard"`` and ReLU, hidden
            weights are ``N(0, 2/m)`` as there; needs ``depth ≥ 3``).
        seed: seed of the generator that draws all parameters (the global RNG is not used).
        dtype: floating dtype of the parameters.
        device: device of the parameters.

    Returns:
        An :class:`MLP` mapping ``(n, d_in)`` to ``(n, out_dim)``.

    Raises:
        ValueError: on a non-positive size, an unknown activation, parameterization or init.

    Example:
        >>> model = mlp(d_in=16, width=256, depth=3, parameterization="ntk", seed=0)
        >>> model(torch.randn(5, 16)).shape
        torch.Size([5, 1])

    """
    d_in = check.positive_int("d_in", d_in)
    width = check.positive_int("width", width)
    depth = check.positive_int("depth", depth)
    out_dim = check.positive_int("out_dim", out_dim)
    base_width = check.positive_int("base_width", base_width)
    check.one_of("activation", activation, ACTIVATIONS)
    check.one_of("init", init, INITS)
    init_scale = check.positive_float("init_scale", init_scale)
    check.one_of("readout_init", readout_init, READOUT_INITS)
    check.one_of("trained", trained, TRAINED)
    if trained == "hidden" and depth < 3:
        raise ValueError(
            f"trained = 'hidden' needs depth ≥ 3 (a hidden layer to train), got depth {depth}"
        )
    param = get_parameterization(parameterization)
    dtype = check.floating_dtype(dtype)
    device = check.device(device)
    generator = check.generator(seed)
    blocks = max(depth - 2, 1)
    given = branch_scale is not None and residual  # ignored without residual blocks
    beta = check.real("branch_scale", branch_scale) if given else 1.0 / math.sqrt(blocks)

    ratio = width / base_width if depth > 1 else 1.0
    sizes = [d_in] + [width] * (depth - 1) + [out_dim]
    roles = ["input"] + ["hidden"] * (depth - 2) + ["output"] if depth > 1 else ["output"]
    gain = activation_gain(activation)
    identical = init == "identical" and depth > 1
    layers = []
    for fan_in, fan_out, role in zip(sizes[:-1], sizes[1:], roles, strict=True):
        spec = param.layer(
            role, fan_in, ratio, activation_gain=gain, init_scale=init_scale, base_width=base_width
        )
        tie = _IDENTICAL_TIES[role] if identical else "none"
        layers.append(
            ScaledLinear(
                fan_in,
                fan_out,
                spec,
                bias=bias,
                tie=tie,
                generator=generator,
                dtype=dtype,
                device=device,
            )
        )
    if readout_init == "zero":
        with torch.no_grad():
            for tensor in layers[-1].parameters():
                tensor.zero_()
    if trained == "hidden":
        layers[0].requires_grad_(False)
        layers[-1].requires_grad_(False)
    random_init = not identical and readout_init == "default"
    return MLP(
        layers, get_activation(activation), bool(residual), beta if residual else 1.0, random_init
    )
