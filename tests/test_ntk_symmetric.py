"""A diagonal block of a symmetric NTK Gram is built from BLAS ``syrk`` triangles and mirrored
(``probes/_gram.py``): equal to the general product on fresh random factors and layers, exactly
symmetric, and ``torch.mm`` wherever ``syrk`` does not apply."""

from __future__ import annotations

import pytest
import torch

from _helpers import assert_close
from gdscope.probes import _ntk_structured as st
from gdscope.probes._gram import SYRK_MIN_ROWS, mirror_upper, upper_gram

SEEDS = [0, 1, 2]


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_the_mirrored_triangle_is_the_gram(seed, dtype, rtol):
    n, d = 3 + 60 * seed, 5 + 200 * seed  # 3, 63 (torch.mm) and 123 (syrk) rows
    a = torch.randn(n, d, generator=_g(seed), dtype=dtype)
    got = mirror_upper(upper_gram(a))
    assert got.dtype == dtype and torch.equal(got, got.T)
    exact = a.double() @ a.double().T  # round-off scales with the largest entry (the diagonal)
    assert_close(got.double(), exact, rtol=rtol, atol=rtol * float(exact.abs().max()))


def test_syrk_takes_the_factors_with_many_rows_and_leaves_the_lower_triangle():
    tall = torch.randn(SYRK_MIN_ROWS, 3, generator=_g(5))
    assert torch.equal(upper_gram(tall).tril(-1), torch.zeros(SYRK_MIN_ROWS, SYRK_MIN_ROWS))
    short = tall[: SYRK_MIN_ROWS - 1]
    assert torch.equal(upper_gram(short), short @ short.T)  # torch.mm: both triangles


def test_upper_gram_falls_back_to_mm_where_syrk_does_not_apply():
    a = torch.randn(4, 3, generator=_g(3), dtype=torch.float64, requires_grad=True)
    assert torch.equal(upper_gram(a), a @ a.T)  # a gradient is wanted: no scipy detour
    half = torch.randn(4, 3, generator=_g(4)).to(torch.bfloat16)
    assert torch.equal(upper_gram(half), half @ half.T)
    empty = torch.zeros(0, 3)
    assert upper_gram(empty).shape == (0, 0)


def test_a_factor_of_no_columns_gives_zeros_without_a_blas_complaint(capfd):
    """BLAS rejects ``k = 0`` (it printed "DSYRK parameter number 7 had an illegal value")."""
    for dtype in (torch.float32, torch.float64):
        gram = upper_gram(torch.zeros(SYRK_MIN_ROWS, 0, dtype=dtype))
        assert torch.equal(gram, torch.zeros(SYRK_MIN_ROWS, SYRK_MIN_ROWS, dtype=dtype))
    printed = capfd.readouterr()
    assert "illegal value" not in printed.out + printed.err


def _features(seed: int, n: int, k: int, length: int, bias: bool) -> st.LayerFeatures:
    g = _g(seed)
    inputs = torch.randn(n, length, 6, generator=g, dtype=torch.float64)
    deltas = torch.randn(n, k, length, 4, generator=g, dtype=torch.float64)
    return st.LayerFeatures(inputs, deltas, 0.7, 0.3 if bias else None)


def _copy(f: st.LayerFeatures) -> st.LayerFeatures:
    assert f.inputs is not None
    return st.LayerFeatures(f.inputs.clone(), f.deltas.clone(), f.weight_scale, f.bias_scale)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("length", [1, 4])  # a linear layer; a conv layer's positions
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("trace", [True, False])
@pytest.mark.parametrize("n", [5, SYRK_MIN_ROWS + 1])
def test_a_diagonal_block_equals_the_general_block(seed, k, length, bias, trace, n):
    f = _features(seed, n + seed, k, length, bias)
    symmetric = st.layer_gram(f, f, trace, 2**20)  # f is f: the syrk route
    general = st.layer_gram(f, _copy(f), trace, 2**20)  # two objects: torch.mm throughout
    assert_close(symmetric, general, rtol=1e-13, atol=1e-13)
    flat = symmetric if trace else symmetric.reshape(symmetric.shape[0] * k, -1)
    assert torch.equal(flat, flat.T)


def test_scipys_blas_threads_are_limited_exactly_when_syrk_may_run(monkeypatch):
    import contextlib

    from gdscope.models import mlp
    from gdscope.probes import ntk

    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(1)
        yield

    monkeypatch.setattr(ntk, "blas_threads_like_torch", recording)
    net = mlp(d_in=3, width=8, depth=2, out_dim=2, seed=0, dtype=torch.float64)
    for n, cross, expected in [
        (SYRK_MIN_ROWS // 2, False, True),  # n·k rows of the signals' Gram reach it
        (SYRK_MIN_ROWS // 2 - 1, False, False),
        (SYRK_MIN_ROWS, True, False),  # a cross-Gram has no symmetric block
    ]:
        entered.clear()
        x = torch.randn(n, 3, generator=_g(n), dtype=torch.float64)
        ntk.ntk_gram(net, x, x.clone() if cross else None)
        assert bool(entered) == expected, (n, cross)
