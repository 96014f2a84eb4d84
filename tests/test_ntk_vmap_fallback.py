"""The Jacobian route of ``ntk_gram`` on modules ``vmap`` cannot batch (``nn.PReLU`` in torch
2.13): one ``jacrev`` per example, equal to the dense float64 reference; a model that fails on
its own still raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gdscope.probes._reference import dense_ntk
from gdscope.probes.ntk import ntk_gram


def _x(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _prelu_net(seed: int, outputs: int, per_channel: bool) -> nn.Module:
    torch.manual_seed(seed)
    prelu = nn.PReLU(16 if per_channel else 1, init=0.1 + 0.5 * torch.rand(()).item())
    return nn.Sequential(nn.Linear(5, 16), prelu, nn.Linear(16, outputs)).double()


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared-slope", "per-channel"])
@pytest.mark.parametrize("method", ["auto", "jacobian"])
@pytest.mark.parametrize("seed", [0, 1])
def test_prelu_gram_equals_the_dense_reference(method, per_channel, seed):
    model = _prelu_net(seed, outputs=2, per_channel=per_channel)
    x1, x2 = _x(6, 5, seed + 10), _x(3, 5, seed + 20)
    for x_b in (None, x2):
        for trace in (False, True):
            got = ntk_gram(model, x1, x_b, trace=trace, method=method)
            expected = dense_ntk(model, x1, x_b, trace=trace)
            err = float((got - expected).norm() / expected.norm())
            assert err <= 1e-10, (x_b is None, trace, err)


class Refuses(nn.Module):
    """A model that fails whenever it is differentiated: the fallback must not hide it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # the input check runs without gradients
            raise RuntimeError("this model refuses")
        return self.lin(x)


def test_a_model_that_fails_by_itself_still_raises():
    with pytest.raises(RuntimeError, match="this model refuses"):
        ntk_gram(Refuses().double(), _x(4, 3, 0), method="jacobian")
