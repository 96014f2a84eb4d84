r"""Parameterizations (SP, NTK, μP, mean-field) held as data.

A parameterization says, for a layer of a given *role* (``"input"``, ``"hidden"``,
``"output"``), fan-in ``n`` and width ratio ``r = width / base_width``, how the stored
weight ``W`` and bias ``b`` are initialized, by which constants they are multiplied in the
forward pass and how their learning rates are scaled:

.. math::

    y = \alpha\, x W^\top + \alpha_b\, b, \qquad
    W_{ij} \sim \mathcal N(0, \sigma_W^2), \quad b_i \sim \mathcal N(0, \sigma_b^2), \qquad
    \eta_W = \eta\, c_W, \quad \eta_b = \eta\, c_b .

Every quantity is a monomial ``s · a^k · n^p · r^c`` whose exponents are stored in a
:class:`RoleRule`: ``s = init_scale`` always multiplies ``σ_W``; ``a`` is the activation gain
(``√2`` for ReLU, ``1`` otherwise), which the input and hidden layers take, in ``σ_W`` or in
``α`` as the table says; the output layer never takes the activation gain.

================  ==============  ===============  ===================  ==================
parameterization  weight std σ_W  multiplier α     lr c_W (in/hid/out)  bias σ_b, α_b, c_b
================  ==============  ===============  ===================  ==================
standard          s a / √n        1                1 / 1 / 1            0, 1, 1
ntk               s               a / √n           1 / 1 / 1            1, β, 1
mup               s a / √n (out:  1 (out: 1/r)     r / 1 / r            0, 1, r (out: 1)
                  s √r / √n)
meanfield         s a             1/√n (out: 1/n)  w / w / w            0, 1, w
================  ==============  ===============  ===================  ==================

(``a = 1`` on the output layer; ``w = r · base_width`` is the width.) The learning-rate
multipliers in this table are those of SGD-like optimizers, whose update is linear in the
gradient (GD, heavy ball, Nesterov, proximal GD, FISTA, subgradient). Adaptive optimizers
divide the gradient entrywise by a running RMS (Adam, AdamW, RMSProp), so every entry of their
update is ``Θ(η)`` whatever the gradient's scale, and take other multipliers
(:attr:`LayerSpec.adaptive_lr_weight`, :attr:`LayerSpec.adaptive_lr_bias`;
:func:`gdscope.optim.make_optimizer` picks the rule from the optimizer's name):

================  ============================  ============
parameterization  adaptive lr c_W (in/hid/out)  adaptive c_b
================  ============================  ============
standard, ntk     1 / 1 / 1                     1
mup               1 / 1/r / 1                   1
meanfield         none: refused                 none
================  ============================  ============

* **standard**: PyTorch/He-style fan-in initialization (He et al. 2015).
* **ntk** — *the NTK convention of gdscope, stated here once*: Jacot, Gabriel & Hongler (2018),
  "Neural Tangent Kernel", eq. (1), with the activation gain in the forward multiplier as in
  neural-tangents' ``stax.Dense(parameterization="ntk")`` (Novak et al. 2020): the stored
  weights are ``N(0, s²)`` (``N(0, 1)`` at the default ``init_scale = 1``), the biases
  ``N(0, 1)``, and a layer computes ``y = (a/√n) x Wᵀ + β b`` with ``a = √2`` for ReLU on the
  input and hidden layers (``1`` otherwise and on the readout) and ``β = bias_scale`` (0.1 as
  in Jacot et al.). At ``s = 1`` this is stax's ``Dense(W_std=a, b_std=β)`` layer by layer, so
  the empirical NTK (gradients of the stored parameters) converges as the width grows to
  neural-tangents' analytic kernel with ``W_std = a`` — Jacot et al.'s where ``a = 1``, and for
  ReLU Arora et al. (2019)'s ``c_σ = 2`` — which
  :func:`gdscope.probes.infinite_width.ntk_infinite` computes. Revision 2 (2026-12, issue 14):
  before it the gain sat in the init std (``W ~ N(0, s²a²)``, ``α = 1/√n``), which computes the
  same function at initialization but a weight gradient ``1/a`` times smaller, so the ReLU
  kernel was neither Jacot's nor stax's; a model the revision changes (some layer with
  ``a ≠ 1``) carries it in its trial hash (:func:`hash_revision`).
* **mup**: Yang & Hu (2021), "Tensor Programs IV", Table 3 (SGD), written relative to a base
  width as in the ``mup`` package (so μP equals SP at ``width == base_width``): readout
  multiplier ``1/r`` on a readout weight of std ``√r/√n`` (``mup.set_base_shapes`` rescales a
  ``MuReadout`` weight by ``√width_mult``), so the effective readout std is ``∝ 1/n`` as in
  TP-IV Table 3 and the output at initialization falls like ``1/√r``. Under SGD the learning
  rates of vector-like parameters (input weights, biases of width-sized layers, output weights)
  are multiplied by ``r`` (``mup.MuSGD``). Under Adam-like optimizers the rule is that of Yang
  et al. (2022), "Tensor Programs V" (μTransfer), Table 3 with the readout multiplier of its
  Table 8, as ``mup.MuAdam`` implements it: the update of an adaptive optimizer is ``Θ(η)``
  per entry whatever the gradient's scale, so the matrix-like hidden weights (two width
  dimensions) take ``c_W = 1/r`` — their update ``ΔW x`` sums ``n`` aligned terms — and every
  other parameter ``c = 1`` (the readout's ``1/r`` forward multiplier already makes its
  effective update ``Θ(1/n)`` per entry). Applying the SGD multipliers to Adam instead makes
  the hidden features' and the readout's updates grow like ``r`` (review 16, c10).
* **meanfield**: the convention gdscope uses is weights ``N(0, s²a²)``, forward multipliers
  ``1/√n`` for input/hidden layers and ``1/n`` for the output layer, so that a two-layer
  network is ``f(x) = (1/m) Σ_r a_r σ(w_rᵀx / √d)`` (Mei, Montanari & Nguyen 2018; Chizat &
  Bach 2018), and the learning rate of every parameter multiplied by ``width = r·base_width``
  so that gradient flow runs on a width-independent time scale. This is a rule for SGD-like
  optimizers only: an adaptive optimizer's step does not scale with the gradient, so those
  multipliers would grow its step with the width, and gdscope defines no mean-field rule for
  it — :func:`gdscope.optim.make_optimizer` refuses the combination (use ``mup``).

Under these rules the output scale at initialization is width independent for ``standard``
and ``ntk``, falls like ``1/√r`` for ``mup`` and like ``1/√width`` for ``meanfield``.

Example:
    >>> spec = NTK.layer("hidden", fan_in=100, activation_gain=2**0.5)
    >>> spec.init_std, round(spec.multiplier * 100**0.5, 12)  # stax Dense(W_std=√2)
    (1.0, 1.414213562373)

"""

