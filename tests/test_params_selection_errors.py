"""``params=`` given modules: a module selects the trainable parameters it holds; else one line.

``params=net.layers[0]`` raised ``TypeError: 'ScaledLinear' object is not iterable`` and a
``Sequential`` was read as its children, each refused with a many-line repr. A module selects
by identity, as a parameter does, so it is the block its name selects as a prefix.
"""

import pytest
import torch
from torch import nn

import gdscope as gs
from gdscope.probes._subset import names_once, select_params

F64 = torch.float64


def _net() -> nn.Module:
    return gs.models.mlp(3, 8, depth=3, seed=0, dtype=F64)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


def test_a_module_selects_what_its_name_selects():
    net = _net()
    layers = net.get_submodule("layers")
    cases = [
        (layers[0], "layers.0"),
        (layers, "layers"),  # a Sequential or ModuleList: the module, not its children one by one
        ([layers[2], "layers.0.bias"], ["layers.2", "layers.0.bias"]),
        (net, None),
    ]
    for given, named in cases:
        assert list(select_params(net, given)) == list(select_params(net, named)), named
        assert list(select_params(net, names_once(given))) == list(select_params(net, named))
    tied = _Tied()
    assert list(select_params(tied, tied.b)) == ["a.weight", "b.bias"]  # the tied one: first name


def test_probes_take_a_module():
    net = _net()
    x, y = gs.data.sphere(n=8, d=3, seed=0, dtype=F64)
    batch = (x, y)
    layer = net.get_submodule("layers.1")
    for probe in (gs.probes.sharpness, gs.probes.ggn_sharpness):
        by_module = probe(net, gs.losses.mse, batch, tol=1e-10, params=layer)
        assert by_module == probe(net, gs.losses.mse, batch, tol=1e-10, params="layers.1")
    optimizer = torch.optim.Adam(net.parameters())
    gs.losses.mse(net(x), y).backward()
    optimizer.step()
    values = [
        gs.probes.preconditioned_sharpness(net, gs.losses.mse, batch, optimizer, params=params)
        for params in (layer, "layers.1")  # read twice there: names_once
    ]
    assert values[0] == values[1]


@pytest.mark.parametrize("case", ["foreign", "no_parameters", "frozen"])
def test_a_module_that_selects_nothing_is_refused_in_one_line(case):
    net = _net()
    if case == "foreign":
        module, expected = _net().get_submodule("layers.0"), "not a submodule of the model"
    elif case == "no_parameters":
        module = next(m for m in net.modules() if not any(True for _ in m.parameters()))
        expected = "holds no trainable parameter;"
    else:
        module = net.get_submodule("layers.2")
        module.requires_grad_(False)
        expected = "'layers.2' holds no trainable parameter (requires_grad=False)"
    with pytest.raises(ValueError) as error:
        select_params(net, [module])
    message = str(error.value)
    assert expected in message and "\n" not in message, message
    assert type(module).__name__ in message and "layers.0" in message, message
