"""Timing and reporting shared by the benchmark scripts: medians of wall time, one JSON line each."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    """Return a short description of ``device`` for the records."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    """Wait for queued kernels so that wall time measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: Callable[[], Any], device: torch.device, *, repeats: int = 5, warmup: int = 1
) -> tuple[float, Any]:
    """Run ``fn`` ``warmup`` times, then ``repeats`` times; return (median ms, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def interleaved(
    fns: dict[str, Callable[[], Any]], *, rounds: int = 5, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time several methods on the same inputs in alternating rounds (A, B, C, A, B, C, ...).

    Each method first runs ``warmup`` times (compilation, caches, allocator); then every round runs
    each method once, so a change of machine load during the run falls on all of them alike.
    Returns (milliseconds per method, one per round; the last result of each method).
    """
    results = {name: None for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times, results


def summary(times: list[float]) -> dict[str, float]:
    """Median, minimum and spread (``max/min``) of repeated timings, in ms."""
    return {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "spread": round(max(times) / min(times), 3),
        "repeats": len(times),
    }


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line (with the date) and flush."""
    record = {"date": date.today().isoformat(), **record}
    print(json.dumps(record, default=float), flush=True)
    sys.stdout.flush()


def pick_device(arg: str | None) -> torch.device:
    """Return the requested device, defaulting to CUDA when available."""
    if arg:
        return torch.device(arg)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_args(description: str | None) -> argparse.Namespace:
    """Parse the options every benchmark script takes: ``--small``, ``--device``, ``--repeats``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="CPU sizes")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    return parser.parse_args()
