"""gdscope against the installed peer packages, one process, one thread, interleaved rounds.

Every method runs on identical weights and inputs, single-threaded: the process is pinned to one
core before JAX is imported (current XLA ignores its thread flags and otherwise uses every core),
and ``torch.set_num_threads(1)``; each record's ``cores_used`` (CPU time over wall time) shows
it. Each method runs once or more to warm up (JAX compilation, allocator), then in ``--rounds``
alternating rounds ``A, B, C, A, B, C, …`` so that a change in machine load hits every method
alike. Each record gives the median, the minimum and the spread ``max/min`` of the rounds, the ratio to gdscope's
median (``> 1``: the peer is slower), and the relative error against an independent reference.

* W1 NTK Gram of an MLP 784→m→m→m→1, fp32, on n inputs: gdscope ``ntk_gram`` against
  neural-tangents' ``empirical_ntk_fn`` with ``STRUCTURED_DERIVATIVES`` and
  ``JACOBIAN_CONTRACTION`` (``jax.jit``, ``block_until_ready``) and PyTorch's ``vmap(jacrev)``.
  Reference: neural-tangents' structured derivatives in float64. Error: largest entry difference
  over the largest entry.
* W2 sharpness of fc-tanh 3072→200→200→10 (PyTorch default init, ½-sum MSE, n random inputs) at
  relative error ≤ 1e-3: gdscope Lanczos against hessian-eigenthings' Lanczos (20 steps),
  curvlinops' ``HessianLinearOperator`` + scipy ``eigsh`` and PyHessian's power iteration; with
  the count of Hessian-vector products and the time of one (see ``_peers_curvature.py``).
* W2c Hessian trace from 30 products: gdscope Hutchinson and Hutch++ against PyHessian's
  Hutchinson, with the error against the exact trace.
* W2d Hessian spectral density, 30 Lanczos steps from one probe: gdscope's SLQ against
  PyHessian's ``density`` (see ``_peers_density.py``).

Prints one JSON line per measurement. ``--tiny`` runs toy sizes (a smoke test).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse
import importlib.util
import sys
from typing import Any

import numpy as np
import torch

PEERS = {
    "jax": "jax",
    "neural_tangents": "neural-tangents",
    "curvlinops": "curvlinops-for-pytorch",
    "pyhessian": "pyhessian",
    "hessian_eigenthings": "hessian-eigenthings",
    "scipy": "scipy",
}
WORKLOAD_PEERS = {
    "ntk": ("jax", "neural_tangents"),
    "sharpness": ("curvlinops", "pyhessian", "hessian_eigenthings", "scipy"),
    "trace": ("pyhessian",),
    "density": ("pyhessian",),
}
NTK_SIZES = [(64, 256), (256, 512), (512, 512)]
GPU_NTK_SIZES = [(64, 1024), (1024, 1024), (4096, 1024), (1024, 4096), (4096, 4096)]
JACOBIAN_BYTES = 8 * 2**30  # the Jacobian routes run only where n·P float32 entries fit this
TINY_NTK_SIZES = [(8, 16)]
D_IN = 784


def missing_peers(only: list[str] | None = None) -> list[str]:
    """Return the pip names of the peer packages (of the workloads ``only``) not importable here."""
    wanted = {m for w in only or WORKLOAD_PEERS for m in WORKLOAD_PEERS[w]}
    return [
        pip
        for module, pip in PEERS.items()
        if module in wanted and importlib.util.find_spec(module) is None
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU sizes (the default here)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, seconds (a smoke test)")
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda with --only ntk (JAX on the GPU)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per method (>= 1)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(WORKLOAD_PEERS),
        help="run only this workload (repeatable); default all",
    )
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device: got {args.device!r}; use cpu or cuda")
    if args.device == "cuda" and set(args.only or ()) != {"ntk"}:
        parser.error("--device cuda: only the NTK peers run on the GPU; add --only ntk")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use cpu")
    return args


# --- W1: NTK Gram ---------------------------------------------------------------------------


def jax_mlp(params: list[tuple[Any, Any, float, float]], x: Any) -> Any:
    """The MLP ``h ← α h Wᵀ + α_b b`` with ReLU between layers, on JAX arrays.

    ``Wᵀ`` is stored (``(d_in, d_out)``, as stax's ``Dense``) and unit multipliers are left out:
    neural-tangents' structured rules then see a plain ``dot_general`` and ``add`` per layer (with
    a ``transpose`` of the weight in the graph its cost was that of the Jacobian contraction).
    """
    import jax.numpy as jnp

    h = x
    for i, (w_t, b, alpha, alpha_b) in enumerate(params):
        y = h @ w_t if alpha == 1.0 else alpha * (h @ w_t)
        h = y + (b if alpha_b == 1.0 else alpha_b * b)
        if i < len(params) - 1:
            h = jnp.maximum(h, 0.0)
    return h


def jax_params(model: torch.nn.Module, dtype: Any) -> tuple[list[Any], list[tuple[float, float]]]:
    """Copy the layers' transposed weights and biases (JAX arrays) and multipliers ``(α, α_b)``."""
    import jax.numpy as jnp

    arrays, scales = [], []
    for layer in model.layers:  # pyright: ignore[reportGeneralTypeIssues]
        w, b = layer.weight.detach().cpu().numpy().T, layer.bias.detach().cpu().numpy()
        arrays.append((jnp.asarray(w, dtype=dtype), jnp.asarray(b, dtype=dtype)))
        scales.append((float(layer.multiplier), float(layer.bias_multiplier)))
    return arrays, scales


