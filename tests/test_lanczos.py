"""lanczos_topk on synthetic symmetric matrices with a known spectrum: both ends, the gap bound, checks."""

from __future__ import annotations

import pytest
import torch

from _helpers import assert_close
from gdscope.probes.lanczos import lanczos_topk

F64 = torch.float64

# well-separated ends (gaps 0.5 and 1.0) around a bulk of 200 in [-2, 2]
ENDS = torch.cat(
    [
        torch.tensor([-6.0, -5.0, -4.5, 7.0, 8.0, 9.0], dtype=F64),
        torch.linspace(-2.0, 2.0, 200, dtype=F64),
    ]
)
# κ = 101 with a dense small end: λ_min to 1e-8 needs ~100 steps, so the checks are strided
GRADED = 0.01 + torch.linspace(0.0, 1.0, 400, dtype=F64)


def _matrix(spectrum: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(spectrum), len(spectrum), generator=g, dtype=F64))
    return q @ torch.diag(spectrum) @ q.T


def _expected(spectrum: torch.Tensor, which: str, k: int) -> torch.Tensor:
    ascending = torch.linalg.eigvalsh(torch.diag(spectrum))
    if which == "BE":
        return torch.cat([ascending[:k], ascending[-k:]])
    if which == "LA":
        return ascending.flip(0)[:k]
    if which == "SA":
        return ascending[:k]
    return ascending[ascending.abs().argsort(descending=True)][:k]


