"""W2 sharpness and W2c Hessian trace against the peer packages (part of ``bench_peers.py``).

Network: fc-tanh ``d → h → h → k`` (Cohen et al. 2021's 3072→200→200→10; PyTorch's default init),
loss ``L = (1/2n) Σ_i ‖f(x_i) − y_i‖²`` (``gdscope.losses.mse``; the peers get the same function as
an ``nn.Module``), n Gaussian inputs with one-hot targets, float32.

References, independent of gdscope's code:

* sharpness: scipy ``eigsh(k=1, which="LA", tol=1e-10)`` on curvlinops' Hessian operator of a
  float64 copy of the network;
* trace: exact, in float64. For a linear layer ``z = W h + b`` inside the network, ``z`` is linear
  in ``(W, b)`` and ``h`` does not depend on them, so ``∂²ℓ_i/∂W_ab² = h_b² (∇²_z ℓ_i)_aa`` and

  .. math::  \\mathrm{tr}\\,∇²L = \\frac{1}{n} Σ_i Σ_ℓ (‖h_{ℓ,i}‖² + 1)\\, \\mathrm{tr}\\,∇²_{z_ℓ} ℓ_i,

  with the per-example Hessian ``∇²_{z_ℓ} ℓ_i`` (``h × h``) of the rest of the network by
  ``torch.func.hessian`` under ``vmap`` (the Hessian's diagonal blocks are those of the layers'
  weights and biases; the trace needs nothing else).
"""

from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from _common import emit, interleaved, summary
from torch import Tensor, nn

import gdscope as gs

SHARPNESS_TOL = 1e-3
TRACE_PROBES = 30
EIGENTHINGS_STEPS = 20


@dataclass(frozen=True)
class Case:
    """Sizes of the fc-tanh network and the batch."""

    d_in: int
    hidden: int
    out: int
    n: int


SMALL = Case(3072, 200, 10, 256)
TINY = Case(12, 8, 3, 16)


class HalfMSE(nn.Module):
    """``gdscope.losses.mse`` as a module: ``(1/2n) Σ ‖out − y‖²``.

    ``reduction`` tells curvlinops that it is a mean over the examples of a batch.
    """

    reduction = "mean"

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (out - y).pow(2).sum() / out.shape[0]


def fc_tanh(case: Case, seed: int = 0) -> nn.Sequential:
    """fc-tanh with PyTorch's default initialization."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(case.d_in, case.hidden),
        nn.Tanh(),
        nn.Linear(case.hidden, case.hidden),
        nn.Tanh(),
        nn.Linear(case.hidden, case.out),
    )


def data(case: Case) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.n, case.d_in, generator=gen)
    labels = torch.randint(0, case.out, (case.n,), generator=gen)
    return x, torch.nn.functional.one_hot(labels, case.out).float()


def exact_trace(model: nn.Sequential, batch: tuple[Tensor, Tensor]) -> float:
    """``tr ∇²L`` of ``HalfMSE`` exactly, by the layer identity of the module docstring."""
    x, y = batch
    n = x.shape[0]
    total = torch.zeros((), dtype=x.dtype)
    for i, layer in enumerate(model):
        if not isinstance(layer, nn.Linear):
            continue
        rest = model[i + 1 :]
        with torch.no_grad():
            h = model[:i](x)
            z = layer(h)

        def loss_of_z(z_i: Tensor, y_i: Tensor, rest: nn.Module = rest) -> Tensor:
            return 0.5 * (rest(z_i.unsqueeze(0)).squeeze(0) - y_i).pow(2).sum()

        hess = torch.func.vmap(torch.func.hessian(loss_of_z))(z, y)  # (n, h, h)
        traces = hess.diagonal(dim1=1, dim2=2).sum(1)
        weight = h.pow(2).sum(1) + (1.0 if layer.bias is not None else 0.0)
        total = total + (weight * traces).sum() / n
    return float(total.detach())


def _eigsh(op: Any, tol: float, counter: list[int] | None = None) -> float:
    from scipy.sparse.linalg import LinearOperator, eigsh

    dim = op.shape[0]
    v0 = np.random.default_rng(0).standard_normal(dim)
    if counter is not None:
        inner = op

        def matvec(v: np.ndarray) -> np.ndarray:
            counter[0] += 1
            return inner @ v

        op = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)  # pyright: ignore[reportCallIssue]
    values = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)  # pyright: ignore[reportArgumentType]
    return float(np.max(values))


def _curvlinops(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Any:
    import curvlinops

    params = [p for p in model.parameters() if p.requires_grad]
    return curvlinops.HessianLinearOperator(
        model, HalfMSE(), params, [batch], progressbar=False
    ).to_scipy()


def reference_sharpness(model: nn.Module, batch: tuple[Tensor, Tensor]) -> float:
    """scipy eigsh (tol 1e-10) on curvlinops' Hessian of a float64 copy."""
    model64 = copy.deepcopy(model).double()
    batch64 = (batch[0].double(), batch[1].double())
    return _eigsh(_curvlinops(model64, batch64), 1e-10)


