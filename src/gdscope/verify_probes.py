"""``gdscope verify-probes``: every fast instrument against its dense float64 oracle on random nets.

For each case (a freshly drawn network and data) it compares

* ``ntk_gram`` (structured or generic path) with ``_reference.dense_ntk``,
* the Hessian-vector product with ``_reference.dense_hessian`` times a random vector,
* ``sharpness`` (Lanczos) with the top eigenvalue of the dense Hessian, and on the block of the
  first parameter (``params=``) with the top eigenvalue of that block,
* ``ggn_sharpness`` with the top eigenvalue of the dense Gauss–Newton matrix ``Jᵀ H_F J``,
* ``preconditioned_sharpness`` with the top eigenvalue of the dense ``P^{-1/2} H P^{-1/2}``
  (``P`` read from the state of an Adam step taken at learning rate 0, as torch applies it),
* ``ntk_spectrum`` with ``eigvalsh`` of the dense NTK,
* ``linearized_prediction`` with ``f₀ + J₀ Δθ`` from the dense Jacobian,

and reports the relative error of each (max-abs error over the largest reference entry) against
its tolerance: 1e-10 in float64 and 1e-5 in float32 for exact paths, the requested 1e-6 for
Lanczos eigenvalues (both dtypes; fp32 products bound it at about 1e-6 of ‖H‖).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gdscope import losses, models
from gdscope.functional import clone_params, flatten, params_of
from gdscope.probes import _reference as ref
from gdscope.probes import _reference_extra as extra
from gdscope.probes.gauss_newton import ggn_sharpness
from gdscope.probes.hessian import hessian_operator, sharpness
from gdscope.probes.linearization import linearized_prediction
from gdscope.probes.ntk import ntk_gram, ntk_spectrum
from gdscope.probes.preconditioned import preconditioned_sharpness

EXACT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
LANCZOS_TOL = 1e-6


@dataclass(frozen=True)
class Check:
    """One comparison of a fast path with its oracle."""

    case: str
    quantity: str
    rel_err: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """Whether the error is within tolerance."""
        return self.rel_err <= self.tolerance


class _Quadratic(nn.Module):
    """A custom module the structured NTK path does not know (exercises the generic path)."""

    def __init__(self, d: int, width: int, generator: torch.Generator, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, d, generator=generator, dtype=dtype) / d**0.5)
        self.norm = nn.LayerNorm(width, dtype=dtype)
        self.readout = nn.Parameter(
            torch.randn(width, generator=generator, dtype=dtype) / width**0.5
        )

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.norm(x @ self.weight.T))
        return (h * h.roll(1, dims=1) @ self.readout).unsqueeze(-1)


def _cases(dtype: torch.dtype, seed: int) -> dict[str, Callable[[], tuple[nn.Module, Tensor]]]:
    def vectors(d: int, n: int = 6) -> Tensor:
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        return (x / x.norm(dim=1, keepdim=True)).to(dtype)

    def images(n: int = 4) -> Tensor:
        gen = torch.Generator().manual_seed(seed + 2)
        return torch.randn(n, 2, 5, 5, generator=gen, dtype=torch.float64).to(dtype)

    common = {"seed": seed, "dtype": dtype}
    cases: dict[str, Callable[[], tuple[nn.Module, Tensor]]] = {
        f"mlp[{p}]": (
            lambda p=p: (
                models.mlp(
                    5, 12, depth=3, out_dim=2, activation="tanh", parameterization=p, **common
                ),
                vectors(5),
            )
        )
        for p in models.PARAMETERIZATIONS
    }
    cases["mlp[relu,residual]"] = lambda: (
        models.mlp(5, 10, depth=4, residual=True, **common),
        vectors(5),
    )
    cases["mlp[data span]"] = lambda: (  # n ≤ d/2: the curvature probes reduce to x's row span
        models.mlp(16, 8, depth=2, activation="tanh", **common),
        vectors(16),
    )
    cases["two_layer"] = lambda: (models.two_layer(5, 16, **common), vectors(5))
    cases["cnn"] = lambda: (models.cnn(2, 5, 3, 2, activation="tanh", **common), images())
    cases["resnet"] = lambda: (
        models.resnet(2, 5, 3, 2, depth=2, activation="softplus", **common),
        images(),
    )
    cases["custom (generic path)"] = lambda: (
        _Quadratic(5, 8, torch.Generator().manual_seed(seed), dtype),
        vectors(5),
    )
    return cases


def _rel(actual: Tensor, expected: Tensor) -> float:
    expected = expected.detach().double().cpu()
    scale = float(expected.abs().max()) or 1.0
    return float((actual.detach().double().cpu() - expected).abs().max()) / scale


def _targets(model: nn.Module, x: Tensor, seed: int) -> Tensor:
    with torch.no_grad():
        shape = model(x).shape
    gen = torch.Generator().manual_seed(seed + 3)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(x.dtype)


def _checks_for(name: str, model: nn.Module, x: Tensor, seed: int) -> list[Check]:
    dtype = next(model.parameters()).dtype
    exact = EXACT_TOL[dtype]
    y = _targets(model, x, seed)
    out: list[Check] = []

    dense_k = ref.dense_ntk(model, x)
    out.append(Check(name, "ntk_gram", _rel(ntk_gram(model, x), dense_k), exact))
    eig = torch.linalg.eigvalsh(dense_k)
    spec = ntk_spectrum(ntk_gram(model, x))
    out.append(
        Check(name, "ntk λ_max", abs(spec.lambda_max - float(eig[-1])) / float(eig[-1]), exact)
    )
    out.append(  # relative to λ_max: λ_min may be ~0
        Check(name, "ntk λ_min", abs(spec.lambda_min - float(eig[0])) / float(eig[-1]), exact)
    )

    hessian = ref.dense_hessian(model, losses.mse, (x, y))
    gen = torch.Generator().manual_seed(seed + 4)
    v = torch.randn(hessian.shape[0], generator=gen, dtype=torch.float64)
    op = hessian_operator(model, losses.mse, (x, y))
    out.append(Check(name, "hvp", _rel(op.matvec(v), hessian @ v), exact))
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    value = sharpness(model, losses.mse, (x, y), tol=1e-8)
    out.append(Check(name, "sharpness", abs(value - top) / abs(top), LANCZOS_TOL))
    jac = ref.dense_jacobian(model, x)
    out.extend(_curvature_checks(name, model, (x, y), hessian, jac))

    init = clone_params(params_of(model))
    moved = {
        k: t + 0.01 * torch.randn(t.shape, generator=gen, dtype=t.dtype) for k, t in init.items()
    }
    expected = (
        ref.float64_copy(model)(x.double()).reshape(-1)
        + jac @ (flatten(moved) - flatten(init)).double()
    )
    got = linearized_prediction(model, init, moved, x).reshape(-1)
    out.append(Check(name, "linearized f", _rel(got, expected), exact))
    return out


def _curvature_checks(
    name: str, model: nn.Module, batch: tuple[Tensor, Tensor], hessian: Tensor, jac: Tensor
) -> list[Check]:
    """Compare the block, Gauss–Newton and preconditioned top eigenvalues with dense ones.

    ``hessian`` and ``jac`` are the dense float64 Hessian and Jacobian at the model's weights;
    Adam's state comes from one step at learning rate 0 (the weights stay where they are).
    """
    first = next(n for n, p in model.named_parameters() if p.requires_grad)
    block = extra.block_index(model, [first])
    ggn = jac.T @ extra.dense_loss_output_hessian(model, losses.mse, batch) @ jac
    adam = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.0)
    losses.mse(model(batch[0]), batch[1]).backward()
    adam.step()
    model.zero_grad(set_to_none=True)
    scale = extra.dense_preconditioner(model, adam).rsqrt()
    pairs = {
        "sharpness, one block": (
            sharpness(model, losses.mse, batch, tol=1e-8, params=[first]),
            hessian[block][:, block],
        ),
        "ggn λ_max": (ggn_sharpness(model, losses.mse, batch, tol=1e-8), ggn),
        "preconditioned λ_max": (
            preconditioned_sharpness(model, losses.mse, batch, adam, tol=1e-8),
            scale[:, None] * hessian * scale[None, :],
        ),
    }
    checks = []
    for quantity, (got, matrix) in pairs.items():
        want = extra.dense_top_eigenvalue(matrix)
        checks.append(Check(name, quantity, abs(got - want) / abs(want), LANCZOS_TOL))
    return checks


def verify_probes(
    dtype: torch.dtype = torch.float64, seed: int = 0, cases: Collection[str] | None = None
) -> list[Check]:
    """Run every check on freshly drawn nets; return the list of ``Check`` results.

    ``cases`` names the nets to check (e.g. ``["cnn", "mlp[ntk]"]``); None for all of them.
    """
    built = _cases(dtype, seed)
    unknown = sorted(set(cases or ()) - set(built))
    if unknown:
        raise ValueError(f"cases: unknown {unknown}; accepted: {sorted(built)}")
    results: list[Check] = []
    for name, build in built.items():
        if cases is not None and name not in cases:
            continue
        model, x = build()
        model.eval()
        results.extend(_checks_for(name, model, x, seed))
    return results
