"""Model factories and the parameterizations they are built under.

``mlp``, ``two_layer``, ``cnn`` and ``resnet`` return ordinary ``nn.Module`` s whose layers
(:class:`ScaledLinear`, :class:`ScaledConv2d`) carry the forward multipliers and per-parameter
learning-rate multipliers of a :class:`Parameterization` (standard, NTK, μP, mean-field);
:func:`lr_multipliers` collects the latter for building optimizer param groups.
:func:`wrap_output` adds a nonlinear output layer and the lazy-training output scaling
``α(f − f₀)`` of Chizat et al. to any of them.
"""

from .activations import ACTIVATIONS, activation_gain, get_activation
from .cnn import CNN, cnn
from .layers import ScaledConv2d, ScaledLinear
from .lr_multipliers import lr_multipliers
from .mlp import MLP, mlp
from .output import LazyOutput, OutputActivation, wrap_output
from .parameterization import (
    PARAMETERIZATIONS,
    LayerSpec,
    Parameterization,
    RoleRule,
    get_parameterization,
)
from .resnet import ResNet, resnet
from .two_layer import TwoLayer, two_layer

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "MLP",
    "PARAMETERIZATIONS",
    "LayerSpec",
    "LazyOutput",
    "OutputActivation",
    "Parameterization",
    "ResNet",
    "RoleRule",
    "ScaledConv2d",
    "ScaledLinear",
    "TwoLayer",
    "activation_gain",
    "cnn",
    "get_activation",
    "get_parameterization",
    "lr_multipliers",
    "mlp",
    "resnet",
    "two_layer",
    "wrap_output",
]
