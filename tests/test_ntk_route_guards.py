"""Models on which ``ntk_gram``'s structured path was silently wrong or crashed (found by an
adversarial review against per-example autograd): each is now exact or refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gdscope.models import two_layer
from gdscope.probes._reference import dense_hessian, dense_ntk
from gdscope.probes.ntk import ntk_gram, ntk_method


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _two_layer() -> nn.Module:
    return two_layer(d_in=4, width=16, seed=0, train_outer=True, dtype=torch.float64)


class Shifted(type(_two_layer())):
    """Du et al.'s net with a term of its own: the closed form does not know it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.1 * (x @ self.weight.T).sum(-1, keepdim=True)


@pytest.mark.parametrize("change", ["output hook", "input pre-hook", "subclass"])
def test_two_layer_with_a_hook_or_its_own_forward_leaves_the_closed_form(change):
    """Any TwoLayer took its closed form: 0.89, 0.75, 0.11 off with these changes."""
    net = _two_layer()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ntk_method(net, x) == "structured"
    assert _rel(ntk_gram(net, x), dense_ntk(net, x)) < 1e-12
    if change == "output hook":
        net.register_forward_hook(lambda mod, inp, out: 3.0 * out)
    elif change == "input pre-hook":
        net.register_forward_pre_hook(lambda mod, inp: (2.0 * inp[0],))
    else:
        net.__class__ = Shifted
    assert ntk_method(net, x) == "jacobian"
    assert _rel(ntk_gram(net, x), dense_ntk(net, x)) < 1e-12
    with pytest.raises(ValueError, match="method='structured' supports only"):
        ntk_gram(net, x, method="structured")


class InputScaledInPlace(nn.Module):
    """Scales its input in place after the first layer has read it (the structured path kept a
    reference to that input and read the doubled one: 0.99 off)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.l1, self.l2, self.inplace = nn.Linear(8, 8), nn.Linear(8, 2), inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.l1(x)
        x = x.mul_(2) if self.inplace else 2 * x
        return self.l2(torch.tanh(y)) + x[:, :2]


def test_a_layer_input_written_in_place_afterwards_is_not_structured():
    torch.manual_seed(1)
    net = InputScaledInPlace().double()
    x = torch.randn(4, 8, dtype=torch.float64)
    assert ntk_method(net, x) == "jacobian"
    with pytest.raises(ValueError, match="the input of l1 is written in place after l1 reads it"):
        ntk_gram(net, x.clone(), method="structured")
    twin = InputScaledInPlace(inplace=False).double()
    twin.load_state_dict(net.state_dict())
    assert ntk_method(twin, x) == "structured"
    assert _rel(ntk_gram(twin, x), dense_ntk(twin, x)) < 1e-12


class KeywordCall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(input=torch.tanh(self.l1(input=x)))


def test_a_layer_called_with_a_keyword_input_is_not_structured():
    """The structured hooks read ``args[0]``: an IndexError."""
    torch.manual_seed(2)
    net = KeywordCall().double()
    x = torch.randn(4, 8, dtype=torch.float64)
    assert ntk_method(net, x) == "jacobian"
    assert _rel(ntk_gram(net, x), dense_ntk(net, x)) < 1e-12
    with pytest.raises(ValueError, match="l1 is called without its input as the first positional"):
        ntk_gram(net, x, method="structured")


class Checkpointed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l3 = nn.Linear(8, 8), nn.Linear(8, 2)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = checkpoint(self.block, torch.tanh(self.l1(x)), use_reentrant=False)
        return self.l3(torch.tanh(h))


def test_activation_checkpointing_is_structured_and_exact():
    """The block's layers ran again in the backward pass and the hooks recorded them twice
    ("Sizes of tensors must match")."""
    torch.manual_seed(3)
    net = Checkpointed().double()
    x = torch.randn(5, 8, dtype=torch.float64)
    assert ntk_method(net, x) == "structured"
    assert _rel(ntk_gram(net, x), dense_ntk(net, x)) < 1e-12


class KeptView(nn.Module):
    """Keeps ``enc.weight.t()`` from construction: the probes substitute copies of the
    parameters, which that view does not see (every NTK route 0.59 off, sharpness 4.43 for
    12.11, the gradient norm 3.49 for 4.94)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 16)
        self.dec_w = self.enc.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(torch.tanh(self.enc(x)), self.dec_w)


