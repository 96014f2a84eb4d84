r"""The growing Krylov basis of a Lanczos run and one Lanczos step into it.

The basis keeps one vector per row (float64 unless asked) and reorthogonalizes by classical
Gram–Schmidt, repeated when a pass cancels ("twice is enough": Giraud, Langou & Rozložník 2005).
A step ``w ← A q_m − α q_m − β q_{m−1}`` (Lanczos 1950; Golub & Van Loan, "Matrix Computations",
§10.1) runs in the basis's own work vectors, so a run allocates nothing per step.
:func:`~gdscope.probes.lanczos.lanczos_topk` and the spectral density's quadrature use both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

_DGKS = 0.7071  # a second Gram–Schmidt pass when a pass keeps less than 1/√2 of the norm


class KrylovBasis:
    """Growing Krylov basis (float64 unless asked), one vector per row, with repeated CGS."""

    def __init__(self, dim: int, device: torch.device | str, capacity: int, dtype=torch.float64):
        self._q = torch.empty(capacity, dim, dtype=dtype, device=device)  # (m, dim)
        self._m = 0
        self.work = torch.empty(dim, dtype=dtype, device=device)  # see lanczos_step
        self.scratch = torch.empty(dim, dtype=dtype, device=device)

    def append(self, q: Tensor) -> None:
        self.append_slot().copy_(q)

    def append_divided(self, w: Tensor, divisor: float) -> None:
        """Append ``w / divisor`` (written straight into the basis)."""
        torch.div(w, divisor, out=self.append_slot())

    def append_slot(self) -> Tensor:
        """Make room for one more vector and return its row (the caller fills it)."""
        if self._m == self._q.shape[0]:
            grown = self._q.new_empty(2 * self._m, self._q.shape[1])
            grown[: self._m] = self._q
            self._q = grown
        self._m += 1
        return self._q[self._m - 1]

    @property
    def dtype(self) -> torch.dtype:
        return self._q.dtype

    def last(self) -> Tensor:
        return self._q[self._m - 1]

    def matrix(self) -> Tensor:
        """Return the basis as ``(dim, m)`` columns (a transposed view)."""
        return self._q[: self._m].T

    def previous(self) -> Tensor:
        return self._q[self._m - 2]

    def orthogonalize(self, w: Tensor) -> Tensor:
        """Remove from ``w`` (in the basis's dtype) its components along the basis, in place.

        Classical Gram–Schmidt; a second pass runs when the first removed more than a ``1/√2``
        share of the norm (Daniel, Gragg, Kaufman & Stewart 1976), and twice is enough
        (Giraud, Langou & Rozložník 2005). After the three-term recurrence the first pass only
        removes rounding-level components, so the second is rarely needed.
        """
        q = self._q[: self._m]  # (m, dim), rows contiguous
        norm = torch.linalg.vector_norm(w)
        for _ in range(2):
            w.addmv_(q.T, q @ w, alpha=-1.0)
            new_norm = torch.linalg.vector_norm(w)
            if new_norm > _DGKS * norm:
                break
            norm = new_norm
        return w


def lanczos_step(matvec: Callable[[Tensor], Tensor], basis: KrylovBasis, beta: float) -> float:
    """One Lanczos step into ``basis.work``; return ``α = q_mᵀ A q_m``.

    ``w ← A q_m − α q_m − β q_{m−1}`` (the three-term recurrence; ``β = 0`` at a start or
    restart), then full reorthogonalization against the basis. In place, in the basis's two
    work vectors: the same operations, rounded the same way, as ``w − α q`` with temporaries,
    without allocating (fresh vectors of a million entries cost page faults).
    """
    w, scratch = basis.work, basis.scratch
    w.copy_(matvec(basis.last()).reshape(w.shape[0]))
    alpha = float(basis.last() @ w)
    w.sub_(torch.mul(basis.last(), alpha, out=scratch))
    if beta != 0.0:
        w.sub_(torch.mul(basis.previous(), beta, out=scratch))
    basis.orthogonalize(w)
    return alpha
