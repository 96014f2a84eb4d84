"""Curvature probes in a caller's grad modes, on models whose forward reads nothing trainable,
with buffers a training-mode forward moves, with attention, and under batch statistics
(``probes/_differentiating.py``; each case once raised or moved the model)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import gdscope as gs
from _helpers import assert_close

F64 = torch.float64


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def _adam(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.optim.Optimizer:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gs.losses.mse(model(batch[0]), batch[1]).backward()
    opt.step()
    opt.zero_grad()
    return opt


def _probes(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, object]:
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    opt = _adam(model, (batch[0].clone(), batch[1].clone()))
    scalar = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    mse = gs.losses.mse
    return {
        "sharpness": lambda b: gs.probes.sharpness(model, mse, b, tol=1e-10, generator=gen()),
        "hessian_topk": lambda b: gs.probes.hessian_topk(model, mse, b, 2, generator=gen()).values,
        "power_iteration": lambda b: gs.probes.power_iteration(model, mse, b, generator=gen())[0],
        "hessian_trace": lambda b: gs.probes.hessian_trace(
            model, mse, b, samples=5, generator=gen()
        )[0],
        "hutchpp": lambda b: gs.probes.hessian_trace_hutchpp(
            model, mse, b, probes=9, generator=gen()
        ),
        "density": lambda b: (
            gs.probes.hessian_spectral_density(
                model, mse, b, steps=5, probes=2, generator=gen()
            ).nodes
        ),
        "ggn_sharpness": lambda b: gs.probes.ggn_sharpness(
            model, mse, b, tol=1e-10, generator=gen()
        ),
        "preconditioned": lambda b: gs.probes.preconditioned_sharpness(
            model, mse, b, opt, tol=1e-10, generator=gen()
        ),
        "output_hessian": lambda b: gs.probes.output_hessian_norm(scalar, b[0], generator=gen()),
        "operator": lambda b: gs.probes.hessian_operator(model, mse, b).matvec(
            torch.ones(38, dtype=F64)
        ),
    }


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_every_curvature_probe_gives_inside_a_grad_free_mode_what_it_gives_outside(mode):
    """Inside ``no_grad`` every Hessian probe raised ("element 0 of tensors does not require
    grad"); inside ``inference_mode`` all did. Inputs made in that mode are used too."""
    model = _net()
    x, y = torch.randn(8, 3, dtype=F64), torch.randn(8, 2, dtype=F64)
    probes = _probes(model, (x, y))
    context = torch.no_grad if mode == "no_grad" else torch.inference_mode
    for name, probe in probes.items():
        outside = probe((x, y))
        with context():
            inside = probe((x.clone(), y.clone()))  # made in that mode
        assert_close(torch.as_tensor(inside), torch.as_tensor(outside), rtol=1e-9, what=name)


def _reads_nothing() -> nn.Module:
    """A model whose one trainable parameter its forward never reads."""
    model = _net().requires_grad_(False)
    model.register_parameter("unused", nn.Parameter(torch.ones(3, dtype=F64)))
    return model


def test_a_loss_that_reads_no_trainable_parameter_has_zero_curvature():
    """``ntk_gram`` already gave K = 0 here; the Hessian and Gauss–Newton probes raised."""
    model = _reads_nothing()
    batch = (torch.randn(6, 3, dtype=F64), torch.randn(6, 2, dtype=F64))
    mse = gs.losses.mse
    assert gs.probes.sharpness(model, mse, batch) == 0.0
    assert gs.probes.ggn_sharpness(model, mse, batch) == 0.0
    assert gs.probes.hessian_trace(model, mse, batch, samples=3)[0] == 0.0
    assert gs.probes.hessian_trace_hutchpp(model, mse, batch, probes=6) == 0.0
    product = gs.probes.hessian_operator(model, mse, batch).matvec(torch.ones(3, dtype=F64))
    assert torch.equal(product, torch.zeros(3, dtype=F64))
    assert torch.equal(
        gs.probes.ggn_operator(model, mse, batch).matvec(torch.ones(3, dtype=F64)),
        torch.zeros(3, dtype=F64),
    )


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn(x, x, x, need_weights=False)
        return self.out(h).mean(dim=1)


def test_the_gauss_newton_top_eigenvalue_of_an_attention_net_equals_the_dense_one():
    """The fused attention kernel has no double backward: ``ggn_sharpness`` raised."""
    torch.manual_seed(1)
    model = _Attention().double().eval()
    x, y = torch.randn(5, 3, 4, dtype=F64), torch.randn(5, 1, dtype=F64)
    top = gs.probes.ggn_sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        parts, start = {}, 0
        for name, p in model.named_parameters():
            parts[name] = theta[start : start + p.numel()].reshape(p.shape)
            start += p.numel()
        return torch.func.functional_call(model, parts, (x,)).reshape(-1)

    assert len(names) == len(list(model.parameters()))
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        jac = torch.autograd.functional.jacobian(outputs, flat)
    dense = float(torch.linalg.eigvalsh(jac.T @ jac / x.shape[0])[-1])  # mse: H_F = I/n
    assert top == pytest.approx(dense, rel=1e-8)


def test_a_probe_leaves_the_buffers_a_training_forward_moves_as_they_were():
    """``InstanceNorm(track_running_stats=True)`` in training mode updates its running
    statistics on every forward without changing the function measured."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 3), nn.InstanceNorm1d(3, track_running_stats=True)).double()
    model.append(nn.Linear(3, 1).double()).append(nn.Flatten())
    model.train()
    x, y = torch.randn(6, 3, 4, dtype=F64), torch.randn(6, 3, dtype=F64)
    before = {n: b.clone() for n, b in model.named_buffers()}
    mse = gs.losses.mse
    gs.probes.sharpness(model, mse, (x, y))
    gs.probes.ggn_sharpness(model, mse, (x, y))
    gs.probes.hessian_trace_hutchpp(model, mse, (x, y), probes=6)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_batch_statistics_are_opted_into_publicly_and_refuse_chunks():
    """Each chunk would be normalized with its own statistics (a different function): it gave
    3.84 and 12.8 for a full-batch sharpness of 2.46, without a word."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).double()
    x, y = torch.randn(12, 6, dtype=F64), torch.randn(12, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"gdscope\.probes\.allow_batch_statistics"):
        gs.probes.sharpness(model, gs.losses.mse, (x, y))
    with gs.probes.allow_batch_statistics(model):
        whole = gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10)
        assert whole > 0
        for chunk in (4, 5):
            with pytest.raises(
                ValueError,
                match=r"chunk_size=\d+ would normalize each chunk with its own batch statistics",
            ):
                gs.probes.sharpness(model, gs.losses.mse, (x, y), chunk_size=chunk)
        assert gs.probes.sharpness(model, gs.losses.mse, (x, y), tol=1e-10, chunk_size=12) == (
            pytest.approx(whole, rel=1e-9)
        )
    with contextlib.suppress(ValueError):  # outside the block: refused again
        gs.probes.sharpness(model, gs.losses.mse, (x, y))
        pytest.fail("batch statistics accepted outside allow_batch_statistics")


