r"""Parameterizations (SP, NTK, μP, mean-field) held as data.

A parameterization says, for a layer of a given *role* (``"input"``, ``"hidden"``,
``"output"``), fan-in ``n`` and width ratio ``r = width / base_width``, how the stored
weight ``W`` and bias ``b`` are initialized, by which constants they are multiplied in the
forward pass and how their learning rates are scaled:

.. math::

    y = \alpha\, x W^\top + \alpha_b\, b, \qquad
    W_{ij} \sim \mathcal N(0, \sigma_W^2), \quad b_i \sim \mathcal N(0, \sigma_b^2), \qquad
    \eta_W = \eta\, c_W, \quad \eta_b = \eta\, c_b .

Every quantity is a monomial ``g^k · n^a · r^c`` whose exponents are stored in a
:class:`RoleRule`. ``g = init_scale × activation gain`` (``√2`` for ReLU, ``1`` otherwise); the
output layer never takes the activation gain, only ``init_scale``.

================  ==============  =================  ===================  ================
parameterization  weight std σ_W  multiplier α       lr c_W (in/hid/out)  bias σ_b, α_b, c_b
================  ==============  =================  ===================  ================
standard          g / √n          1                  1 / 1 / 1            0, 1, 1
ntk               g               1 / √n             1 / 1 / 1            1, β, 1
mup               g / √n (out:    1 (out: 1/r)       r / 1 / r            0, 1, r (out: 1)
                  √r / √n)
meanfield         g               1/√n (out: 1/n)    w / w / w            0, 1, w
================  ==============  =================  ===================  ================

(``w = r · base_width`` is the width.)

* **standard**: PyTorch/He-style fan-in initialization (He et al. 2015).
* **ntk**: Jacot, Gabriel & Hongler (2018), "Neural Tangent Kernel", eq. (1): weights
  ``N(0, 1)`` scaled by ``1/√n`` in the forward pass, biases ``N(0, 1)`` scaled by
  ``β = bias_scale`` (0.1 as in Jacot et al.).
* **mup**: Yang & Hu (2021), "Tensor Programs IV", Table 3 (SGD), written relative to a base
  width as in the ``mup`` package (so μP equals SP at ``width == base_width``): readout
  multiplier ``1/r`` on a readout weight of std ``√r/√n`` (``mup.set_base_shapes`` rescales a
  ``MuReadout`` weight by ``√width_mult``), so the effective readout std is ``∝ 1/n`` as in
  TP-IV Table 3 and the output at initialization falls like ``1/√r``; the learning rates of vector-like parameters (input weights, biases of
  width-sized layers, output weights) are multiplied by ``r``.
* **meanfield**: the convention gdscope uses is weights ``N(0, g²)``, forward multipliers
  ``1/√n`` for input/hidden layers and ``1/n`` for the output layer, so that a two-layer
  network is ``f(x) = (1/m) Σ_r a_r σ(w_rᵀx / √d)`` (Mei, Montanari & Nguyen 2018; Chizat &
  Bach 2018), and the learning rate of every parameter multiplied by ``width = r·base_width``
  so that gradient flow runs on a width-independent time scale.

Under these rules the output scale at initialization is width independent for ``standard``
and ``ntk``, falls like ``1/√r`` for ``mup`` and like ``1/√width`` for ``meanfield``.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("input", "hidden", "output")


@dataclass(frozen=True)
class RoleRule:
    """Scaling exponents of one layer role; every quantity is ``n**a * r**c`` (n = fan-in).

    Attributes:
        std_fan_in_power: ``σ_W = g · n**std_fan_in_power · r**std_ratio_power``.
        std_ratio_power: exponent of ``r`` in ``σ_W``.
        activation_gain: whether ``g`` includes the activation gain (``init_scale`` always).
        multiplier_fan_in_power: exponent of ``n`` in the forward multiplier ``α``.
        multiplier_ratio_power: exponent of ``r`` in ``α``.
        lr_weight_ratio_power: exponent of ``r`` in the weight learning-rate multiplier.
        lr_bias_ratio_power: exponent of ``r`` in the bias learning-rate multiplier.
        bias_std: ``σ_b``.
        bias_multiplier: ``α_b``; ``None`` means the parameterization's ``bias_scale``.

    """

    std_fan_in_power: float
    activation_gain: bool
    std_ratio_power: float = 0.0
    multiplier_fan_in_power: float = 0.0
    multiplier_ratio_power: float = 0.0
    lr_weight_ratio_power: float = 0.0
    lr_bias_ratio_power: float = 0.0
    bias_std: float = 0.0
    bias_multiplier: float | None = 1.0


@dataclass(frozen=True)
class LayerSpec:
    """Concrete numbers for one layer, as produced by :meth:`Parameterization.layer`."""

    init_std: float
    multiplier: float
    lr_weight: float
    lr_bias: float
    bias_std: float
    bias_multiplier: float


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

    """

    name: str
    input: RoleRule
    hidden: RoleRule
    output: RoleRule
    bias_scale: float = 0.1
    lr_base_width_power: float = 0.0

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
            activation_gain: gain of the activation feeding the next layer (``√2`` for ReLU).
            init_scale: extra factor on every weight std.
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
        gain = init_scale * (activation_gain if rule.activation_gain else 1.0)
        lr_base = float(base_width) ** self.lr_base_width_power
        bias_mult = self.bias_scale if rule.bias_multiplier is None else rule.bias_multiplier
        return LayerSpec(
            init_std=gain * n**rule.std_fan_in_power * r**rule.std_ratio_power,
            multiplier=n**rule.multiplier_fan_in_power * r**rule.multiplier_ratio_power,
            lr_weight=lr_base * r**rule.lr_weight_ratio_power,
            lr_bias=lr_base * r**rule.lr_bias_ratio_power,
            bias_std=rule.bias_std,
            bias_multiplier=float(bias_mult),
        )


