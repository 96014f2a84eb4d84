"""A probe measures the model in its own dtype, also inside a caller's ``torch.autocast``.

A review: under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (an AMP training loop) the
sharpness came back 8e-4 off at ``tol=1e-6``, the NTK Gram 4e-3, the Hessian trace 2e-4 and the
gradient norm 9e-4, with no warning; ``gs.monitor`` already turned autocast off.
"""

import pytest
import torch
from torch import nn

import gdscope as gs

P = gs.probes
CE = nn.CrossEntropyLoss()


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    return model, x, y


PROBES = {
    "sharpness": lambda m, x, y: P.sharpness(m, CE, (x, y), tol=1e-6),
    "hessian_trace": lambda m, x, y: P.hessian_trace(
        m, CE, (x, y), samples=4, generator=torch.Generator().manual_seed(0)
    )[0],
    "ggn_sharpness": lambda m, x, y: P.ggn_sharpness(m, CE, (x, y), tol=1e-6),
    "ntk_gram": lambda m, x, y: P.ntk_gram(m, x[:8]),
    "ntk_gram_jacobian": lambda m, x, y: P.ntk_gram(m, x[:8], method="jacobian"),
    "gradient_norm": lambda m, x, y: P.gradient_norm(m, dict(m.named_parameters()), CE, (x, y)),
    "loss_and_grad_norm": lambda m, x, y: P.loss_and_grad_norm(
        m, dict(m.named_parameters()), CE, (x, y)
    ),
    "linearization_gap": lambda m, x, y: P.linearization_gap(
        m, {k: v.detach() * 0.9 for k, v in m.named_parameters()}, dict(m.named_parameters()), x
    ),
    "activation_pattern": lambda m, x, y: P.activation_pattern(nn.Sequential(m[0], nn.ReLU()), x),
}


@pytest.mark.parametrize("name", PROBES)
def test_a_probe_inside_autocast_gives_what_it_gives_outside(name):
    model, x, y = _setup()
    outside = PROBES[name](model, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = PROBES[name](model, x, y)
        assert torch.is_autocast_enabled("cpu")  # the caller's region resumes after the probe
        assert model(x).dtype == torch.bfloat16
    assert _flat(inside).equal(_flat(outside)), name


def _flat(value) -> torch.Tensor:
    """A probe's result (a number, a tensor, a tuple or list of them) as one float64 vector."""
    if isinstance(value, tuple | list):
        return torch.cat([_flat(v) for v in value])
    return torch.as_tensor(value).double().flatten()
