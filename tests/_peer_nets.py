"""Helpers of tests/test_peers*.py: float64 inputs and a net with trained LayerNorms."""

from __future__ import annotations

import torch
from torch import Tensor, nn

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


class NormNet(nn.Module):
    """Two LayerNorms with trained (non-default) affine weights between torch Linear layers, tanh."""

    def __init__(self, d: int = 5, width: int = 10, out: int = 3) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # torch's init draws from the global generator
            torch.manual_seed(9)
            self.inp = nn.Linear(d, width, dtype=F64)
            self.hidden = nn.Linear(width, width, dtype=F64)
            self.out = nn.Linear(width, out, dtype=F64)
        self.norm1 = nn.LayerNorm(width, dtype=F64)
        self.norm2 = nn.LayerNorm(width, eps=1e-3, dtype=F64)
        with torch.no_grad():  # as after training: γ ≠ 1, β ≠ 0
            for i, norm in enumerate((self.norm1, self.norm2)):
                norm.weight.copy_(1 + 0.5 * _randn(width, seed=10 + i))
                norm.bias.copy_(0.3 * _randn(width, seed=20 + i))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.norm1(self.inp(x)))
        return self.out(torch.tanh(self.norm2(self.hidden(h))))  # smooth: finite differences
