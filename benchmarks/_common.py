"""Timing and reporting shared by the benchmark scripts: medians of wall time, one JSON line each."""

from __future__ import annotations

import argparse
import json
import os
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


FLUSH_BYTES = 64 * 2**20
"""Bytes swept before each timed call of :func:`interleaved`: twice this machine's 32 MiB L3."""


def interleaved(
    fns: dict[str, Callable[[], Any]], *, rounds: int = 5, warmup: int = 1
) -> tuple[dict[str, list[float]], dict[str, Any], dict[str, list[float]]]:
    """Time several methods on the same inputs in alternating rounds (A, B, C, A, B, C, ...).

    Each method first runs ``warmup`` times (compilation, caches, allocator); then every round runs
    each method once, so a change of machine load during the run falls on all of them alike.
    Before each timed call a :data:`FLUSH_BYTES` buffer is rewritten, so every method starts with
    cold caches: otherwise a method that follows a large one (the Jacobian contractions sweep
    gigabytes) starts cold and one that follows a small one warm, and the order decides the
    ratio (measured: gdscope's NTK at (64, 256), 1.8 ms after itself, 2.8 ms after a 64 MiB sweep).
    Returns (wall milliseconds per method, one per round; the last result of each method; the
    process's CPU milliseconds in the same calls, which exceed the wall time when a method runs
    on more than one core).
    """
    results = {name: None for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    sweep = torch.zeros(FLUSH_BYTES // 4)
    for _ in range(rounds):
        for name, fn in fns.items():
            sweep.add_(1.0)
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times, results, cpu


def pin_to_one_core() -> int | None:
    """Restrict this process to one CPU core; return it (``None`` where the OS has no affinity).

    Call it before JAX is imported. XLA's CPU runtime in current JAX ignores
    ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` and sizes its thread
    pool by the cores the process may use: a jitted 256×784×512 matmul took 1.17 ms of wall time
    and 2.02 ms of CPU time unpinned (2 cores), 1.94 ms and 1.94 ms pinned (jax 0.10.2,
    2026-12-05), against torch's 2.02 ms on one thread. Pinning makes "one thread" true for
    every method; the records' ``cores_used`` shows it.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def summary(times: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    """Median, minimum and spread (``max/min``) of repeated timings, in ms.

    With the CPU times of the same calls, ``cores_used`` is total CPU time over total wall time
    (about 1 for a single-threaded method).
    """
    stats = {
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "spread": round(max(times) / min(times), 3),
        "repeats": len(times),
    }
    if cpu is not None:
        stats["cores_used"] = round(sum(cpu) / sum(times), 2)
    return stats


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
