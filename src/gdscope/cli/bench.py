"""``gdscope bench``: the benchmark scripts of a source checkout (``benchmarks/``).

Each script prints one JSON line per measurement; ``--peers`` runs ``benchmarks/bench_peers.py``,
which times gdscope against the installed peer packages in one process (see its docstring).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gdscope.cli.app import UserError


def bench(
    small: Annotated[bool, typer.Option(help="CPU sizes (a few minutes on 2 cores)")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu | cuda; default cuda when available")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="run only these scripts: ntk, hessian, ensemble (repeatable)"),
    ] = None,
    peers: Annotated[
        bool,
        typer.Option(
            help="time gdscope against the installed peer packages instead (neural-tangents, "
            "curvlinops, PyHessian, hessian-eigenthings): one thread, interleaved rounds; "
            "--only then names its workloads (ntk, sharpness, trace), and --device cuda "
            "runs the NTK peers on the GPU"
        ),
    ] = False,
) -> None:
    """Time gdscope against the anchor methods; print one JSON line per measurement.

    With ``--peers``, ``benchmarks/bench_peers.py`` times gdscope and each installed peer package
    on the same inputs in alternating rounds, on one core (the process is pinned to it; each
    record's ``cores_used`` shows it) with the caches swept before each call, and prints median,
    minimum, spread, the ratio to gdscope and the error against an independent reference.
    """
    import subprocess

    folder = Path(__file__).resolve().parents[3] / "benchmarks"
    scripts = sorted(folder.glob("bench_*.py"))
    if not scripts:
        raise UserError(f"bench: no benchmark scripts in {folder}; run from a source checkout")
    names = {s.stem.removeprefix("bench_"): s for s in scripts}
    peer_script = names.pop("peers", None)
    if peers:
        runs = [_peer_run(peer_script, folder, small, device, only or [])]
    else:
        for name in only or []:
            if name not in names:
                raise UserError(f"--only: unknown benchmark {name!r}; accepted: {', '.join(names)}")
        args = [*(["--small"] if small else []), *(["--device", device] if device else [])]
        runs = [(names[n], args) for n in only] if only else [(s, args) for s in names.values()]
    for script, script_args in runs:
        result = subprocess.run(
            [sys.executable, str(script), *script_args], cwd=folder, check=False
        )
        if result.returncode != 0:
            raise typer.Exit(result.returncode)


def _peer_run(
    script_path: Path | None, folder: Path, small: bool, device: str | None, only: list[str]
) -> tuple[Path, list[str]]:
    """Check ``bench --peers`` (workloads, device, installed peers); return its script and args."""
    import importlib.util

    if script_path is None:
        raise UserError(f"bench --peers: no bench_peers.py in {folder}")
    spec = importlib.util.spec_from_file_location("gdscope_bench_peers", script_path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(
        script
    )  # its WORKLOAD_PEERS: the packages each workload is timed against
    workloads = list(script.WORKLOAD_PEERS)
    for name in only:
        if name not in workloads:
            raise UserError(
                f"--only: unknown peer workload {name!r} with --peers; accepted: "
                f"{', '.join(workloads)}"
            )
    if device not in (None, "cpu", "cuda"):
        raise UserError(f"--device: got {device!r}; use cpu or cuda")
    if device == "cuda" and set(only) != {"ntk"}:
        raise UserError(
            "bench --peers --device cuda: only the NTK peers run on the GPU (JAX beside torch); "
            "add --only ntk"
        )
    missing = script.missing_peers(only or None)
    if missing:
        raise UserError(
            f"bench --peers: peer package(s) not installed: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )
    args = ["--small"] if small else []
    args += [arg for name in only for arg in ("--only", name)]
    return script_path, args + (["--device", device] if device else [])