def _pyhessian_module() -> Any:
    import pyhessian  # noqa: F401  (its __init__ shadows the module name with the class)

    return sys.modules["pyhessian.hessian"]


def _pyhessian_hvp_counter() -> tuple[Any, list[int]]:
    ph = _pyhessian_module()
    original, count = ph.hessian_vector_product, [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    ph.hessian_vector_product = counted
    return original, count


def pyhessian_run(model: nn.Module, batch: tuple[Tensor, Tensor], method: Any) -> Any:
    """Return ``method(h)`` for PyHessian's ``hessian`` object ``h`` of the half-MSE on ``batch``.

    Seeded (its random probes come from torch's global generator); the ``.grad`` its
    ``loss.backward(create_graph=True)`` fills is cleared afterwards.
    """
    import pyhessian

    torch.manual_seed(0)
    with warnings.catch_warnings():  # its loss.backward(create_graph=True)
        warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
        h = pyhessian.hessian(model, HalfMSE(), data=batch, cuda=False)
        value = method(h)
    model.zero_grad(set_to_none=True)
    return value


def _pyhessian(model: nn.Module, batch: tuple[Tensor, Tensor], what: str) -> float:
    if what == "top":
        top = pyhessian_run(
            model, batch, lambda h: h.eigenvalues(maxIter=100, tol=SHARPNESS_TOL, top_n=1)
        )
        return float(top[0][0])
    traces = pyhessian_run(model, batch, lambda h: h.trace(maxIter=TRACE_PROBES, tol=0.0))
    return float(np.mean(traces))  # tol 0: all probes


def _pyhessian_products(model: nn.Module, batch: tuple[Tensor, Tensor], what: str) -> int:
    ph = _pyhessian_module()
    original, count = _pyhessian_hvp_counter()
    try:
        _pyhessian(model, batch, what)
    finally:
        ph.hessian_vector_product = original
    return count[0]


def _eigenthings_operator(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Any:
    import hessian_eigenthings as he

    return he.HessianOperator(model, [batch], he.supervised_loss(HalfMSE()))


def _eigenthings_top(model: nn.Module, batch: tuple[Tensor, Tensor]) -> float:
    import hessian_eigenthings as he

    result = he.lanczos(
        _eigenthings_operator(model, batch),
        k=1,
        max_iter=EIGENTHINGS_STEPS,
        which="LA",
        seed=0,
        reorthogonalize=True,
    )
    return float(result.eigenvalues[0])


def _curvlinops_top(model: nn.Module, batch: tuple[Tensor, Tensor], counter=None) -> float:
    return _eigsh(_curvlinops(model, batch), SHARPNESS_TOL, counter)


def _sharpness_products(model: nn.Module, batch: tuple[Tensor, Tensor]) -> int:
    """Count the Hessian-vector products of one ``gs.probes.sharpness`` call (as timed)."""
    from gdscope.probes._hvp import HessianOperator

    real = HessianOperator.matvec
    count = [0]

    def counting(self: Any, v: Tensor, out: Tensor | None = None) -> Tensor:
        count[0] += 1
        return real(self, v, out)

    HessianOperator.matvec = counting  # type: ignore[method-assign]
    try:
        gs.probes.sharpness(model, gs.losses.mse, batch, tol=SHARPNESS_TOL)
    finally:
        HessianOperator.matvec = real  # type: ignore[method-assign]
    return count[0]


def _span_product(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Any:
    """Return ``sharpness``'s product on the first layer's data span (None where it takes none)."""
    from gdscope.probes import _data_span, _hessian_build

    selected: dict[str, Tensor] = {n: p for n, p in model.named_parameters() if p.requires_grad}
    span = _data_span.data_span(model, batch[0], selected, SHARPNESS_TOL)
    if span is None:
        return None
    op = _hessian_build.build_operator(
        model, gs.losses.mse, batch, None, False, "bench", selected, span
    )
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1), dtype=op.dtype)
    product = op.buffered_matvec()
    return lambda: product(v)


def _new_inputs_sharpness(model: nn.Module, batch: tuple[Tensor, Tensor]) -> float:
    """``sharpness`` as on inputs it has not seen: the data span's QR is not reused."""
    from gdscope.probes import _data_span

    _data_span._LAST.clear()
    return gs.probes.sharpness(model, gs.losses.mse, batch, tol=SHARPNESS_TOL)


def run_sharpness(case: Case, rounds: int) -> None:
    model, batch = fc_tanh(case), data(case)
    mse = gs.losses.mse
    reference = reference_sharpness(model, batch)
    op = gs.probes.hessian_operator(model, mse, batch)
    product = op.buffered_matvec()  # as sharpness calls it: float32 in, one buffer out
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1), dtype=op.dtype)
    span_product = _span_product(model, batch)
    ours = "gdscope sharpness (Lanczos, tol 1e-3)"
    fresh = "gdscope sharpness, inputs new to it (data-span QR included)"
    fns = {
        ours: lambda: gs.probes.sharpness(model, mse, batch, tol=SHARPNESS_TOL),
        fresh: lambda: _new_inputs_sharpness(model, batch),
        f"hessian-eigenthings lanczos ({EIGENTHINGS_STEPS} steps)": lambda: _eigenthings_top(
            model, batch
        ),
        "curvlinops HessianLinearOperator + scipy eigsh(tol 1e-3)": lambda: _curvlinops_top(
            model, batch
        ),
        "PyHessian eigenvalues (power iteration, tol 1e-3)": lambda: _pyhessian(
            model, batch, "top"
        ),
        "gdscope one HVP (cached graph)": lambda: product(v),
        "gdscope hessian_operator build (gradient graph)": lambda: gs.probes.hessian_operator(
            model, mse, batch
        ),
    }
    if span_product is not None:
        fns["gdscope one HVP on the data span"] = span_product
    times, values, cpu = interleaved(fns, rounds=rounds, warmup=1)
    counter = [0]
    _curvlinops_top(model, batch, counter)
    products = {
        ours: _sharpness_products(model, batch),
        fresh: _sharpness_products(model, batch),
        f"hessian-eigenthings lanczos ({EIGENTHINGS_STEPS} steps)": EIGENTHINGS_STEPS,
        "curvlinops HessianLinearOperator + scipy eigsh(tol 1e-3)": counter[0],
        "PyHessian eigenvalues (power iteration, tol 1e-3)": _pyhessian_products(
            model, batch, "top"
        ),
    }
    stats = {name: summary(ts, cpu[name]) for name, ts in times.items()}
    hvp_ms = stats["gdscope one HVP (cached graph)"]["median_ms"]
    span = stats.get("gdscope one HVP on the data span")
    used_ms = hvp_ms if span is None else span["median_ms"]  # the product sharpness runs
    build_ms = stats["gdscope hessian_operator build (gradient graph)"]["median_ms"]
    base = {"workload": "W2 sharpness", **vars(case), "device": "cpu (1 thread)"}
    for name, hvps in products.items():
        value = float(values[name])
        err = abs(value - reference) / reference
        record = {
            **base,
            "method": name,
            **stats[name],
            "ratio_to_gdscope": round(stats[name]["median_ms"] / stats[ours]["median_ms"], 3),
            "value": value,
            "reference": reference,
            "rel_err": err,
            "meets_tol": err <= SHARPNESS_TOL,
            "hvps": hvps,
        }
        if name in (ours, fresh):
            record.update(
                one_hvp_ms=hvp_ms,
                one_span_hvp_ms=None if span is None else span["median_ms"],
                graph_build_ms=build_ms,
                time_over_hvps=round(stats[name]["median_ms"] / (hvps * used_ms), 3),
            )
        emit(record)


