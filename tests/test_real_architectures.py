"""Instruments on real architectures: attention's Hessian and training-mode batch norm (opt-in)."""

import pytest
import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import gdscope as gs
from _helpers import assert_close
from gdscope.probes._checks import allow_batch_statistics


def _dense_hessian_top(net, x, y):
    """Top eigenvalue of the dense float64 Hessian of the mse loss over the flat parameters."""
    names = [n for n, _ in net.named_parameters()]
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    sizes = [params[n].numel() for n in names]

    def loss(flat):
        parts = torch.split(flat, sizes)
        unflat = {n: t.reshape(params[n].shape) for n, t in zip(names, parts, strict=True)}
        fresh = {k: b.clone() for k, b in buffers.items()}  # each call sees the stats at entry
        return gs.losses.mse(functional_call(net, (unflat, fresh), (x,)), y)

    flat = torch.cat([params[n].reshape(-1) for n in names])
    with sdpa_kernel(SDPBackend.MATH):  # the reference: the math kernel, double-differentiable
        hessian = torch.autograd.functional.hessian(loss, flat)
    return float(torch.linalg.eigvalsh(hessian)[-1])


def test_training_mode_batch_norm_is_refused_unless_opted_in_then_exact_and_restored():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    ).double()
    x, y = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    with pytest.raises(ValueError, match="allow_batch_statistics"):
        gs.probes.sharpness(net, gs.losses.mse, (x, y))
    before = {n: b.clone() for n, b in net.named_buffers()}
    with allow_batch_statistics(net):
        top = gs.probes.sharpness(net, gs.losses.mse, (x, y), tol=1e-10)
        with pytest.raises(ValueError, match="couple the examples"):
            gs.probes.ntk_gram(net, x)  # per-example Jacobians cannot see batch statistics
    assert_close(top, _dense_hessian_top(net, x, y), rtol=1e-8, atol=1e-12)
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, before[name]), name  # running statistics put back
    with pytest.raises(ValueError, match="allow_batch_statistics"):
        gs.probes.sharpness(net, gs.losses.mse, (x, y))  # the opt-in ends with the block


class _Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, 8)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x):
        h = self.inp(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.out(a.mean(1)).squeeze(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_hessian_of_attention_falls_back_to_the_math_kernel_and_says_so(dtype):
    torch.manual_seed(1)
    net = _Attention().to(dtype)
    x, y = torch.randn(6, 5, 4, dtype=dtype), torch.randn(6, dtype=dtype)
    with pytest.warns(UserWarning, match="math attention kernel"):
        top = gs.probes.sharpness(net, gs.losses.mse, (x, y), tol=1e-10)
    if dtype == torch.float64:  # exact against the dense Hessian of the same function
        assert_close(top, _dense_hessian_top(net, x, y), rtol=1e-8, atol=1e-12)
    else:
        assert top > 0