class _Scaled(nn.Module):
    """A float64 net times a scalar parameter of its own dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
        self.scale = nn.Parameter(torch.tensor(1.3, dtype=torch.float32).to(dtype))  # one value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


def test_parameters_of_two_dtypes_multiply_in_the_wider_one():
    """One float32 scalar in a float64 net rounded every product to float32 (1.6e-8 off the
    dense sharpness at tol 1e-10); now each block is taken in its parameter's dtype, so the
    float64 block's product (the scalar's direction left out) is the float64 model's."""
    mixed, wide = _Scaled(torch.float32), _Scaled(F64)
    batch = (torch.randn(7, 3, dtype=F64), torch.randn(7, 2, dtype=F64))
    v = torch.randn(sum(p.numel() for p in wide.parameters()), dtype=F64)
    v[0] = 0.0  # the scale: the root's own parameter comes first
    for build in (gs.probes.hessian_operator, gs.probes.ggn_operator):
        op, reference = build(mixed, gs.losses.mse, batch), build(wide, gs.losses.mse, batch)
        assert op.dtype == F64
        product, exact = op.matvec(v)[1:], reference.matvec(v)[1:]
        assert float((product - exact).norm() / exact.norm()) < 1e-13, build.__name__
    sharp = gs.probes.sharpness(mixed, gs.losses.mse, batch, tol=1e-10)
    assert sharp == pytest.approx(
        gs.probes.sharpness(wide, gs.losses.mse, batch, tol=1e-10), rel=1e-7
    )