def run_trace(case: Case, rounds: int) -> None:
    import hessian_eigenthings as he

    model, batch = fc_tanh(case), data(case)
    mse = gs.losses.mse
    exact = exact_trace(copy.deepcopy(model).double(), (batch[0].double(), batch[1].double()))
    ours = f"gdscope hessian_trace (Hutchinson, {TRACE_PROBES})"
    fns = {
        ours: lambda: gs.probes.hessian_trace(model, mse, batch, samples=TRACE_PROBES)[0],
        f"gdscope hessian_trace_hutchpp ({TRACE_PROBES})": lambda: gs.probes.hessian_trace_hutchpp(
            model, mse, batch, probes=TRACE_PROBES
        ),
        f"PyHessian trace (Hutchinson, {TRACE_PROBES})": lambda: _pyhessian(model, batch, "trace"),
        f"hessian-eigenthings hutchinson ({TRACE_PROBES})": lambda: (
            he.hutchinson(
                _eigenthings_operator(model, batch), num_samples=TRACE_PROBES, seed=0
            ).estimate
        ),
    }
    times, values, cpu = interleaved(fns, rounds=rounds, warmup=1)
    base = {"workload": "W2c Hessian trace", **vars(case), "device": "cpu (1 thread)"}
    ours_ms = summary(times[ours])["median_ms"]
    for name, ts in times.items():
        stats = summary(ts, cpu[name])
        value = float(values[name])
        emit(
            {
                **base,
                "method": name,
                **stats,
                "ratio_to_gdscope": round(stats["median_ms"] / ours_ms, 3),
                "hvps": TRACE_PROBES,
                "value": value,
                "reference": exact,
                "reference_kind": "exact (layer identity, float64)",
                "rel_err": abs(value - exact) / abs(exact),
            }
        )
