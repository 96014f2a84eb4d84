r"""The growing Krylov basis of a Lanczos run and one Lanczos step into it.

The basis keeps one vector per row (float64 unless asked). A step ``w ← A q_m − α q_m − β q_{m−1}``
(Lanczos 1950; Golub & Van Loan, "Matrix Computations", §10.1) runs in the basis's own work
vector, so a run allocates nothing per step. Then ``w`` is orthogonalized against the basis,
measured first: the coefficients ``h = Qᵀw`` are computed (one pass over the basis) and, in a
basis coarser than float64 (the loose tolerances), when every ``|h_k|`` is below ``η·‖w‖`` with
``η = √(u/m_max)`` (``u`` the unit roundoff), removing them is skipped; otherwise classical
Gram–Schmidt removes them (a second pass), repeated when it cancels ("twice is enough": Giraud, Langou & Rozložník 2005). Every pair of basis vectors is
so *measured* to be orthogonal to within the largest skipped ``|h_k|/‖w‖``, kept as
:attr:`KrylovBasis.orthogonality`: semiorthogonality, under which the tridiagonal is the
projection of ``A`` to working accuracy (Simon 1984, "The Lanczos algorithm with partial
reorthogonalization", Math. Comp. 42), and which bounds how far a Ritz vector ``Q s`` is from
unit length (Gershgorin on ``QᵀQ``: ``‖Q s‖² ≥ 1 − (m − 1)·orthogonality``). After the
three-term recurrence the coefficients are at rounding level until a Ritz pair converges
(Paige 1976), so most steps of a run to a loose tolerance skip the second pass.

The basis's storage is kept for the next run on the same device and dtype when it is at most
:data:`SPARE_BYTES` (a sharpness tracked along training otherwise pays the page faults of a
fresh basis at every call); :func:`release_spare` frees it.
:func:`~gdscope.probes.lanczos.lanczos_topk` and the spectral density's quadrature use both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SPARE_BYTES",
    "KrylovBasis",
    "check_start",
    "fresh_direction",
    "lanczos_step",
    "length_stretch",
    "random_direction",
    "release_spare",
    "unit_vector",
]

_DGKS = 0.7071  # a second Gram–Schmidt pass when a pass keeps less than 1/√2 of the norm
SPARE_BYTES = 256 * 2**20  # the largest basis storage kept for the next run
_spare: dict[tuple[torch.device, torch.dtype], Tensor] = {}
_spare_lock = threading.Lock()


def release_spare() -> None:
    """Free the basis storage kept for the next Lanczos run (see the module docstring)."""
    with _spare_lock:
        _spare.clear()


def _take_spare(rows: int, dim: int, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    with _spare_lock:
        spare = _spare.get((device, dtype))
        if spare is None or spare.numel() < rows * dim:
            return None
        del _spare[(device, dtype)]
    return spare.view(-1)[: rows * dim].view(rows, dim)


class KrylovBasis:
    """Growing Krylov basis (float64 unless asked), one vector per row, measured orthogonal.

    Args:
        dim: length of the vectors.
        device: where they live.
        capacity: rows allocated at first (doubled when full).
        dtype: of the basis.
        max_steps: the most vectors the run may hold; sets the skip threshold ``√(u/max_steps)``.
        reorthogonalize: ``False`` leaves a Lanczos step's vector as the recurrence made it
            (no pass over the basis; :attr:`orthogonality` is then not measured).

    """

    def __init__(
        self,
        dim: int,
        device: torch.device | str,
        capacity: int,
        dtype: torch.dtype = torch.float64,
        max_steps: int | None = None,
        reorthogonalize: bool = True,
    ):
        device = torch.device(device)
        self.reorthogonalize = reorthogonalize
        spare = _take_spare(capacity, dim, dtype, device)
        self._q: Tensor = (
            spare if spare is not None else torch.empty(capacity, dim, dtype=dtype, device=device)
        )  # (m, dim)
        self._m = 0
        self.work = torch.empty(dim, dtype=dtype, device=device)  # see lanczos_step
        self.unit = float(torch.finfo(dtype).eps) / 2  # the basis's unit roundoff u
        # a Lanczos step's β below this share of max |α|, |β| is the rounding of one step
        self.breakdown = max(1e-12, 10 * self.unit)
        # float64 bases (tight tolerances, restarts on low-rank operators) always remove h
        self._skip = (
            0.0 if dtype == torch.float64 else (self.unit / max(max_steps or capacity, 1)) ** 0.5
        )
        self.orthogonality = 0.0  # the largest skipped |q_kᵀ q_j| measured so far
        self._removed: list[tuple[int, Tensor]] = []  # (step, h) taken out of Lanczos steps

    def release(self) -> None:
        """Keep this basis's storage for the next run (when small enough); then drop it."""
        storage = self._q
        if storage.numel() * storage.element_size() <= SPARE_BYTES:
            with _spare_lock:
                kept = _spare.get((storage.device, storage.dtype))
                if kept is None or kept.numel() < storage.numel():
                    _spare[(storage.device, storage.dtype)] = storage
        self._q = storage.new_empty(0, storage.shape[1])  # no view keeps the storage alive
        self._m = 0

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

    def removed_bound(self, s: Tensor, offset: int = 0) -> Tensor:
        """Bound ``‖F_rem s‖`` per column of ``s``: what reorthogonalization took out of ``A Q``.

        The step from ``q_j`` removed ``Q h_j`` from ``A q_j − α q_j − β q_{j−1}``, so the
        relation ``A Q = Q T + β q eᵀ + F`` carries it in ``F``'s column ``j`` and
        ``F_rem s = Q (H s)`` with ``H = [h_1, h_2, …]``: at most ``‖Q‖₂ ‖H s‖``, with
        ``‖Q‖₂² ≤ 1 + (m − 1)·ω`` (Gershgorin on ``QᵀQ``). ``s`` is ``(m − offset, k)``: Ritz
        vectors of the block of ``T`` from step ``offset`` on. Only a float32 basis records
        ``h``: it lets components grow to ``√(u/m_max)·‖w‖`` before removing them, while a
        float64 basis removes them every step, at the rounding level its rule leaves out.
        """
        if not self._removed:  # nothing removed (float64 or plain): zero for every column
            return torch.zeros(s.shape[1], dtype=torch.float64)
        hs = torch.zeros(self._m, s.shape[1], dtype=torch.float64)
        for j, h in self._removed:
            if j >= offset:
                hs[: h.numel()] += h[:, None] * s[j - offset].double()
        stretch = 1.0 + max(self._m - 1, 0) * self.orthogonality
        return torch.linalg.vector_norm(hs, dim=0) * stretch**0.5

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

    def orthogonalize(self, w: Tensor, *, skip: bool = True) -> float:
        """Remove from ``w`` (in the basis's dtype) its components along the basis, in place.

        Measure ``h = Qᵀw`` first; with ``skip`` (a Lanczos step), components all below
        ``√(u/m_max)·‖w‖`` are left and recorded in :attr:`orthogonality`. Otherwise classical
        Gram–Schmidt; a second pass runs when the first removed more than a ``1/√2`` share of
        the norm (Daniel, Gragg, Kaufman & Stewart 1976), and twice is enough (Giraud, Langou &
        Rozložník 2005). A basis made with ``reorthogonalize=False`` does none of this for a
        Lanczos step (``skip``). Returns ``‖w‖`` afterwards.
        """
        q = self._q[: self._m]  # (m, dim), rows contiguous
        norm = float(torch.linalg.vector_norm(w))
        if skip and not self.reorthogonalize:
            return norm
        for _ in range(2):
            h = q @ w
            largest = float(h.abs().max()) if h.numel() else 0.0
            if skip and largest < self._skip * norm:
                self.orthogonality = max(self.orthogonality, largest / max(norm, 1e-300))
                return norm
            w.addmv_(q.T, h, alpha=-1.0)
            if skip and self._skip > 0:  # a step that let h grow past rounding: removed_bound
                self._removed.append((self._m - 1, h.double().cpu()))
            new_norm = float(torch.linalg.vector_norm(w))
            if new_norm > _DGKS * norm:
                return new_norm
            norm = new_norm
        return norm


