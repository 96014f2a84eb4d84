"""Helpers shared by the suite: one ``assert_close`` (its failure says which entries differ and
by how much) and the command line run in-process."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

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


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``gdscope ARGS`` in this process (as the console script does); return code, out, err.

    For the checks of one-line errors, which a subprocess per case made slow (≈ 5 s each).
    """
    import sys

    from gdscope.cli import main

    monkeypatch.setattr(sys, "argv", ["gdscope", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@contextlib.contextmanager
def sigint_reaches_children() -> Iterator[None]:
    """Start children inside this block with SIGINT at its default (for tests that send Ctrl-C).

    A shell without job control starts its background commands with SIGINT ignored, and an
    ignored signal stays ignored across ``exec``: Python would install no KeyboardInterrupt
    handler in the child. A handled signal is reset to its default by ``exec``, so while the
    children start, this process handles SIGINT (no ``preexec_fn``: no fork of a threaded process).
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
