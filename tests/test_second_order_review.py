"""Second-order probes on inputs a review found mishandled: a zero Hessian under power iteration,
a string tolerance on a float32 model, a model with two output tensors, targets in a tuple, a
weight tied into the selected module, and a selection of frozen parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import gdscope as gs
from _helpers import assert_close

F64 = torch.float64


def _dense_hessian(model: nn.Module, loss, batch, names: list[str]) -> torch.Tensor:
    """``∂²L/∂θ_S²`` of the named (deduplicated) parameters, the others held, by autograd."""
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        chosen = {n: t.reshape(s) for n, t, s in zip(names, flat.split(sizes), shapes, strict=True)}
        return loss(functional_call(model, {**params, **chosen}, (batch[0],)), batch[1])

    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    return torch.autograd.functional.hessian(loss_of, flat)


def test_power_iteration_on_a_zero_hessian_is_zero_not_nan():
    """A loss linear in the outputs of a linear model: ``H v = 0``; it returned ``(nan, 100)``."""
    torch.manual_seed(0)
    net, x, y = nn.Linear(3, 2), torch.randn(6, 3), torch.randn(6, 2)
    value, steps = gs.probes.power_iteration(net, lambda out, t: (out * t).mean(), (x, y))
    assert (value, steps) == (0.0, 1)


def test_a_string_tolerance_is_refused_in_one_line_on_a_float32_model():
    """The data span compared it with 1e-5 before any check: a raw ``TypeError``."""
    torch.manual_seed(0)
    batch = (torch.randn(6, 3), torch.randn(6, 1))
    for probe in (gs.probes.sharpness, gs.probes.ggn_sharpness):
        with pytest.raises(ValueError, match=r"^tol must be a finite number > 0, got '1e-3'"):
            probe(nn.Linear(3, 1), gs.losses.mse, batch, tol="1e-3")  # pyright: ignore[reportArgumentType]


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.body(x))
        return self.a(h), self.b(h)


def _two_head_loss(out, targets):
    return ((out[0] - targets[0]) ** 2).mean() + ((out[1] - targets[1]) ** 2).mean()


def test_the_gauss_newton_of_a_two_tensor_output_is_refused_by_name():
    """It raised ``zeros_like(): argument 'input' must be Tensor, not tuple``."""
    torch.manual_seed(0)
    x = torch.randn(6, 3)
    targets = (torch.randn(6, 2), torch.randn(6, 1))
    for probe in (gs.probes.ggn_sharpness, gs.probes.ggn_operator):
        with pytest.raises(
            ValueError, match=r"needs a model whose output is one tensor .* a tuple"
        ):
            probe(_TwoHeads(), _two_head_loss, (x, targets))


def test_targets_in_a_tuple_are_split_by_example_when_chunked():
    """Chunks sliced the tuple itself (its first heads) rather than each tensor's rows."""
    torch.manual_seed(0)
    net = _TwoHeads().double()
    x = torch.randn(10, 3, dtype=F64)
    targets = (torch.randn(10, 2, dtype=F64), torch.randn(10, 1, dtype=F64))
    names = [n for n, _ in net.named_parameters()]
    exact = float(
        torch.linalg.eigvalsh(_dense_hessian(net, _two_head_loss, (x, targets), names))[-1]
    )
    for chunk in (None, 3, 4):
        got = gs.probes.sharpness(net, _two_head_loss, (x, targets), chunk_size=chunk, tol=1e-10)
        assert_close(got, exact, rtol=1e-8, what=f"chunk_size={chunk}")
    with pytest.raises(
        ValueError, match=r"splits the targets by example, but they have shape \(1, 1\) for 10"
    ):
        gs.probes.sharpness(net, _two_head_loss, (x, (targets[0], targets[1][:1])), chunk_size=3)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 1)
        self.b.weight = self.a.weight  # listed once, as "a.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))


def test_a_module_whose_weight_is_tied_elsewhere_selects_that_weight():
    """``params="b"`` took ``b.bias`` alone (a block of 3 for 12): ``b.weight`` is ``a.weight``."""
    torch.manual_seed(0)
    net = _Tied().double()
    batch = (torch.randn(7, 3, dtype=F64), torch.randn(7, 1, dtype=F64))
    op = gs.probes.hessian_operator(net, gs.losses.mse, batch, params="b")
    assert op.dim == 12
    block = _dense_hessian(net, gs.losses.mse, batch, ["a.weight", "b.bias"])
    exact = float(torch.linalg.eigvalsh(block)[-1])
    got = gs.probes.sharpness(net, gs.losses.mse, batch, params="b", tol=1e-10)
    assert_close(got, exact, rtol=1e-8)


def test_selecting_frozen_parameters_says_so():
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Linear(3, 1).requires_grad_(False))
    batch = (torch.randn(6, 3), torch.randn(6, 1))
    with pytest.raises(
        ValueError,
        match=r"^params: '0\.weight' names no trainable parameter or module \(requires_grad=False\)"
        r"; the model has no trainable parameters$",
    ):
        gs.probes.sharpness(frozen, gs.losses.mse, batch, params="0.weight")
    for probe in (gs.probes.sharpness, gs.probes.ggn_sharpness):
        with pytest.raises(ValueError, match=r"^\w+: the model has no trainable parameters"):
            probe(frozen, gs.losses.mse, batch)


