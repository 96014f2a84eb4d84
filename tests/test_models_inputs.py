"""Model and data inputs a review found unchecked: non-square images through a trial, the
device and branch_scale arguments, and digits splits left empty by test_fraction."""

from __future__ import annotations

import pytest
import torch

import gdscope as gs
from gdscope.data import digits


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_non_square_images_build_a_model_for_their_size(kind):
    """4×6 images: the trial built the flatten readout for 4×4 (mat1 and mat2 shapes …)."""
    from gdscope.trials.networks import build_network

    x = torch.randn(5, 1, 4, 6)
    config = gs.TrialConfig.model_validate(
        {"model": {"kind": kind, "width": 3, "depth": 2, "readout": "flatten"}}
    )
    net = build_network(config, x, 2, torch.float32, torch.device("cpu"))
    assert net(x).shape == (5, 2)
    with pytest.raises(ValueError, match=r"built for 4×6 images, got 6×4; build the model"):
        net(torch.randn(5, 1, 6, 4))


@pytest.mark.parametrize("factory", ["mlp", "cnn", "resnet", "two_layer"])
def test_an_unknown_device_is_named(factory):
    make = {
        "mlp": lambda: gs.models.mlp(3, 4, device="gpu"),
        "cnn": lambda: gs.models.cnn(1, 4, 3, 2, device="gpu"),
        "resnet": lambda: gs.models.resnet(1, 4, 3, 2, device="gpu"),
        "two_layer": lambda: gs.models.two_layer(3, 4, device="gpu"),
    }[factory]
    with pytest.raises(ValueError, match=r"device must be a torch\.device .*got 'gpu'"):
        make()


def test_branch_scale_is_a_number_and_ignored_without_residual_blocks():
    with pytest.raises(ValueError, match="branch_scale must be a finite number, got 'x'"):
        gs.models.mlp(3, 4, depth=4, residual=True, branch_scale="x")
    with pytest.raises(ValueError, match="branch_scale must be a finite number, got 'x'"):
        gs.models.resnet(1, 4, 3, 2, branch_scale="x")
    gs.models.mlp(3, 4, depth=4, residual=False, branch_scale="x")  # documented: ignored


@pytest.mark.parametrize(("split", "fraction"), [("test", 0.001), ("train", 0.999)])
def test_a_test_fraction_that_empties_a_split_is_refused(split, fraction):
    with pytest.raises(ValueError, match=f"test_fraction = {fraction} leaves the {split} split"):
        digits(split=split, test_fraction=fraction)
    x, _ = digits(split="test", test_fraction=0.01)
    assert x.shape[0] > 0