def lanczos_step(
    matvec: Callable[[Tensor], Tensor], basis: KrylovBasis, beta: float
) -> tuple[float, float]:
    """One Lanczos step into ``basis.work``; return ``α = q_mᵀ A q_m`` and ``‖w‖`` after it.

    ``w ← A q_m − α q_m − β q_{m−1}`` (the three-term recurrence; ``β = 0`` at a start or
    restart), then orthogonalization against the basis (measured, see the module docstring).
    In place in the basis's work vector: fresh vectors of a million entries cost page faults.
    """
    w, q = basis.work, basis.last()
    product = matvec(q).reshape(w.shape[0])
    alpha = float(q @ product.to(w.dtype))
    torch.sub(product, q, alpha=alpha, out=w)
    if beta != 0.0:
        w.sub_(basis.previous(), alpha=beta)
    return alpha, basis.orthogonalize(w)


def check_start(v0: Tensor, dim: int) -> None:
    """Raise unless ``v0`` is a finite nonzero start vector of ``dim`` entries."""
    if v0.numel() != dim:
        raise ValueError(f"v0 must have {dim} entries, got shape {tuple(v0.shape)}")
    start = v0.detach().to(torch.float64)
    if not bool(start.isfinite().all()):
        raise ValueError("v0 holds nan or inf; pass a finite start vector or v0=None")
    if not bool(start.abs().max() > 0):
        raise ValueError("v0 must be a nonzero vector; pass v0=None for a random start")


def unit_vector(v: Tensor) -> Tensor:
    """``v/‖v‖`` computed without overflow or underflow (scaled by its largest entry first)."""
    v = v / v.abs().max()
    return v / torch.linalg.vector_norm(v)


def random_direction(dim: int, generator: torch.Generator, device: torch.device | str) -> Tensor:
    """Draw a Gaussian direction in float32 (five times cheaper than float64)."""
    draw = torch.randn(dim, generator=generator, dtype=torch.float32, device=generator.device)
    return draw.to(device)


def fresh_direction(
    basis: KrylovBasis, generator: torch.Generator, dim: int, device: torch.device | str
) -> Tensor:
    w = random_direction(dim, generator, device).to(basis.dtype)
    return w / basis.orthogonalize(w, skip=False)


def length_stretch(orthogonality: float, m: int) -> float:
    """``1/√(1 − (m − 1)·ω)``: how much a Ritz vector ``Q s`` may be shorter than unit (≥ 1).

    The basis's pairs are measured orthogonal to within ``ω``, so ``QᵀQ``'s eigenvalues are at
    least ``1 − (m − 1)·ω`` (Gershgorin); a residual ``|β s_m|`` of ``Q s`` is at most this much
    larger for the unit vector ``Q s/‖Q s‖``.
    """
    return max(1.0 - (m - 1) * orthogonality, 1e-300) ** -0.5