class _NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * float("nan")


def test_an_empty_batch_is_refused_not_measured_as_zero():
    """``sharpness`` of 0 examples returned 0.0: in a tracking loop, a silent zero."""
    net, x, y = nn.Linear(3, 1), torch.randn(4, 3), torch.randn(4, 1)
    for probe in (gs.probes.sharpness, gs.probes.ggn_sharpness, gs.probes.hessian_trace_hutchpp):
        with pytest.raises(ValueError, match=r"^\w+: batch's x has no examples \(shape \(0, 3\)\)"):
            probe(net, gs.losses.mse, (x[:0], y[:0]))


def test_a_model_that_is_nan_at_its_parameters_is_refused_in_one_line():
    """scipy's ``array must not contain infs or NaNs`` and torch's ``linalg.eigh`` failure said
    nothing about the model."""
    torch.manual_seed(0)
    batch = (torch.randn(5, 3), torch.randn(5, 1))
    for probe in (gs.probes.sharpness, gs.probes.ggn_sharpness, gs.probes.hessian_spectral_density):
        with pytest.raises(ValueError, match=r"^\w+: the loss is nan at these parameters"):
            probe(_NaNNet(), gs.losses.mse, batch)
    with pytest.raises(ValueError, match=r"^output_hessian_norm: the output is nan"):
        gs.probes.output_hessian_norm(_NaNNet(), batch[0])
    with pytest.raises(ValueError, match=r"^NTK: the model's output on the first input is not"):
        gs.probes.ntk_gram(_NaNNet(), batch[0])
    with pytest.raises(ValueError, match=r"^K has non-finite entries"):
        gs.probes.ntk_spectrum(torch.full((3, 3), float("nan")))


@pytest.mark.parametrize("probe", ["sharpness", "ggn_sharpness", "ntk_spectrum", "hessian_density"])
def test_a_run_that_turns_non_finite_in_one_step_is_diverged_not_crashed(probe):
    """At lr 1e30 the loss is nan after one step; the curvature probes scheduled at that
    checkpoint raised scipy's and torch's errors out of ``train``."""
    x, y = gs.data.sphere(n=16, d=4, seed=0)
    net = gs.models.mlp(4, 16, depth=3, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=1e30)
    trace = gs.train(net, opt, (x, y), 10, probes={"loss": 1, probe: 1})
    assert trace.status == "diverged"
    steps, _ = trace.series("loss")
    assert list(steps) == [0, 1]


def _per_example_targets_problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(8, 3, dtype=F64)
    return net, x, torch.randn(8, 3, dtype=F64)


@pytest.mark.parametrize("form", ["list_of_tensors", "numpy", "tensor_and_labels"])
def test_per_example_targets_in_a_list_or_an_array_are_still_chunked(form):
    """A list of n per-example tensors and a NumPy array were sliced before the tuple targets'
    split; the split refused the first and passed the second whole to every chunk."""
    net, x, y = _per_example_targets_problem()
    if form == "list_of_tensors":
        targets, loss = list(y), lambda out, t: ((out - torch.stack(t)) ** 2).mean()
    elif form == "numpy":
        targets, loss = y.numpy(), lambda out, t: ((out - torch.from_numpy(t)) ** 2).mean()
    else:
        labels = [int(i) % 3 for i in range(8)]
        targets = (y, labels)

        def loss(out, t):
            picked = out.gather(1, torch.tensor(t[1])[:, None])
            return ((out - t[0]) ** 2).mean() + picked.pow(2).mean()

    whole = gs.probes.sharpness(net, loss, (x, targets), tol=1e-10)
    for chunk in (1, 3, 4):
        chunked = gs.probes.sharpness(net, loss, (x, targets), chunk_size=chunk, tol=1e-10)
        assert_close(chunked, whole, rtol=1e-8, what=f"chunk_size={chunk}")


def test_a_float32_mean_loss_near_its_minimum_is_not_taken_for_a_weighted_one():
    """A pair's own forward rounds differently from its chunks' (1.5e-4 apart at a loss of 1e-7):
    a plain mean was refused on 10 of 10 seeds at chunk_size=1; so was a mean of terms that cancel."""
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        x = torch.randn(64, 4, generator=gen)
        with torch.no_grad():
            y = net(x) + 1e-4 * torch.randn(64, 1, generator=gen)  # loss ≈ 1e-8
        gs.probes.sharpness(net, gs.losses.mse, (x, y), chunk_size=1)
        gs.probes.sharpness(net, lambda out, t: (out - t).mean(), (x, y + 1.0), chunk_size=4)


class _Centred(nn.Module):
    """Subtracts the batch mean of its outputs: each example's output depends on the others."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out - out.mean(0)


def test_chunks_of_a_model_whose_examples_interact_are_refused():
    """Chunked, it is another function of each chunk than of the batch: the check on the joined
    outputs of the chunks alone let it through."""
    torch.manual_seed(0)
    x, y = torch.randn(12, 3), torch.randn(12, 1)
    with pytest.raises(ValueError, match=r"^sharpness: chunk_size would change the function"):
        gs.probes.sharpness(_Centred(), gs.losses.mse, (x, y), chunk_size=4)
    gs.probes.sharpness(_Centred(), gs.losses.mse, (x, y))  # whole: one function, measured
