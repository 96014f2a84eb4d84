"""Whether a layer sees the examples along axis 0: the traced forward's row checks.

The structured NTK reads a layer's input and output rows as its examples. A layer run on a
sequence-first view (``(T, n, d)``, as ``nn.MultiheadAttention(batch_first=False)`` takes) has
``T`` rows there instead. The traced forward runs two copies of one example and expects two
rows (:func:`copies_of_one`: equal rows, which two tokens usually are not); where the example's
two tokens are equal (padding) only another count of copies tells (:func:`off_axis_0`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["copies_of_one", "off_axis_0"]


def copies_of_one(t: Tensor) -> bool:
    """Whether the two rows of ``t`` along axis 0 are equal, as two copies of one example's are.

    Two rows of another axis (a sequence-first view of two tokens) have the same count but
    differ; the tolerance leaves room for a kernel that rounds the two rows differently.
    """
    if t.ndim == 0 or t.shape[0] != 2:
        return False
    if not t.is_floating_point():
        return torch.equal(t[0], t[1])
    scale = float(t.detach().abs().max()) if t.numel() else 0.0
    return torch.allclose(t[0], t[1], rtol=1e-4, atol=1e-6 * scale, equal_nan=True)


def off_axis_0(model: nn.Module, x: Tensor, names: dict[int, str]) -> list[str]:
    """Layers whose input or output does not have 3 rows on axis 0 for three copies of ``x[0]``.

    The traced forward's two copies cannot tell a sequence-first view of two tokens from two
    examples where the example's two tokens are equal (padding): a second count of copies can.
    """
    problems: list[str] = []

    def leave(module: nn.Module, args: tuple[object, ...], output: object) -> None:
        given = args[0] if args and isinstance(args[0], Tensor) else None
        rows = {t.shape[0] if t.ndim else 0 for t in (given, output) if isinstance(t, Tensor)}
        if rows != {3}:
            problems.append(
                f"{names[id(module)]} sees {sorted(rows)} rows on axis 0 for three examples (the "
                "examples are not along axis 0 of its input and output)"
            )

    layers = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(False))]
    handles = [m.register_forward_hook(leave, always_call=True) for m in layers]
    try:
        with torch.no_grad():
            model(torch.cat([x[:1]] * 3))
    finally:
        for handle in handles:
            handle.remove()
    return problems
