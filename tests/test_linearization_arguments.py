"""``linearization_gap`` and ``linearized_prediction`` refuse, in one line, arguments they would
have measured wrong or failed on deep inside: keys of ``params_t`` that ``params0`` lacks, and an
``x`` whose examples are not as wide as the model's first layer."""

import re

import pytest
import torch
from torch import nn

import gdscope as gs
from gdscope.probes.linearization import linearization_gap, linearized_prediction

F64 = torch.float64
PROBES = (linearization_gap, linearized_prediction)


def _moved(net, scale=0.3):
    gen = torch.Generator().manual_seed(0)
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    pt = {k: v + scale * torch.randn(v.shape, generator=gen, dtype=F64) for k, v in p0.items()}
    return p0, pt


def _normed():
    """A net with buffers: an eval-mode batch norm between two linear layers."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()
    return net.eval()


@pytest.mark.parametrize("extra", ["parameter", "buffer"])
def test_keys_of_params_t_that_params0_lacks_are_refused(extra):
    """f(x; θ_t) read them while the linearization at θ₀ read the model's own values: the gap
    measured the difference between the two as well, with no error."""
    net = _normed()
    p0, pt = _moved(net)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    if extra == "parameter":
        key = "3.bias"
        del p0[key]
    else:
        key = "1.running_mean"
        pt[key] = torch.full((8,), 0.5, dtype=F64)
    for probe in PROBES:
        with pytest.raises(ValueError, match=rf"^params_t has \['{key}'\], which params0 lacks"):
            probe(net, p0, pt, x)
    with pytest.raises(ValueError) as err:
        linearization_gap(net, p0, pt, x)
    assert "\n" not in str(err.value) and "same tensors" in str(err.value)
    assert linearization_gap(net, p0, {k: pt[k] for k in p0}, x) > 0.0  # the same keys: passes


def _mlp():
    return gs.models.mlp(3, 16, depth=3, parameterization="ntk", seed=0, dtype=F64)


def _two_layer():
    return gs.models.two_layer(3, 16, seed=0, dtype=F64)  # F.linear on its own weight


class _RightFactor(nn.Module):
    """``x @ W`` with ``W`` of shape ``(in, out)``: a matmul, no linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return torch.tanh(x @ self.w)


@pytest.mark.parametrize(
    ("make", "weight"),
    [
        (_mlp, r"'layers\.0\.weight' has shape \(16, 3\)"),
        (_two_layer, r"'weight' has shape \(16, 3\)"),
        (lambda: _RightFactor().double(), r"'w' has shape \(3, 2\)"),
    ],
    ids=["mlp", "two_layer", "matmul"],
)
def test_inputs_of_another_width_are_refused_naming_both_shapes(make, weight):
    """Was torch's ``mat1 and mat2 shapes cannot be multiplied`` from inside the forward."""
    net = make()
    p0, pt = _moved(net)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    for probe in PROBES:
        with pytest.raises(ValueError) as err:
            probe(net, p0, pt, x)
        message = str(err.value)
        assert message.startswith(
            f"{probe.__name__}: x has shape (8, 2), but the model's first layer reads 3 features"
        ), message
        assert message.endswith("pass x of shape (8, 3)") and "\n" not in message, message
        assert re.search(weight, message), message
    right = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert linearization_gap(net, p0, pt, right) > 0.0


def test_inputs_reshaped_before_the_first_layer_are_refused_by_the_width_it_gets():
    """A flatten in front: the layer gets 27·27 = 729 features of the 784 it reads."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    p0, pt = _moved(net)
    with pytest.raises(
        ValueError,
        match=r"^linearization_gap: x of shape \(5, 27, 27\) reaches the model's first layer as "
        r"729 features per row, but it reads 784 \(its '1\.weight' has shape \(4, 784\)\)",
    ):
        linearization_gap(net, p0, pt, torch.randn(5, 27, 27, dtype=F64))
    assert linearization_gap(net, p0, pt, torch.randn(5, 28, 28, dtype=F64)) > 0.0


def test_the_width_check_leaves_the_buffers_as_they_were():
    """It runs the model up to its first layer: a training-mode norm in front would move its
    running statistics; they are put back."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.InstanceNorm1d(3, track_running_stats=True), nn.Flatten())
    net.append(nn.Linear(12, 1)).double().train()
    before = {n: b.clone() for n, b in net.named_buffers()}
    p0, pt = _moved(net)
    with pytest.raises(ValueError, match="reaches the model's first layer as 15 features"):
        linearization_gap(net, p0, pt, torch.randn(4, 3, 5, dtype=F64))
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_a_working_call_runs_the_model_no_more_often():
    """The width check runs only after a failure: before, a third forward on two rows fired the
    user's hooks and counters and drew from the global generator (the next rand 0.744 for 0.177)."""

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer, self.calls = nn.Linear(3, 1), 0

        def forward(self, x):
            self.calls += 1
            return self.layer(x)

    torch.manual_seed(0)
    model, x = Counting(), torch.randn(5, 3)
    p0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    pt = {k: v + 0.01 for k, v in p0.items()}
    linearization_gap(model, p0, pt, x)
    assert model.calls == 2  # f(x; θ_t), and the jvp at θ₀: no third forward for the check


class _KeptView(nn.Module):
    """Reads ``lin.weight`` through a view made in ``__init__``: a copy of the parameters (θ₀,
    θ_t) never reaches it, so ``f(x; θ)`` would be the module's own weight's."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(6, 5), nn.Linear(5, 1)
        self.w_t = self.lin.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(x @ self.w_t + self.lin.bias))


@pytest.mark.parametrize("probe", ["linearization_gap", "linearized_prediction"])
def test_a_parameter_read_through_a_kept_tensor_is_refused(probe):
    """Review: the gap came out 0.2267 against 0.5908 on the same weights written out."""
    torch.manual_seed(0)
    model, x = _KeptView(), torch.randn(20, 6)
    theta0 = {k: t.detach().clone() for k, t in model.named_parameters()}
    theta_t = {k: t + 0.5 for k, t in theta0.items()}
    with pytest.raises(ValueError, match=rf"^{probe}: parameter 'lin\.weight' is read other"):
        getattr(gs.probes, probe)(model, theta0, theta_t, x)


def test_an_activation_pattern_at_given_parameters_refuses_a_kept_tensor():
    """Review: the flips against init read 0.104 against 0.308 on the same weights written out;
    the module's own pattern (no ``params``) reads the weight as the forward does, and stays."""
    torch.manual_seed(0)
    model = _KeptView()
    model.relu = nn.ReLU()
    model.forward = lambda x: model.out(model.relu(x @ model.w_t + model.lin.bias))  # type: ignore[method-assign]
    x = torch.randn(20, 6)
    theta0 = {k: t.detach().clone() for k, t in model.named_parameters()}
    with pytest.raises(ValueError, match=r"^activation_pattern: parameter 'lin\.weight' is read"):
        gs.probes.activation_pattern(model, x, params=theta0)
    assert len(gs.probes.activation_pattern(model, x)) == 1
