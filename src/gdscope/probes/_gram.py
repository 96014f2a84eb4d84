r"""The Gram ``A Bᵀ`` of the NTK's per-layer factors, symmetric ones at half the cost on the CPU.

A structured NTK (:mod:`gdscope.probes._ntk_structured`) sums per layer the Hadamard product of
two Grams, of the layer's inputs and of its output signals. On the diagonal blocks of a Gram
``K(x, x)`` both are ``A Aᵀ``: symmetric, so BLAS ``?syrk`` (Dongarra et al. 1990, "A set of
level 3 BLAS") computes the upper triangle in half the flops of ``A Aᵀ`` by ``torch.mm``, which
has no symmetric kernel. On the CPU, for float32 and float64 factors of at least
:data:`SYRK_MIN_ROWS` rows that need no gradient, :func:`upper_gram` takes scipy's ``syrk``
(everywhere else ``torch.mm``); a layer's Gram is built
from such triangles and mirrored once (:func:`mirror_upper`). scipy's BLAS threads are limited
to torch's count while an NTK is computed (:func:`blas_threads_like_torch`): scipy's OpenBLAS would
otherwise start a thread per core, which spin beside torch's (and the stored bits of a trial
would depend on it).

>>> a = torch.randn(5, 3, dtype=torch.float64)
>>> bool(torch.allclose(mirror_upper(upper_gram(a)), a @ a.T, rtol=1e-14, atol=1e-14))
True
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

_SYRK: dict[torch.dtype, Callable[..., np.ndarray]] = {
    dtype: cast("Callable[..., np.ndarray]", scipy.linalg.get_blas_funcs("syrk", dtype=np_dtype))
    for dtype, np_dtype in ((torch.float32, np.float32), (torch.float64, np.float64))
}


def upper_gram(a: Tensor) -> Tensor:
    """Return ``a aᵀ`` for an ``(n, d)`` factor, right on and above the diagonal only.

    Below the diagonal it holds zeros (``syrk``, module docstring) or the mirrored values
    (``torch.mm`` where ``syrk`` does not apply); :func:`mirror_upper` makes it whole.
    """
    syrk = _SYRK.get(a.dtype)
    cpu = a.device.type == "cpu" and not a.requires_grad
    if syrk is None or not cpu or not uses_syrk(a.shape[0]) or a.shape[1] == 0:
        return torch.mm(a, a.T)  # (BLAS rejects a factor of no columns; mm gives zeros)
    lower = syrk(1.0, a.detach().contiguous().numpy().T, trans=1, lower=1)  # Fortran order
    return torch.from_numpy(lower).T  # row-major, the upper triangle filled


SYRK_MIN_ROWS = 96
"""Fewer rows take ``torch.mm``: as fast there (one core, 64 rows: 25 µs either way at 256
columns, 2026-12-05), and no call into scipy's BLAS, whose code a first call reads from memory."""


def uses_syrk(rows: int) -> bool:
    """Whether :func:`upper_gram` hands a CPU factor of ``rows`` rows to ``syrk``."""
    return rows >= SYRK_MIN_ROWS


def mirror_upper(square: Tensor) -> Tensor:
    """Return the symmetric matrix whose upper triangle (diagonal included) is ``square``'s.

    >>> mirror_upper(torch.tensor([[1.0, 2.0], [0.0, 3.0]])).tolist()
    [[1.0, 2.0], [2.0, 3.0]]
    """
    return square.triu().add_(square.triu(1).T)


def symmetrized(square: Tensor) -> Tensor:
    """Return ``(S + Sᵀ)/2``: exactly symmetric, as ``fl(a + b) = fl(b + a)``.

    For a whole Gram whose rounded products need not be symmetric (not only its upper triangle).

    >>> symmetrized(torch.tensor([[1.0, 2.0], [4.0, 3.0]])).tolist()
    [[1.0, 3.0], [3.0, 3.0]]
    """
    return torch.add(square, square.T).mul_(0.5)


@contextlib.contextmanager
def blas_threads_like_torch() -> Iterator[None]:
    """Run the block with the BLAS libraries' threads set to torch's count (about 15 µs)."""
    with _controller().limit(limits=torch.get_num_threads(), user_api="blas"):
        yield


@functools.cache
def _controller() -> ThreadpoolController:
    """Return the thread pools of this process's native libraries (found once, after scipy's)."""
    return ThreadpoolController()