def nt_kernel(scales: list[tuple[float, float]], implementation: int) -> Any:
    """Return the jitted ``(x, params) ↦ K`` of neural-tangents' empirical NTK, ``(n, n)``."""
    import jax
    from _peers_compat import neural_tangents

    nt = neural_tangents()

    def apply_fn(params: Any, x: Any, **_kwargs: Any) -> Any:
        return jax_mlp([(w, b, a, ab) for (w, b), (a, ab) in zip(params, scales, strict=True)], x)

    fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=implementation)
    jitted = jax.jit(lambda x, params: fn(x, None, params))
    return lambda x, params: jitted(x, params).block_until_ready()


def rel_err(gram: Any, ref: np.ndarray) -> float:
    """``max |G − R| / max |R|`` in float64, G reshaped to ``(n, n)``."""
    if isinstance(gram, torch.Tensor):
        gram = gram.detach().cpu().numpy()
    g = np.asarray(gram, dtype=np.float64).reshape(ref.shape)
    return float(np.abs(g - ref).max() / np.abs(ref).max())


def run_ntk(sizes: list[tuple[int, int]], rounds: int, device: torch.device) -> None:
    kernels: dict[tuple[tuple[float, float], ...], tuple[Any, Any]] = {}
    for n, m in sizes:
        run_ntk_case(n, m, rounds, kernels, device)


def run_ntk_case(
    n: int, m: int, rounds: int, kernels: dict[Any, tuple[Any, Any]], device: torch.device
) -> None:
    """Time the NTK methods on one ``(n, m)``; jitted NT kernels are reused across sizes.

    The Jacobian routes (NT's contraction, ``vmap(jacrev)``) run only where the ``n × P``
    Jacobian fits :data:`JACOBIAN_BYTES`. On CUDA every gdscope call ends with a synchronize
    (NT's with ``block_until_ready``), and JAX runs on the same GPU.
    """
    import jax
    import jax.numpy as jnp
    from _common import device_name, emit, interleaved, summary, sync
    from bench_ntk import jacrev_contraction

    import gdscope as gs

    model = gs.models.mlp(D_IN, m, depth=4, out_dim=1, seed=0, device=device)
    x = torch.randn(n, D_IN, generator=torch.Generator().manual_seed(0))
    params32, scales = jax_params(model, jnp.float32)
    params64, _ = jax_params(model, jnp.float64)
    x32, x64 = jnp.asarray(x.numpy(), jnp.float32), jnp.asarray(x.numpy(), jnp.float64)
    x = x.to(device)
    if tuple(scales) not in kernels:
        kernels[tuple(scales)] = (nt_kernel(scales, 3), nt_kernel(scales, 1))
    nt_sd, nt_jc = kernels[tuple(scales)]
    reference = np.asarray(nt_sd(x64, params64), dtype=np.float64).reshape(n, n)
    ours = "gdscope ntk_gram (structured)"

    def timed(fn: Any) -> Any:
        def call() -> Any:
            result = fn()
            sync(device)
            return result

        return call

    fns = {
        ours: timed(lambda: gs.probes.ntk_gram(model, x)),
        "neural-tangents STRUCTURED_DERIVATIVES (jit)": lambda: nt_sd(x32, params32),
    }
    if n * sum(p.numel() for p in model.parameters()) * 4 <= JACOBIAN_BYTES:
        fns["neural-tangents JACOBIAN_CONTRACTION (jit)"] = lambda: nt_jc(x32, params32)
        fns["torch vmap(jacrev) contraction"] = timed(lambda: jacrev_contraction(model, x))
    times, results, cpu = interleaved(fns, rounds=rounds, warmup=1)
    ours_ms = summary(times[ours])["median_ms"]
    for name, ts in times.items():
        stats = summary(ts, cpu[name])
        emit(
            {
                "workload": "W1 ntk_gram",
                "method": name,
                "n": n,
                "m": m,
                "k": 1,
                "device": "cpu (1 thread)" if device.type == "cpu" else device_name(device),
                **stats,
                "ratio_to_gdscope": round(stats["median_ms"] / ours_ms, 3),
                "rel_err": rel_err(results[name], reference),
                "reference": "neural-tangents STRUCTURED_DERIVATIVES in float64",
                "jax": jax.__version__,
                "torch": torch.__version__,
            }
        )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = missing_peers(args.only)
    if missing:
        print(
            f"bench --peers: peer package(s) not installed: {', '.join(missing)} "
            f"(pip install {' '.join(missing)})",
            file=sys.stderr,
        )
        return 2
    if args.rounds < 1:
        print("bench --peers: --rounds must be >= 1", file=sys.stderr)
        return 2
    from _common import pin_to_one_core

    device = torch.device(args.device)
    os.environ.setdefault("JAX_PLATFORMS", args.device)
    if device.type == "cpu":
        pin_to_one_core()  # before JAX starts its thread pool: XLA ignores its own thread flags
        torch.set_num_threads(1)
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 references; fp32 arrays stay fp32
    import _peers_curvature as curv

    only = set(args.only or WORKLOAD_PEERS)
    if "ntk" in only:
        sizes = GPU_NTK_SIZES if device.type == "cuda" else NTK_SIZES
        run_ntk(TINY_NTK_SIZES if args.tiny else sizes, args.rounds, device)
    case = curv.TINY if args.tiny else curv.SMALL
    if "sharpness" in only:
        curv.run_sharpness(case, args.rounds)
    if "trace" in only:
        curv.run_trace(case, args.rounds)
    if "density" in only:
        import _peers_density

        _peers_density.run_density(case, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