def _true_residuals(a: torch.Tensor, values: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(a @ vectors - vectors * values, dim=0)


@pytest.mark.parametrize("bound", ["residual", "gap"])
@pytest.mark.parametrize("tol", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize("k", [1, 3])
def test_both_ends_ascending_match_eigvalsh(bound, tol, k):
    a = _matrix(ENDS)
    res = lanczos_topk(lambda v: a @ v, a.shape[0], k, which="BE", tol=tol, bound=bound)
    assert res.converged
    assert res.values.shape == (2 * k,) and res.vectors.shape == (a.shape[0], 2 * k)
    assert bool((res.values.diff() > 0).all()), res.values
    assert_close(res.values, _expected(ENDS, "BE", k), rtol=tol, what=f"BE k={k} {bound}")
    residuals = _true_residuals(a, res.values, res.vectors)
    assert_close(residuals, res.residual_norms, rtol=1e-6, atol=1e-12, what="residual")
    if bound == "residual":
        assert bool((res.residual_norms <= tol * res.values.abs()).all())


@pytest.mark.parametrize("which", ["LA", "LM", "SA", "BE"])
@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_gap_bound_matches_eigvalsh_in_fewer_products(which, tol):
    a = _matrix(ENDS, seed=1)
    gap = lanczos_topk(lambda v: a @ v, a.shape[0], 2, which=which, tol=tol, bound="gap")
    rigorous = lanczos_topk(lambda v: a @ v, a.shape[0], 2, which=which, tol=tol)
    assert gap.converged and rigorous.converged
    expected = _expected(ENDS, which, 2)
    assert_close(gap.values, expected, rtol=tol, what=f"gap {which}")
    assert_close(rigorous.values, expected, rtol=tol, what=f"residual {which}")
    assert gap.iterations <= rigorous.iterations, (gap.iterations, rigorous.iterations)


@pytest.mark.parametrize("bound", ["residual", "gap"])
def test_strided_checks_return_pairs_meeting_the_rule(bound):
    a, tol = _matrix(GRADED), 1e-8
    res = lanczos_topk(lambda v: a @ v, a.shape[0], 1, which="SA", tol=tol, bound=bound)
    assert res.converged and res.iterations > 64, res.iterations
    residual = _true_residuals(a, res.values, res.vectors)
    assert_close(residual, res.residual_norms, rtol=1e-5, atol=1e-13, what="residual")
    assert_close(res.values, GRADED[:1], rtol=tol, what=f"λ_min ({bound})")
    if bound == "residual":
        assert bool((residual <= tol * res.values.abs() * (1 + 1e-6)).all()), residual
    # deterministic: a run capped one stride earlier had not met the rule yet
    earlier = res.iterations - max(1, res.iterations // 32)
    capped = lanczos_topk(
        lambda v: a @ v, a.shape[0], 1, which="SA", tol=tol, bound=bound, max_iter=earlier
    )
    assert not capped.converged and capped.iterations == earlier


def test_both_ends_with_repeated_eigenvalues_and_a_restart():
    # a Krylov space holds one copy of each eigenvalue: the residual rule runs to the breakdown
    # and restarts to find the second copies; the gap rule may stop before (documented)
    spectrum = torch.tensor([5.0, 5.0, 4.0, 1.0, 0.5, 0.0, -1.0, -1.0], dtype=F64)
    a = _matrix(spectrum, seed=3)
    res = lanczos_topk(lambda v: a @ v, 8, 2, which="BE", tol=1e-10)
    expected = torch.tensor([-1.0, -1.0, 5.0, 5.0], dtype=F64)
    assert_close(res.values, expected, atol=1e-9, what="BE repeated")
    res = lanczos_topk(lambda v: a @ v, 8, 2, which="BE", tol=1e-10, bound="gap")
    nearest = (res.values[:, None] - spectrum[None, :]).abs().amin(dim=1)
    assert_close(nearest, torch.zeros(4, dtype=F64), atol=1e-9, what="gap: eigenvalues")


def test_both_ends_of_a_small_matrix_return_every_eigenvalue_once():
    spectrum = torch.tensor([3.0, 1.0, 2.0], dtype=F64)
    a = _matrix(spectrum)
    res = lanczos_topk(lambda v: a @ v, 3, 2, which="BE", tol=1e-12)
    assert_close(res.values, torch.tensor([1.0, 2.0, 3.0], dtype=F64), rtol=1e-12, what="all")


def test_rejects_an_unknown_bound():
    with pytest.raises(ValueError, match="bound must be one of residual, gap"):
        lanczos_topk(lambda v: v, 10, bound="kato")  # type: ignore[arg-type]


@pytest.mark.parametrize("tol", [1e-3, 1e-5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_float32_basis_meets_the_tolerance_against_eigvalsh(tol, seed):
    """The float32 basis (with its rounding term in the bound) still returns λ_max to ``tol``."""
    a = _matrix(ENDS, seed)
    a32 = a.float()
    res = lanczos_topk(lambda v: a32 @ v, a.shape[0], 1, tol=tol, basis_dtype=torch.float32)
    assert res.converged and res.vectors.dtype == F64
    assert_close(res.values, _expected(ENDS, "LA", 1), rtol=tol, what=f"float32 basis {tol}")
    true = _true_residuals(a, res.values, res.vectors)  # in float64, of the returned pair
    assert bool((true <= tol * res.values.abs() + 1e-5).all()), (true, res.residual_norms)


def test_a_matvec_may_return_its_argument_or_keep_its_output():
    """The step works in the basis's own vectors: a matvec returning its input (a row of the
    basis) or always the same buffer cannot corrupt the basis."""
    a = torch.diag(torch.linspace(1.0, 4.0, 12, dtype=torch.float64))
    held = torch.empty(12, dtype=torch.float64)

    def into_held(v: torch.Tensor) -> torch.Tensor:
        return torch.mv(a, v, out=held)

    res = lanczos_topk(into_held, 12, 1, which="BE", tol=1e-12)
    assert_close(res.values, torch.tensor([1.0, 4.0], dtype=torch.float64), rtol=1e-10)
    identity = lanczos_topk(lambda v: v, 12, 1, tol=1e-12)
    assert_close(identity.values, torch.tensor([1.0], dtype=torch.float64), rtol=1e-12)
    assert identity.converged
