"""Probe output_hessian_norm against the dense float64 output Hessian."""

import contextlib

import pytest
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.probes import _reference as ref
from gdscope.training.output_hessian import OUTPUT_HESSIAN_EXAMPLES


def test_output_hessian_norm_probe_matches_dense_oracle():
    x, y = gs.data.sphere(n=7, d=3, seed=0, dtype=torch.float64)
    net = gs.models.mlp(3, 8, depth=3, activation="tanh", seed=2, dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trace = gs.train(net, opt, (x, y), steps=2, probes={"output_hessian_norm": 1})
    hessians = ref.dense_output_hessian(net, x[:OUTPUT_HESSIAN_EXAMPLES])
    expected = max(float(torch.linalg.eigvalsh(h).abs().max()) for h in hessians)
    assert_close(trace.final("output_hessian_norm"), expected, rtol=1e-6)


class _KeptView(torch.nn.Module):
    """Reads ``l1.weight`` through a view made in ``__init__``: the copy the probe
    differentiates at never reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = torch.nn.Linear(3, 4, bias=False), torch.nn.Linear(4, 1)
        self.w_t = self.l1.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(x @ self.w_t))


def test_a_parameter_read_through_a_kept_tensor_is_refused_not_dropped():
    """It returned 0 (4.27 with the weight read inside forward), where sharpness refuses."""
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"^output_hessian_norm: parameter 'l1\.weight' is read"):
        gs.probes.output_hessian_norm(_KeptView(), torch.randn(3, 3))


@pytest.mark.parametrize("opted_in", [False, True])
def test_batch_statistics_are_refused_even_when_opted_in(opted_in):
    """Each example is differentiated alone, so a training-mode BatchNorm would normalize it with
    its own statistics: 9.23 for the batch's 9.83 under allow_batch_statistics; outside it, a
    one-example BatchNorm1d raised torch's own error before the refusal."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    context = gs.probes.allow_batch_statistics(net) if opted_in else contextlib.nullcontext()
    with context, pytest.raises(ValueError, match=r"^output_hessian_norm needs a deterministic"):
        gs.probes.output_hessian_norm(net.train(), torch.randn(5, 3))


def test_a_model_that_mixes_the_examples_is_refused():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))

    def centred(x: torch.Tensor) -> torch.Tensor:
        out = net(x)
        return out - out.mean(0)

    mixing = torch.nn.Module()
    mixing.net = net
    mixing.forward = centred  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(
        ValueError, match=r"^output_hessian_norm: the model's output for an example"
    ):
        gs.probes.output_hessian_norm(mixing, torch.randn(4, 3))
