"""Helpers shared by the suite: one ``assert_close`` (its failure says which entries differ and
by how much) and the command line run in-process."""

from __future__ import annotations

import contextlib
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def assert_close(
    actual,
    expected,
    *,
    rtol: float = 1e-10,
    atol: float = 0.0,
    what: str = "",
) -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise, with a useful message.

    The one approximate comparison of the suite. ``actual`` and ``expected`` are Python numbers,
    sequences of them, numpy arrays or tensors, compared in float64 with equal shapes (no
    broadcasting). Equal entries pass (so ``inf == inf``); a NaN always fails. The tolerance rule
    is that of ``allclose`` in numpy and torch; pytest's ``approx`` at its defaults reads
    ``rtol=1e-6, atol=1e-12`` here.

    >>> assert_close([1.0, 2.0], (1.0, 2.0 + 1e-12))
    >>> assert_close([float("inf"), 0.0], [float("inf"), 1e-13], atol=1e-12)
    >>> assert_close(1.0, 1.1, rtol=1e-3, what="x")
    Traceback (most recent call last):
    AssertionError: x: 1/1 entries differ (rtol=0.001, atol=0.0); first at [[]]; worst abs err 1.000e-01 (rel 9.091e-02) at flat index 0: 1.0 vs 1.1
    """
    a, e = _as_float64(actual), _as_float64(expected)
    assert a.shape == e.shape, f"{what} shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    err = (a - e).abs()
    finite = a.isfinite() & e.isfinite()  # an infinite entry passes only if equal
    ok = (finite & (err <= atol + rtol * e.abs())) | (a == e)  # a NaN is never <=: it fails
    bad = ~ok
    if bad.any():
        idx = bad.nonzero()[:5].tolist()
        # the worst entry is a failing one, a NaN counting as an infinite error
        err = torch.where(bad, err.nan_to_num(nan=torch.inf, posinf=torch.inf), 0.0)
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


@contextlib.contextmanager
def registries_restored() -> Iterator[None]:
    """Give back every registry (models, data sets, probes) as it was before the block."""
    from gdscope import registration

    registries = list(registration._REGISTRIES.values())
    saved = [dict(registry._entries) for registry in registries]
    try:
        yield
    finally:
        for registry, entries in zip(registries, saved, strict=True):
            registry._entries.clear()
            registry._entries.update(entries)


def load_script(folder: str, name: str):
    """Import ``<folder>/<name>.py`` of the repository by its path (no ``sys.path`` edit).

    Cached in ``sys.modules`` under ``name`` (dataclasses look their module up there). The
    benchmark scripts import their siblings by bare name (``from _common import ...``), so a
    sibling is loaded the same way first when ``name`` needs it.
    """
    import importlib.util
    import sys
    from pathlib import Path

    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_benchmark_module(name: str):
    """Import ``benchmarks/<name>.py`` (:func:`load_script`)."""
    return load_script("benchmarks", name)


TINY_FACTORIES = """
import torch
from torch import nn


def net(width=8, d=4):
    return nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, 1))


def data(n=12, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)
"""
"""A user's module with a model factory ``net`` and a data factory ``data``, both tiny."""


def user_module(folder: Path, monkeypatch, name: str, source: str = TINY_FACTORIES) -> Path:
    """Write the user's module ``name.py`` into ``folder``, the current directory, importable."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def diagnose_tiny(tmp_path_factory, name: str, **options):
    """``gs.diagnose`` of :data:`TINY_FACTORIES` (as module ``name``): 12 steps, float64, one
    torch thread (tiny products: threads cost more than they give), unless ``options`` say."""
    import gdscope as gs
    from gdscope.runners._jobs import one_torch_thread

    folder = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as patch, one_torch_thread():
        user_module(folder, patch, name)
        return gs.diagnose(
            f"{name}:net", f"{name}:data", **{"steps": 12, "dtype": "float64", **options}
        )


def lazy_gd_run(measurements, **changes):
    """Diagnose ``measurements`` as those of a lazy full-batch GD run of 200 steps (the kernel
    rate checks apply), with ``changes`` to its fields."""
    import dataclasses

    base = {
        "ntk_drift": 0.01,
        "weight_movement": 0.01,
        "ntk_lambda_min": 3e-4,
        "ntk_lambda_max": 0.5,
        "ntk_kappa": 0.5 / 3e-4,
        "ntk_examples": measurements.n_train,
        "loss_rate": 0.99997,
        "loss_rate_r2": 0.99,
        "loss_rate_ok": True,
        "pl_ratio_min": 1e-4,
        "pl_ratio_init": 2e-4,
        "sharpness_max": 1.0,
        "status": "completed",
        "steps": 200,
    }
    return dataclasses.replace(measurements, **{**base, **changes})


def monitor_tiny(results, run: str, steps: int = 3) -> None:
    """Monitor ``steps`` SGD steps of a tiny linear regression into ``results`` as run ``run``."""
    import torch

    import gdscope as gs

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gs.monitor(model, gs.losses.mse, (x, y), results=results, run=run) as mon:
        mon.step(0, lr=0.1)
        for t in range(1, steps + 1):
            opt.zero_grad()
            gs.losses.mse(model(x), y).backward()
            opt.step()
            mon.step(t, lr=0.1)