_HALF = -0.5

STANDARD = Parameterization(
    name="standard",
    input=RoleRule(std_fan_in_power=_HALF, activation_gain=True),
    hidden=RoleRule(std_fan_in_power=_HALF, activation_gain=True),
    output=RoleRule(std_fan_in_power=_HALF, activation_gain=False),
)

_NTK_COMMON = {"std_fan_in_power": 0.0, "multiplier_fan_in_power": _HALF, "bias_std": 1.0}
NTK = Parameterization(
    name="ntk",
    input=RoleRule(activation_gain=True, bias_multiplier=None, **_NTK_COMMON),
    hidden=RoleRule(activation_gain=True, bias_multiplier=None, **_NTK_COMMON),
    output=RoleRule(activation_gain=False, bias_multiplier=None, **_NTK_COMMON),
)

MUP = Parameterization(
    name="mup",
    input=RoleRule(
        std_fan_in_power=_HALF,
        activation_gain=True,
        lr_weight_ratio_power=1.0,
        lr_bias_ratio_power=1.0,
    ),
    hidden=RoleRule(std_fan_in_power=_HALF, activation_gain=True, lr_bias_ratio_power=1.0),
    output=RoleRule(
        std_fan_in_power=_HALF,
        activation_gain=False,
        std_ratio_power=0.5,
        multiplier_ratio_power=-1.0,
        lr_weight_ratio_power=1.0,
    ),
)

_MF_LR = {"lr_weight_ratio_power": 1.0, "lr_bias_ratio_power": 1.0, "std_fan_in_power": 0.0}
MEANFIELD = Parameterization(
    name="meanfield",
    input=RoleRule(activation_gain=True, multiplier_fan_in_power=_HALF, **_MF_LR),
    hidden=RoleRule(activation_gain=True, multiplier_fan_in_power=_HALF, **_MF_LR),
    output=RoleRule(activation_gain=False, multiplier_fan_in_power=-1.0, **_MF_LR),
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


def width_ratio(width: int, base_width: int) -> float:
    """Return ``r = width / base_width``."""
    return width / base_width
