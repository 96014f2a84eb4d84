"""Seeded float64 cases shared by the tests that compare a fast instrument to a dense oracle.

A case is data: a name mapped to a builder ``seed -> Case`` that draws a small model, its loss and
one batch in float64, everything from ``seed`` (the habit of curvlinops' ``test/cases.py``).
``conftest.py`` expands them into fixtures: ``net_case`` over :data:`NET_CASES` (regression nets
under the mean squared error ``L = ½·mean_i ‖f(x_i) − y_i‖²``) and ``curvature_case`` over
:data:`CURVATURE_CASES` (a tanh MLP and a tanh CNN, each under mse and cross-entropy). A test
narrows the set with ``@pytest.mark.parametrize("net_case", [...], indirect=True)`` and changes
the seed with ``@pytest.mark.parametrize("case_seed", [...])``.

>>> case = NET_CASES["two_layer"](seed=3)
>>> case.name, tuple(case.batch[0].shape), tuple(case.net(case.batch[0]).shape)
('two_layer', (5, 3), (5, 1))
>>> bool(torch.equal(case.batch[1], NET_CASES["two_layer"](seed=3).batch[1]))  # seeded
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import gdscope as gs

F64 = torch.float64
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": gs.losses.mse,
    "ce": gs.losses.cross_entropy,
}


@dataclass(frozen=True)
class Case:
    """A float64 model with the loss and the batch it is measured on.

    ``gen`` continues the seeded stream that drew the batch (for perturbations and probe
    vectors); ``block`` is the prefix of one module's parameters, for the block instruments.
    """

    name: str
    net: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batch: tuple[Tensor, Tensor]
    gen: torch.Generator
    block: str | None = None


Builder = Callable[[int], Case]


def _targets(loss: str, n: int, k: int, gen: torch.Generator) -> Tensor:
    """Gaussian ``(n, k)`` regression targets for mse, class labels in ``[0, k)`` for ce."""
    if loss == "mse":
        return torch.randn(n, k, generator=gen, dtype=F64)
    return torch.randint(0, k, (n,), generator=gen)


def _regression(name: str, make: Callable[[int], nn.Module], d_in: int, k: int, n: int) -> Builder:
    """``seed -> Case``: the net ``make(seed)`` on ``n`` Gaussian inputs with Gaussian targets."""

    def build(seed: int = 0) -> Case:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, d_in, generator=gen, dtype=F64)
        return Case(name, make(seed), gs.losses.mse, (x, _targets("mse", n, k, gen)), gen)

    return build


# name -> builder: (inputs d_in, outputs k, examples n) kept small for dense float64 oracles
NET_CASES: dict[str, Builder] = {
    "mlp_relu": _regression(
        "mlp_relu", lambda s: gs.models.mlp(3, 6, depth=3, seed=s, dtype=F64), 3, 1, 5
    ),
    "mlp_relu_2out": _regression(
        "mlp_relu_2out",
        lambda s: gs.models.mlp(
            3, 8, depth=3, out_dim=2, parameterization="ntk", seed=s, dtype=F64
        ),
        3,
        2,
        4,
    ),
    "mlp_residual": _regression(
        "mlp_residual",
        lambda s: gs.models.mlp(4, 5, depth=4, residual=True, seed=s, dtype=F64),
        4,
        1,
        6,
    ),
    "mlp_tanh": _regression(
        "mlp_tanh",
        lambda s: gs.models.mlp(3, 6, depth=3, activation="tanh", seed=s, dtype=F64),
        3,
        1,
        5,
    ),
    "mlp_softplus_2out": _regression(
        "mlp_softplus_2out",
        lambda s: gs.models.mlp(
            3,
            5,
            depth=2,
            out_dim=2,
            parameterization="ntk",
            activation="softplus",
            seed=s,
            dtype=F64,
        ),
        3,
        2,
        5,
    ),
    "two_layer": _regression(
        "two_layer", lambda s: gs.models.two_layer(3, 8, seed=s, dtype=F64), 3, 1, 5
    ),
}
RELU_NETS = ("mlp_relu", "mlp_relu_2out", "mlp_residual", "two_layer")


def tanh_mlp(seed: int = 0, loss: str = "mse") -> Case:
    """A tanh MLP ``4 → 6 → 6 → 3`` (93 parameters) on 7 Gaussian inputs; block ``layers.1``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 4, generator=gen, dtype=F64)
    net = gs.models.mlp(4, 6, depth=3, out_dim=3, activation="tanh", seed=seed, dtype=F64)
    return Case(f"mlp-{loss}", net, LOSSES[loss], (x, _targets(loss, 7, 3, gen)), gen, "layers.1")


def tanh_cnn(seed: int = 0, loss: str = "ce") -> Case:
    """A two-conv tanh CNN on 5 one-channel 4×4 images, 3 outputs; block ``convs.1``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 1, 4, 4, generator=gen, dtype=F64)
    net = gs.models.cnn(1, 4, 2, 3, depth=2, activation="tanh", seed=seed, dtype=F64)
    return Case(f"cnn-{loss}", net, LOSSES[loss], (x, _targets(loss, 5, 3, gen)), gen, "convs.1")


CURVATURE_CASES: dict[str, Builder] = {
    f"{kind}-{loss}": lambda seed, build=build, loss=loss: build(seed, loss)
    for kind, build in (("mlp", tanh_mlp), ("cnn", tanh_cnn))
    for loss in LOSSES
}
