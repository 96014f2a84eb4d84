"""The Gauss–Newton probes on a batch made under ``torch.inference_mode()`` (an eval loop's).

A graph cannot save an inference tensor; the loss on the outputs saves its targets (the integer
labels of cross-entropy, soft labels, BCE's targets), so they are copied as
:func:`gdscope.functional.loss_at` copies them. The values must be those of ordinary clones.
"""

import pytest
import torch
import torch.nn.functional as F

import gdscope as gs
from _helpers import assert_close
from gdscope.probes.gauss_newton import ggn_operator, ggn_sharpness

F64 = torch.float64


def _targets(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "ce_int":
        return torch.randint(0, 3, (6,), generator=g)
    if kind == "ce_soft":
        return torch.softmax(torch.randn(6, 3, generator=g, dtype=F64), -1)
    return (torch.rand(6, 3, generator=g, dtype=F64) > 0.5).to(F64)


LOSSES = {
    "ce_int": gs.losses.cross_entropy,
    "ce_soft": lambda out, y: F.cross_entropy(out, y),
    "bce": lambda out, y: F.binary_cross_entropy_with_logits(out, y),
}


@pytest.mark.parametrize("d", [3, 16], ids=["plain", "data_span"])  # 6 ≤ 16/2: the span path
@pytest.mark.parametrize("kind", list(LOSSES))
def test_inference_mode_batch_gives_the_ggn_of_its_clones(kind, d):
    net = gs.models.mlp(d, 8, depth=2, out_dim=3, seed=0, dtype=F64)
    x_plain = torch.randn(6, d, generator=torch.Generator().manual_seed(0), dtype=F64)
    y_plain = _targets(kind)
    with torch.inference_mode():
        x, y = x_plain.clone(), y_plain.clone()
    assert x.is_inference() and y.is_inference()
    loss_fn = LOSSES[kind]
    expected = ggn_sharpness(net, loss_fn, (x_plain, y_plain), tol=1e-10)
    assert_close(ggn_sharpness(net, loss_fn, (x, y), tol=1e-10), expected, rtol=1e-12, what=kind)
    v = torch.randn(_dim(net), generator=torch.Generator().manual_seed(2), dtype=F64)
    assert_close(
        ggn_operator(net, loss_fn, (x, y)).matvec(v),
        ggn_operator(net, loss_fn, (x_plain, y_plain)).matvec(v),
        rtol=1e-12,
        atol=1e-15,
        what=kind,
    )


def _dim(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_coordinate_check_on_a_batch_made_in_inference_mode():
    """mup-style coordinate checks train on the batch: its inference tensors are copied first."""
    from gdscope.probes.coord_hooks import coordinate_check

    x_plain = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    y_plain = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        x, y = x_plain.clone(), y_plain.clone()

    def run(data):
        factory = lambda w: gs.models.mlp(4, int(w), depth=2, out_dim=3, seed=0)  # noqa: E731
        return coordinate_check(factory, [8, 16], data, steps=2, lr=0.1)

    assert run((x, y)) == run((x_plain, y_plain))
