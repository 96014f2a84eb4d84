"""One ``assert_close`` helper for the whole suite: its failure says which entries differ and by how much."""

from __future__ import annotations

import torch


def assert_close(
    actual, expected, *, rtol: float = 1e-10, atol: float = 0.0, what: str = ""
) -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise, with a useful message."""
    a, e = _as_float64(actual), _as_float64(expected)
    assert a.shape == e.shape, f"{what} shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    err = (a - e).abs()
    bad = err > atol + rtol * e.abs()
    if bad.any():
        idx = bad.nonzero()[:5].tolist()
        worst = int(err.argmax())
        rel = (err / e.abs().clamp_min(1e-300)).flatten()[worst].item()
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.numel()} entries differ (rtol={rtol}, atol={atol}); "
            f"first at {idx}; worst abs err {err.max().item():.3e} (rel {rel:.3e}) at flat index {worst}: "
            f"{a.flatten()[worst].item()!r} vs {e.flatten()[worst].item()!r}"
        )


def _as_float64(value) -> torch.Tensor:
    """Convert without a float32 detour (``torch.as_tensor(0.1)`` would round to float32)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)
