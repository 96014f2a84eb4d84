"""Lanczos on symmetric matrices with a known spectrum: clusters, repeats, bad arguments."""

import pytest
import torch

from _helpers import assert_close
from gdscope.probes.lanczos import lanczos_topk

F64 = torch.float64

# --- Lanczos on a synthetic symmetric matrix with a known spectrum -------------------------------


def _spectrum(gap: float) -> torch.Tensor:
    """Three clustered top eigenvalues, a near-double negative one of largest magnitude, a bulk."""
    head = [10.0, 10.0 - gap, 10.0 - 2 * gap, 9.0, -12.0, -12.0 + gap]
    return torch.cat([torch.tensor(head, dtype=F64), torch.linspace(-3.0, 3.0, 114, dtype=F64)])


SPECTRUM = _spectrum(0.1)


def _matrix(spectrum: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(spectrum), len(spectrum), generator=g, dtype=F64))
    return q @ torch.diag(spectrum) @ q.T


def _wanted(spectrum: torch.Tensor, which: str, k: int) -> torch.Tensor:
    if which == "LA":
        return spectrum.sort(descending=True).values[:k]
    if which == "SA":
        return spectrum.sort().values[:k]
    return spectrum[spectrum.abs().argsort(descending=True)][:k]


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-8])
@pytest.mark.parametrize("which", ["LA", "LM", "SA"])
@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_known_spectrum(tol, which, k):
    a = _matrix(SPECTRUM)
    res = lanczos_topk(lambda v: a @ v, a.shape[0], k, which=which, tol=tol)
    assert res.converged
    expected = _wanted(SPECTRUM, which, k)
    assert_close(res.values, expected, rtol=tol, what=f"{which} k={k}")
    residual = torch.linalg.vector_norm(a @ res.vectors - res.vectors * res.values, dim=0)
    assert_close(residual, res.residual_norms, rtol=1e-6, atol=1e-12, what="residual bound")
    assert bool((res.residual_norms <= tol * res.values.abs()).all())
    assert_close(res.vectors.T @ res.vectors, torch.eye(k, dtype=F64), atol=1e-10, what="QᵀQ")


def test_lanczos_top_ritz_value_is_a_lower_bound():
    a = _matrix(SPECTRUM)
    for tol in (1e-1, 1e-2, 1e-3):
        theta = lanczos_topk(lambda v: a @ v, a.shape[0], tol=tol).values[0]
        assert theta <= SPECTRUM.max() + 1e-12


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_on_a_tight_cluster_keeps_its_guarantee(tol, seed):
    # gap 1e-3: at tol = 1e-3 the cluster may be merged (a documented limit); every returned θ is
    # still within tol·|θ| of SOME eigenvalue, and finer tolerances resolve the cluster
    spectrum = _spectrum(1e-3)
    a = _matrix(spectrum, seed)
    res = lanczos_topk(lambda v: a @ v, a.shape[0], 3, tol=tol)
    nearest = (res.values[:, None] - spectrum[None, :]).abs().amin(dim=1)
    assert bool((nearest <= tol * res.values.abs()).all()), (res.values, nearest)
    assert_close(res.values[0], 10.0, rtol=tol)
    if tol < 1e-3:
        assert_close(res.values, _wanted(spectrum, "LA", 3), rtol=tol)


def test_lanczos_finds_repeated_eigenvalues_and_escapes_a_deficient_start():
    spectrum = torch.tensor([5.0, 5.0, 4.0, 1.0, 0.5, 0.0, 0.0, -1.0], dtype=F64)
    a = _matrix(spectrum, seed=3)
    res = lanczos_topk(lambda v: a @ v, 8, 3, tol=1e-10)
    assert_close(res.values, torch.tensor([5.0, 5.0, 4.0], dtype=F64), atol=1e-9, what="multiple")
    eigvecs = torch.linalg.eigh(a).eigenvectors  # ascending: column 3 has eigenvalue 1
    res = lanczos_topk(lambda v: a @ v, 8, 1, tol=1e-10, v0=eigvecs[:, 3])
    assert_close(res.values, torch.tensor([5.0], dtype=F64), rtol=1e-10, what="escaped v0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be"),
        ({"which": "LR"}, "which must be"),
        ({"tol": -1.0}, "tol must be"),
        ({"v0": torch.zeros(4)}, "v0 must have"),
        ({"v0": torch.zeros(120)}, "nonzero"),
    ],
)
def test_lanczos_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lanczos_topk(lambda v: v, 120, **kwargs)
