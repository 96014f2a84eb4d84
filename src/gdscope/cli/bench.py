"""``gdscope bench``: the benchmark scripts of a source checkout (``benchmarks/``).

Each script prints one JSON line per measurement; ``--peers`` runs ``benchmarks/bench_peers.py``,
which times gdscope against the installed peer packages in one process (see its docstring).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gdscope.cli.app import UserError, check_device

PEER_WORKLOADS = ("ntk", "sharpness", "trace", "density")
"""What ``--only`` names with ``--peers`` (``benchmarks/bench_peers.py``'s ``WORKLOAD_PEERS``)."""


def bench(
    small: Annotated[
        bool, typer.Option(help="CPU sizes, a few minutes on 2 cores (the peers: always)")
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(help="cpu | cuda | cuda:N; default cuda when available (the peers: cpu)"),
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
            f"--only then names its workloads ({', '.join(PEER_WORKLOADS)}), and --device cuda "
            "runs the NTK peers on the GPU"
        ),
    ] = False,
    rounds: Annotated[
        int | None, typer.Option(help="with --peers: timed rounds per method (default 5)")
    ] = None,
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
    chosen = list(dict.fromkeys(only or []))  # each once, in the order given
    if device is not None:
        _check_bench_device(device)
    if rounds is not None and (not peers or rounds < 1):
        fix = "a positive count" if peers else "it sets the rounds of --peers; add --peers"
        raise UserError(f"--rounds: got {rounds}; {fix}")
    if peers:
        script, args = _peer_run(peer_script, folder, small, device, chosen)
        runs = [(script, args + (["--rounds", str(rounds)] if rounds else []))]
    else:
        for name in chosen:
            if name not in names:
                hint = " (a peer workload: add --peers)" if name in PEER_WORKLOADS else ""
                raise UserError(
                    f"--only: unknown benchmark {name!r}{hint}; accepted: {', '.join(names)}"
                )
        args = [*(["--small"] if small else []), *(["--device", device] if device else [])]
        runs = [(names[n], args) for n in chosen or names]
    for script, script_args in runs:
        result = subprocess.run(
            [sys.executable, str(script), *script_args], cwd=folder, check=False
        )
        if result.returncode != 0:
            raise typer.Exit(result.returncode)


def _check_bench_device(device: str) -> None:
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise UserError(f"--device: got {device!r}; use cpu, cuda or cuda:N")
    check_device(device)


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
    spec.loader.exec_module(script)  # its WORKLOAD_PEERS: each workload's peer packages
    workloads = list(script.WORKLOAD_PEERS)
    for name in only:
        if name not in workloads:
            raise UserError(
                f"--only: unknown peer workload {name!r}; accepted with --peers: "
                f"{', '.join(workloads)} (drop --peers for the anchor scripts)"
            )
    if device not in (None, "cpu", "cuda"):
        raise UserError(f"--device: got {device!r} with --peers; use cpu or cuda")
    if device == "cuda" and only != ["ntk"]:
        others = [name for name in only if name != "ntk"]
        drop = f"drop --only {' --only '.join(others)}" if others and "ntk" in only else ""
        raise UserError(
            "bench --peers --device cuda: only the NTK peers run on the GPU (JAX beside torch); "
            + (drop or "use --only ntk")
        )
    if device == "cuda" and small:
        raise UserError("--small: the CPU sizes; drop it with --peers --device cuda")
    missing = script.missing_peers(only or None)
    if missing:
        raise UserError(
            f"bench --peers: peer package(s) not installed: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})"
        )
    args = ["--small"] if small else []
    args += [arg for name in only for arg in ("--only", name)]
    return script_path, args + (["--device", device] if device else [])
