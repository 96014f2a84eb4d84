"""The peers bench (``gdscope bench --peers``, benchmarks/bench_peers.py) at toy sizes.

It must run end to end on the installed peers, time every method, and its references must be
right: the exact Hessian trace by the layer identity equals a dense Hessian's trace, and every NTK
method (including torch's ``vmap(jacrev)``, independent of neural-tangents) agrees with the
float64 reference computed by neural-tangents' structured derivatives through the compatibility
layer benchmarks/_peers_compat.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _helpers import load_benchmark_module, run_cli

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _records(script: str, *args: str) -> list[dict]:
    """Run a benchmark script of benchmarks/ and return its JSON records."""
    out = subprocess.run(
        [sys.executable, script, *args],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _curvature_module():
    load_benchmark_module("_common")  # what _peers_curvature imports by bare name
    return load_benchmark_module("_peers_curvature")


def test_exact_trace_reference_equals_the_dense_hessian_trace():
    pytest.importorskip("scipy")
    curv = _curvature_module()
    case = curv.Case(d_in=5, hidden=4, out=3, n=7)
    model = curv.fc_tanh(case, seed=3).double()
    x, y = (t.double() for t in curv.data(case))
    params = [p for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shapes = [p.shape for p in params]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, [s.numel() for s in shapes])
        names = [n for n, _ in model.named_parameters()]
        named = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        out = torch.func.functional_call(model, named, (x,))
        return 0.5 * (out - y).pow(2).sum() / x.shape[0]

    dense = torch.autograd.functional.hessian(loss, flat)
    assert isinstance(dense, torch.Tensor)
    exact = curv.exact_trace(model, (x, y))
    assert abs(exact - float(dense.trace())) < 1e-12 * abs(float(dense.trace()))


def test_tiny_peers_bench_times_every_method_against_its_reference():
    peers = ("jax", "neural_tangents", "curvlinops", "pyhessian", "hessian_eigenthings")
    missing = [m for m in peers if importlib.util.find_spec(m) is None]  # NT imports only patched
    if missing:
        pytest.skip(f"peers not installed: {missing}")
    records = _records("bench_peers.py", "--tiny", "--rounds", "1")
    by = {(r["workload"], r["method"]): r for r in records}
    ntk = [r for r in records if r["workload"] == "W1 ntk_gram"]
    assert {r["method"].split(" ")[0] for r in ntk} == {"gdscope", "neural-tangents", "torch"}
    assert len(ntk) == 4 and all(r["rel_err"] < 1e-5 for r in ntk), ntk
    sharp = [r for r in records if r["workload"] == "W2 sharpness"]
    assert len(sharp) == 5 and all(r["hvps"] >= 1 and r["median_ms"] > 0 for r in sharp)
    ours = by[("W2 sharpness", "gdscope sharpness (Lanczos, tol 1e-3)")]
    assert ours["meets_tol"] and ours["time_over_hvps"] > 0
    fresh = by[("W2 sharpness", "gdscope sharpness, inputs new to it (data-span QR included)")]
    assert fresh["meets_tol"] and fresh["value"] == ours["value"]
    trace = [r for r in records if r["workload"] == "W2c Hessian trace"]
    assert len(trace) == 4 and all(r["reference_kind"].startswith("exact") for r in trace)
    density = [r for r in records if r["workload"] == "W2d Hessian spectral density"]
    assert {r["method"].split(" ")[0] for r in density} == {"gdscope", "PyHessian"}
    for r in density:  # one probe: its first moment is an estimate, its top node converges
        assert r["top_rel_err"] < 1e-3 and r["first_moment"] > 0, r
    # one core for every method (the process is pinned): CPU time never exceeds wall time
    assert all(0 < r["cores_used"] <= 1.05 for r in records), [r["cores_used"] for r in records]


def test_bench_peers_without_a_peer_says_which_in_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "pyhessian" else real(name, *a, **k),
    )
    code, _, err = run_cli(monkeypatch, capsys, "bench", "--small", "--peers")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pyhessian" in lines[0] and "not installed" in lines[0], err


def test_peers_bench_asks_only_for_the_peers_of_the_workloads_it_runs(monkeypatch):
    bench = load_benchmark_module("bench_peers")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name in ("pyhessian", "jax") else real(name, *a, **k),
    )
    assert bench.missing_peers(["ntk"]) == ["jax"]
    assert bench.missing_peers(["trace"]) == ["pyhessian"]
    assert bench.missing_peers() == ["jax", "pyhessian"]


def test_peers_bench_runs_on_cuda_only_for_the_ntk(monkeypatch, capsys):
    bench = load_benchmark_module("bench_peers")
    for cuda, argv, message in [
        (True, ["--device", "cuda", "--only", "sharpness"], "--only ntk"),
        (False, ["--device", "cuda", "--only", "ntk"], "CUDA is not available"),
    ]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        with pytest.raises(SystemExit) as stop:
            bench.parse(argv)
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench.parse(["--device", "cuda", "--only", "ntk"]).device == "cuda"


def test_the_bench_times_the_product_sharpness_runs_on_the_data_span():
    curv = _curvature_module()
    wide = curv.Case(d_in=30, hidden=4, out=3, n=5)  # n < d/2: sharpness works on the span
    model, batch = curv.fc_tanh(wide, seed=0), curv.data(wide)
    product = curv._span_product(model, batch)
    assert product is not None
    reduced = 4 * 5 + 4 + 4 * 4 + 4 + 3 * 4 + 3  # the first layer's 30 columns become n = 5
    assert product().shape == (reduced,)
    narrow = curv.Case(d_in=8, hidden=4, out=3, n=5)
    assert curv._span_product(curv.fc_tanh(narrow, seed=0), curv.data(narrow)) is None


def _ran(monkeypatch) -> list[list[str]]:
    """Record the scripts ``gdscope bench`` would run instead of running them."""
    calls: list[list[str]] = []
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0),
    )
    return calls


def _pretend(monkeypatch, *, cuda: bool, missing: tuple[str, ...] = ()) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",  # every peer "installed" (but those in missing): nothing is imported
        lambda name, *a, **k: None if name in missing else (real(name, *a, **k) or real("json")),
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)


def test_bench_peers_passes_its_workloads_and_device_to_the_peers_script(monkeypatch, capsys):
    _pretend(monkeypatch, cuda=True, missing=("pyhessian",))  # no NTK peer: --only ntk runs
    calls = _ran(monkeypatch)
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "bench",
        "--peers",
        "--only",
        "ntk",
        "--only",
        "ntk",
        "--device",
        "cuda",
    )
    assert code == 0, err
    assert len(calls) == 1 and Path(calls[0][1]).name == "bench_peers.py"
    assert calls[0][2:] == ["--only", "ntk", "--device", "cuda"]  # once; no anchor script ran
    calls.clear()
    assert run_cli(monkeypatch, capsys, "bench", "--peers", "--small", "--only", "ntk")[0] == 0
    assert calls[0][2:] == ["--small", "--only", "ntk"]
    calls.clear()  # --rounds was refused as no such option, though the script has it
    args = ["bench", "--peers", "--small", "--only", "ntk", "--rounds", "3"]
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    assert calls[0][2:] == ["--small", "--only", "ntk", "--rounds", "3"]


def test_bench_runs_each_anchor_script_once_with_its_flags(monkeypatch, capsys):
    _pretend(monkeypatch, cuda=False)
    calls = _ran(monkeypatch)
    code, _, err = run_cli(
        monkeypatch, capsys, "bench", "--small", "--device", "cpu", "--only", "ntk", "--only", "ntk"
    )
    assert code == 0, err
    assert [(Path(c[1]).name, c[2:]) for c in calls] == [
        ("bench_ntk.py", ["--small", "--device", "cpu"])
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peers", "--only", "hessian"], "unknown peer workload 'hessian'"),
        (["--peers", "--only", "sharpness", "--device", "cuda"], "use --only ntk"),
        (["--peers", "--only", "ntk", "--only", "trace", "--device", "cuda"], "drop --only trace"),
        (["--peers", "--only", "ntk", "--device", "cuda", "--small"], "drop it"),
        (["--peers", "--device", "tpu"], "--device: got 'tpu'"),
        (["--peers", "--only", "ntk"], "not installed: jax"),
        (["--only", "sharpness"], "add --peers"),
        (["--only", "ntk", "--device", "gpu"], "--device: got 'gpu'"),
        (["--only", "ntk", "--device", ""], "--device: got ''"),
        (["--only", "ntk", "--rounds", "3"], "--rounds: got 3; it sets the rounds of --peers"),
        (["--peers", "--only", "ntk", "--rounds", "0"], "--rounds: got 0; a positive count"),
    ],
)
def test_bench_refuses_in_one_line_and_runs_nothing(monkeypatch, capsys, args, message):
    _pretend(monkeypatch, cuda=True, missing=("jax",))
    calls = _ran(monkeypatch)
    code, out, err = run_cli(monkeypatch, capsys, "bench", *args)
    assert code == 2 and calls == [] and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.parametrize("peers", [[], ["--peers", "--only", "ntk"]])
def test_bench_on_cuda_without_cuda_is_refused_in_one_line(monkeypatch, capsys, peers):
    _pretend(monkeypatch, cuda=False)
    calls = _ran(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "bench", *peers, "--device", "cuda")
    assert code == 2 and calls == []
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_the_ntk_floor_script_times_three_methods_that_agree():
    missing = [m for m in ("jax", "neural_tangents") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"peers not installed: {missing}")
    records = _records("ntk_floor.py", "--tiny", "--rounds", "2")
    assert [r["method"].split(" ")[0] for r in records] == ["gdscope", "eager", "neural-tangents"]
    assert all(r["rel_err_to_ntk_gram"] < 1e-5 and r["median_ms"] > 0 for r in records), records


def test_the_clis_peer_workloads_are_the_scripts():
    from gdscope.cli.bench import PEER_WORKLOADS

    assert tuple(load_benchmark_module("bench_peers").WORKLOAD_PEERS) == PEER_WORKLOADS