def _kept_view_probes(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    import gdscope as gs

    params = dict(net.named_parameters())
    return {
        "NTK": lambda: ntk_gram(net, x),
        "NTK jacobian": lambda: ntk_gram(net, x, method="jacobian"),
        "sharpness": lambda: gs.probes.sharpness(net, gs.losses.mse, (x, y)),
        "hessian_trace": lambda: gs.probes.hessian_trace(net, gs.losses.mse, (x, y)),
        "ggn_sharpness": lambda: gs.probes.ggn_sharpness(net, gs.losses.mse, (x, y)),
        "gradient_norm": lambda: gs.probes.gradient_norm(net, params, gs.losses.mse, (x, y)),
    }


@pytest.mark.parametrize(
    "probe",
    ["NTK", "NTK jacobian", "sharpness", "hessian_trace", "ggn_sharpness", "gradient_norm"],
)
def test_a_parameter_read_through_a_kept_view_is_refused_by_name(probe):
    torch.manual_seed(4)
    net = KeptView().double()
    net.dec_w = net.enc.weight.t()  # .double() made a new parameter: keep a view of that one
    x = torch.randn(4, 8, dtype=torch.float64)
    y = torch.randn(4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"parameter 'enc\.weight' is read other than through"):
        _kept_view_probes(net, x, y)[probe]()


def test_a_penalty_read_inside_loss_fn_is_refused_and_a_stock_tied_net_is_not():
    """An L2 penalty on a weight written in ``loss_fn``: sharpness 1.85 for 5.79, trace 7.1
    for 67.4, silently."""
    import gdscope as gs

    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)

    def penalized(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return gs.losses.mse(out, target) + 2.5 * (net[2].weight ** 2).sum()

    with pytest.raises(ValueError, match=r"sharpness: parameter '2\.weight' is read other than"):
        gs.probes.sharpness(net, penalized, (x, y))
    shared = nn.Linear(6, 6).double()
    tied = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), shared, nn.Tanh(), shared, nn.Linear(6, 2))
    tied = tied.double()
    dense = torch.linalg.eigvalsh(dense_hessian(tied, gs.losses.mse, (x, y)))[-1]
    assert abs(gs.probes.sharpness(tied, gs.losses.mse, (x, y), tol=1e-10) - dense) < 1e-9


class Coupled(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.l1, self.l2, self.how = nn.Linear(8, 8), nn.Linear(8, 2), how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.l1(x))
        h = h - h.mean(0, keepdim=True) + 0.1 if self.how == "center" else torch.cumsum(h, 0)
        return self.l2(h)


@pytest.mark.parametrize("how", ["center", "cumsum"])
@pytest.mark.parametrize("method", ["auto", "structured", "jacobian"])
def test_examples_that_interact_in_the_batch_are_refused(how, method):
    """The trace on two copies of one example could not see it: auto gave a Gram 1.05 / 6.2 off
    the per-example kernel and 0.43 / 1.34 off the batch's, and it moved with memory_budget."""
    torch.manual_seed(6)
    net = Coupled(how).double()
    x = torch.randn(6, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="depends on the other examples in its batch"):
        ntk_gram(net, x, method=method)
    with pytest.raises(ValueError, match="depends on the other examples in its batch"):
        ntk_gram(net, x[:1], x[1:], method=method)  # the pair from x1 and x2


def test_the_kept_parameter_check_takes_the_whole_batch_where_two_examples_do_not_fit():
    """A target of shape (1, n) (a loss reading it as a row) failed on its first two rows."""
    import gdscope as gs

    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randn(1, 6, dtype=torch.float64)

    def row_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out.T - target) ** 2).mean()

    dense = torch.linalg.eigvalsh(dense_hessian(net, row_loss, (x, y)))[-1]
    assert abs(gs.probes.sharpness(net, row_loss, (x, y), tol=1e-10) - dense) < 1e-9


class Squeezed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x))).squeeze()


def test_the_coupling_check_passes_squeezed_outputs_and_deep_chaotic_nets():
    """A squeezed output of one example is 0-d (torch.cat raised); a deep tanh net in the
    chaotic phase amplifies rounding between batch sizes of one and two (2.6e-11 in float64,
    refused at a tolerance of 1e-10)."""
    torch.manual_seed(8)
    net = Squeezed().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    assert _rel(ntk_gram(net, x), dense_ntk(net, x)) < 1e-12
    torch.manual_seed(0)
    deep = DeepChaotic(depth=60).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    assert _rel(ntk_gram(deep, x), dense_ntk(deep, x)) < 1e-10


class DeepChaotic(nn.Module):
    """A deep tanh stack with weights ×4 (σ_w ≈ 2.3): rounding grows along the depth."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(6, 64)] + [nn.Linear(64, 64) for _ in range(depth)])
        self.out = nn.Linear(64, 1)
        with torch.no_grad():
            for layer in self.layers[1:]:
                layer.weight.mul_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.out(x)


def test_a_kept_view_is_refused_inside_inference_mode_too():
    """The check built no graph in inference mode: gradient_norm gave a wrong number there."""
    import gdscope as gs

    torch.manual_seed(9)
    net = KeptView().double()
    net.dec_w = net.enc.weight.t()
    x, y = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    with torch.inference_mode(), pytest.raises(ValueError, match="is read other than through"):
        gs.probes.gradient_norm(net, dict(net.named_parameters()), gs.losses.mse, (x, y))


@pytest.mark.parametrize("method", ["auto", "jacobian"])
def test_a_nan_output_is_refused_even_where_the_derivatives_are_finite(method):
    """Review: a frozen ``nan`` readout weight behind a dead ReLU unit gives ``nan`` outputs and
    finite derivatives (ReLU's backward masks the unit), and the Gram came out finite."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        model[0].bias[0] = -100.0  # unit 0 is dead on every input
        model[2].weight[0, 0] = float("nan")
    model[2].weight.requires_grad_(False)
    x = torch.randn(6, 4)
    assert model(x)[:, 0].isnan().all()
    with pytest.raises(ValueError, match="output on the first input is not finite"):
        ntk_gram(model, x, method=method)
    with torch.no_grad():
        model[2].weight[0, 0] = 0.5  # finite again: the plain stack's route, as before
    assert ntk_method(model, x) == "structured" and ntk_gram(model, x).isfinite().all()