from __future__ import annotations

import functools
from dataclasses import dataclass

ROLES: tuple[str, ...] = ("input", "hidden", "output")


@dataclass(frozen=True)
class RoleRule:
    """Scaling exponents of one layer role; every quantity is ``n**a * r**c`` (n = fan-in).

    Attributes:
        std_fan_in_power: ``σ_W = s · a_σ · n**std_fan_in_power · r**std_ratio_power``
            (``s = init_scale``; ``a_σ`` the activation gain when it goes to the std, else 1).
        std_ratio_power: exponent of ``r`` in ``σ_W``.
        activation_gain: whether the layer takes the activation gain ``a`` at all.
        gain_in_multiplier: where ``a`` goes: ``False``, the init std ``σ_W``; ``True``, the
            forward multiplier ``α`` (the ``ntk`` convention, as neural-tangents' ``W_std``).
        multiplier_fan_in_power: ``α = a_α · n**multiplier_fan_in_power · r**…``.
        multiplier_ratio_power: exponent of ``r`` in ``α``.
        lr_weight_ratio_power: exponent of ``r`` in the weight learning-rate multiplier.
        lr_bias_ratio_power: exponent of ``r`` in the bias learning-rate multiplier.
        adaptive_lr_weight_ratio_power: exponent of ``r`` in the weight learning-rate
            multiplier of adaptive optimizers (Adam, AdamW, RMSProp); ``None``: the
            parameterization has no rule for them.
        adaptive_lr_bias_ratio_power: the same for the bias.
        bias_std: ``σ_b``.
        bias_multiplier: ``α_b``; ``None`` means the parameterization's ``bias_scale``.

    """

    std_fan_in_power: float
    activation_gain: bool
    gain_in_multiplier: bool = False
    std_ratio_power: float = 0.0
    multiplier_fan_in_power: float = 0.0
    multiplier_ratio_power: float = 0.0
    lr_weight_ratio_power: float = 0.0
    lr_bias_ratio_power: float = 0.0
    adaptive_lr_weight_ratio_power: float | None = 0.0
    adaptive_lr_bias_ratio_power: float | None = 0.0
    bias_std: float = 0.0
    bias_multiplier: float | None = 1.0


