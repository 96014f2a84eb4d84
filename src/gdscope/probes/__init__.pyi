from .coord_hooks import CoordCheck, CoordRow, coordinate_check
from .gauss_newton import GGNOperator, ggn_operator, ggn_sharpness
from .geometry import (
    Sandwich,
    activation_flips,
    activation_pattern,
    distance_from_init,
    gradient_norm,
    linearization_gap,
    linearized_prediction,
    loss_and_grad_norm,
    per_neuron_displacement,
    pl_ratio,
    square_loss_sandwich,
)
from .hessian import (
    hessian_operator,
    hessian_topk,
    hessian_trace,
    output_hessian_norm,
    power_iteration,
    sharpness,
)
from .infinite_width import InfiniteWidthKernels, ntk_infinite
from .lanczos import EigResult, lanczos_topk
from .ntk import (
    NTKSpectrum,
    gram_eigs,
    h_infinity,
    kernel_drift,
    kernel_target_alignment,
    ntk_gram,
    ntk_method,
    ntk_spectrum,
)
from .preconditioned import (
    adaptive_stability_threshold,
    preconditioned_sharpness,
    preconditioner_diagonal,
)
from .spectral_density import SpectralDensity, hessian_spectral_density, spectral_density
from .trace import hessian_trace_hutchpp, hutchpp

__all__ = [
    "CoordCheck",
    "CoordRow",
    "EigResult",
    "GGNOperator",
    "InfiniteWidthKernels",
    "NTKSpectrum",
    "Sandwich",
    "SpectralDensity",
    "activation_flips",
    "activation_pattern",
    "adaptive_stability_threshold",
    "coordinate_check",
    "distance_from_init",
    "ggn_operator",
    "ggn_sharpness",
    "gradient_norm",
    "gram_eigs",
    "h_infinity",
    "hessian_operator",
    "hessian_spectral_density",
    "hessian_topk",
    "hessian_trace",
    "hessian_trace_hutchpp",
    "hutchpp",
    "kernel_drift",
    "kernel_target_alignment",
    "lanczos_topk",
    "linearization_gap",
    "linearized_prediction",
    "loss_and_grad_norm",
    "ntk_gram",
    "ntk_infinite",
    "ntk_method",
    "ntk_spectrum",
    "output_hessian_norm",
    "per_neuron_displacement",
    "pl_ratio",
    "power_iteration",
    "preconditioned_sharpness",
    "preconditioner_diagonal",
    "sharpness",
    "spectral_density",
    "square_loss_sandwich",
]
