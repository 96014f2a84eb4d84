"""gdscope's μP MLP and the same network in microsoft mup, on the same weights (float64).

Shared by tests/test_mup_adam.py and tests/test_peers_mup.py: a depth-3 ReLU MLP ``6 → w → w →
3`` with random biases (μP draws them at 0, which would hide the biases' multipliers), and its
twin of ``nn.Linear`` layers and a ``mup.MuReadout`` with mup's base shapes (base width 16).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import gdscope as gs
from gdscope.integrations.mup import mup_model

F64 = torch.float64
D_IN, OUT, BASE = 6, 3, 16


def gdscope_mup_mlp(width: int, parameterization: str = "mup") -> nn.Module:
    """gdscope's MLP (seeded by the width) with biases drawn from ``N(0, 0.5²)``."""
    net = gs.models.mlp(
        D_IN, width, depth=3, out_dim=OUT, parameterization=parameterization,
        base_width=BASE, seed=width, dtype=F64,
    )  # fmt: skip
    with torch.no_grad():
        g = torch.Generator().manual_seed(width + 1)
        for layer in net.layers:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=F64) * 0.5)
    return net


class MuNet(nn.Module):
    """The same architecture in microsoft mup: ``nn.Linear`` layers and a ``MuReadout``."""

    def __init__(self, width: int) -> None:
        import mup

        super().__init__()
        self.l0 = nn.Linear(D_IN, width, dtype=F64)
        self.l1 = nn.Linear(width, width, dtype=F64)
        self.l2 = mup.MuReadout(width, OUT, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(torch.relu(self.l1(torch.relu(self.l0(x)))))


def mup_twin(width: int, net: nn.Module | None = None) -> nn.Module:
    """:class:`MuNet` with mup's base shapes and the weights of ``net`` (default: a fresh
    :func:`gdscope_mup_mlp` of that width); μP's readout multiplier sits in ``MuReadout``."""
    source = gdscope_mup_mlp(width) if net is None else net
    with torch.random.fork_rng(devices=[]):
        twin = mup_model(MuNet, width=width, base_width=BASE)
    with torch.no_grad():
        for i, layer in enumerate(source.layers):
            getattr(twin, f"l{i}").weight.copy_(layer.weight)
            getattr(twin, f"l{i}").bias.copy_(layer.bias)
    return twin


def mup_data() -> tuple[Tensor, Tensor]:
    """12 Gaussian inputs and class labels."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, D_IN, generator=g, dtype=F64), torch.randint(0, OUT, (12,), generator=g)