@dataclass(frozen=True)
class LayerSpec:
    """Concrete numbers for one layer, as produced by :meth:`Parameterization.layer`.

    ``lr_weight``, ``lr_bias`` are the learning-rate multipliers of SGD-like optimizers (the
    layer's ``lr_multipliers``); ``adaptive_lr_weight``, ``adaptive_lr_bias`` those of adaptive
    ones (Adam, AdamW, RMSProp), ``None`` where ``parameterization`` has no rule for them.
    """

    init_std: float
    multiplier: float
    lr_weight: float
    lr_bias: float
    bias_std: float
    bias_multiplier: float
    adaptive_lr_weight: float | None = 1.0
    adaptive_lr_bias: float | None = 1.0
    parameterization: str = ""


@dataclass(frozen=True)
class Parameterization:
    """A parameterization as data: one :class:`RoleRule` per layer role.

    Attributes:
        name: registry name.
        input: rule of the first layer (fan-in = data dimension).
        hidden: rule of width-to-width layers.
        output: rule of the readout layer.
        bias_scale: ``β``, the bias multiplier of rules whose ``bias_multiplier`` is ``None``.
        lr_base_width_power: learning-rate multipliers are also multiplied by
            ``base_width**lr_base_width_power`` (1 for mean-field: ``r · base_width = width``).
        revision: the convention's revision, raised when what a model under it computes
            changed after results were stored (``ntk``: 2, see the module docstring).

    """

    name: str
    input: RoleRule
    hidden: RoleRule
    output: RoleRule
    bias_scale: float = 0.1
    lr_base_width_power: float = 0.0
    revision: int = 1

    @property
    def adaptive_rule(self) -> bool:
        """Whether every role has learning-rate multipliers for adaptive optimizers."""
        return all(
            rule.adaptive_lr_weight_ratio_power is not None
            and rule.adaptive_lr_bias_ratio_power is not None
            for rule in (self.input, self.hidden, self.output)
        )

    def rule(self, role: str) -> RoleRule:
        """Return the rule for ``role`` (one of ``ROLES``)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
        return getattr(self, role)

    def layer(
        self,
        role: str,
        fan_in: int,
        width_ratio: float = 1.0,
        *,
        activation_gain: float = 1.0,
        init_scale: float = 1.0,
        base_width: int = 64,
    ) -> LayerSpec:
        """Return init std, multipliers and lr multipliers of one layer.

        Args:
            role: ``"input"``, ``"hidden"`` or ``"output"``.
            fan_in: number of inputs of one unit (``in_channels · k²`` for a convolution).
            width_ratio: ``r = width / base_width``.
            activation_gain: gain ``a`` of the activation feeding the next layer (``√2`` for
                ReLU); into ``σ_W`` or ``α`` as the rule says.
            init_scale: extra factor ``s`` on every weight std.
            base_width: width at which μP coincides with SP; mean-field lr uses
                ``r · base_width``.

        Returns:
            The :class:`LayerSpec` of the layer.

        """
        rule = self.rule(role)
        if fan_in <= 0 or width_ratio <= 0:
            raise ValueError(
                f"fan_in and width_ratio must be positive, got {fan_in!r} and {width_ratio!r}"
            )
        n, r = float(fan_in), float(width_ratio)
        gain = activation_gain if rule.activation_gain else 1.0
        std_gain, multiplier_gain = (1.0, gain) if rule.gain_in_multiplier else (gain, 1.0)
        lr_base = float(base_width) ** self.lr_base_width_power
        bias_mult = self.bias_scale if rule.bias_multiplier is None else rule.bias_multiplier
        return LayerSpec(
            init_std=init_scale * std_gain * n**rule.std_fan_in_power * r**rule.std_ratio_power,
            multiplier=multiplier_gain
            * n**rule.multiplier_fan_in_power
            * r**rule.multiplier_ratio_power,
            lr_weight=lr_base * r**rule.lr_weight_ratio_power,
            lr_bias=lr_base * r**rule.lr_bias_ratio_power,
            bias_std=rule.bias_std,
            bias_multiplier=float(bias_mult),
            adaptive_lr_weight=_power(r, rule.adaptive_lr_weight_ratio_power),
            adaptive_lr_bias=_power(r, rule.adaptive_lr_bias_ratio_power),
            parameterization=self.name,
        )


def _power(r: float, exponent: float | None) -> float | None:
    """``r**exponent``, or ``None`` (no rule) where ``exponent`` is ``None``."""
    return None if exponent is None else r**exponent


_HALF = -0.5

STANDARD = Parameterization(
    name="standard",
    input=RoleRule(std_fan_in_power=_HALF, activation_gain=True),
    hidden=RoleRule(std_fan_in_power=_HALF, activation_gain=True),
    output=RoleRule(std_fan_in_power=_HALF, activation_gain=False),
)

_ntk_rule = functools.partial(
    RoleRule,
    std_fan_in_power=0.0,
    gain_in_multiplier=True,
    multiplier_fan_in_power=_HALF,
    bias_std=1.0,
    bias_multiplier=None,
)
NTK = Parameterization(
    name="ntk",
    input=_ntk_rule(activation_gain=True),
    hidden=_ntk_rule(activation_gain=True),
    output=_ntk_rule(activation_gain=False),
    revision=2,
)

MUP = Parameterization(
    name="mup",
    input=RoleRule(
        std_fan_in_power=_HALF,
        activation_gain=True,
        lr_weight_ratio_power=1.0,
        lr_bias_ratio_power=1.0,
    ),
    hidden=RoleRule(
        std_fan_in_power=_HALF,
        activation_gain=True,
        lr_bias_ratio_power=1.0,
        adaptive_lr_weight_ratio_power=-1.0,
    ),
    output=RoleRule(
        std_fan_in_power=_HALF,
        activation_gain=False,
        std_ratio_power=0.5,
        multiplier_ratio_power=-1.0,
        lr_weight_ratio_power=1.0,
    ),
)

_mf_rule = functools.partial(
    RoleRule,
    std_fan_in_power=0.0,
    lr_weight_ratio_power=1.0,
    lr_bias_ratio_power=1.0,
    adaptive_lr_weight_ratio_power=None,
    adaptive_lr_bias_ratio_power=None,
)
MEANFIELD = Parameterization(
    name="meanfield",
    input=_mf_rule(activation_gain=True, multiplier_fan_in_power=_HALF),
    hidden=_mf_rule(activation_gain=True, multiplier_fan_in_power=_HALF),
    output=_mf_rule(activation_gain=False, multiplier_fan_in_power=-1.0),
    lr_base_width_power=1.0,
)

PARAMETERIZATIONS: dict[str, Parameterization] = {
    p.name: p for p in (STANDARD, NTK, MUP, MEANFIELD)
}


def get_parameterization(name: str | Parameterization) -> Parameterization:
    """Return the registered parameterization ``name`` (a ``Parameterization`` passes through).

    Raises:
        ValueError: if ``name`` is not a key of ``PARAMETERIZATIONS``.

    """
    if isinstance(name, Parameterization):
        return name
    if not isinstance(name, str) or name not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {name!r}"
        )
    return PARAMETERIZATIONS[name]


def hash_revision(parameterization: str, activation_gain: float) -> dict[str, int]:
    """Entries a model's trial hash takes for its parameterization's convention revision.

    ``ntk`` revision 2 moved the activation gain ``a`` from the init std to the forward
    multiplier, which changes a model exactly when one of its layers takes ``a ≠ 1`` (ReLU
    input or hidden layers); such a model hashes with ``{"ntk_convention": 2}``, so that a store
    written before the revision does not resume from its trials. Every other model hashes as
    before (``{}``). Pass ``activation_gain = 1`` for a model without input or hidden layers.

    >>> hash_revision("ntk", 2**0.5), hash_revision("ntk", 1.0), hash_revision("mup", 2**0.5)
    ({'ntk_convention': 2}, {}, {})
    """
    param = get_parameterization(parameterization)
    if param.name == "ntk" and activation_gain != 1.0:
        return {"ntk_convention": param.revision}
    return {}


def width_ratio(width: int, base_width: int) -> float:
    """Return ``r = width / base_width``."""
    return width / base_width
