"""Datasets as ``(x, y)`` tensors: synthetic, separation-controlled, toy regressions, real data.

Every loader takes keyword arguments ``seed``, ``dtype`` and ``device``, draws from an explicitly
seeded generator (never the global RNG) and returns ``(x, y)``: regression and ±1 targets are
float ``(n, k)``, class labels are ``torch.long`` of shape ``(n,)``. Images stay ``(n, C, H, W)``.
"""

from .chebyshev import chebyshev
from .digits import digits
from .files import load_cifar10, load_mnist_idx
from .lasso import lambda_max, lasso_design, lasso_truth
from .mnist1d import mnist1d
from .registry import DATASETS, load
from .separation import min_opposite_distance, separated
from .synthetic import gaussian_mixture, sphere, sphere_images, teacher_student

__all__ = [
    "DATASETS",
    "chebyshev",
    "digits",
    "gaussian_mixture",
    "lambda_max",
    "lasso_design",
    "lasso_truth",
    "load",
    "load_cifar10",
    "load_mnist_idx",
    "min_opposite_distance",
    "mnist1d",
    "separated",
    "sphere",
    "sphere_images",
    "teacher_student",
]
