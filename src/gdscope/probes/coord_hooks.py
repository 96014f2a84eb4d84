r"""Coordinate check of any model through forward hooks (Yang & Hu 2021, "Tensor Programs IV").

For each width ``n`` in ``widths`` and each seed, :func:`coordinate_check` builds
``model_factory(n)`` under ``torch.manual_seed(seed)``, trains it for ``steps`` full-batch steps
on one fixed batch ``(x, y)`` and, through forward hooks on the chosen modules, records every
module output ``h`` at ``θ_0, θ_1, …, θ_steps``:

.. math::

    \operatorname{rms}(h_t) = \Big(\tfrac{1}{N}\sum_i h_{t,i}^2\Big)^{1/2}, \qquad
    \operatorname{delta\_rms}(h_t) = \operatorname{rms}(h_t - h_0),

over all ``N`` entries (examples × coordinates), in float64. Under μP both are Θ(1) in ``n``
(a flat line against width); under the standard parameterization (SP) at a fixed learning rate
the change ``h_t − h_0`` of the readout grows with ``n``. :meth:`CoordCheck.slopes` fits, per
module, the exponent ``s`` of ``stat ≈ c · n^s`` by least squares of ``log stat`` on ``log n``
over every (width, seed) point, the fit of :func:`gdscope.stats.loglog_fit`.

Relation to ``mup.coord_check.get_coord_data`` (microsoft/mup): there, step ``t = 1, 2, …``
records the training forward pass of update ``t``, i.e. at ``θ_{t−1}``; here ``step = t − 1``,
plus one forward pass at ``θ_steps`` after the last update. ``rms`` is mup's ``'l2'`` statistic
(``(x**2).mean()**0.5``; mup's default ``'l1'`` is ``mean |x|``). Forwards run in ``train()``
mode, as mup's do. mup seeds once per seed and builds the widths in turn from one generator;
here every width is built right after ``torch.manual_seed(seed)`` (the caller's global generator
is restored afterwards), so a model's init does not depend on which widths came before it.

A module called ``k > 1`` times in one forward pass (e.g. the shared ``activation`` of
:class:`gdscope.models.mlp.MLP`) is recorded as ``name#0 … name#{k−1}`` in call order; a
tuple, list or dict output as ``name:out[i]`` (mup's naming); the whole model is ``""``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from gdscope.probes.coord_check import rms

__all__ = ["CoordCheck", "CoordRow", "coordinate_check"]

OptimizerFactory = Callable[[nn.Module, float], torch.optim.Optimizer]

_TORCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


class CoordRow(NamedTuple):
    """One measurement: a module's output at one step of one (width, seed) run."""

    width: int
    seed: int
    step: int
    module: str
    rms: float
    delta_rms: float


@dataclass(frozen=True)
class CoordCheck:
    """The long-form table of a coordinate check (``pandas.DataFrame(result.rows)`` reads it).

    Attributes:
        rows: one :class:`CoordRow` per (width, seed, step, module), in that order of loops.

    """

    rows: tuple[CoordRow, ...]

    @property
    def modules(self) -> list[str]:
        """Module names in the order they were first recorded."""
        return list(dict.fromkeys(row.module for row in self.rows))

    @property
    def last_step(self) -> int:
        """The last recorded step (the number of updates)."""
        return max(row.step for row in self.rows)

    def slopes(self, *, step: int | None = None, value: str = "delta_rms") -> dict[str, float]:
        r"""Per module, the log–log slope ``s`` of ``value`` against width at ``step``.

        .. math:: \log v_{n,\text{seed}} = \log c + s \log n + e

        by least squares over every (width, seed) point with a positive finite value (the fit of
        :func:`gdscope.stats.loglog_fit`); nan with fewer than 2 distinct widths.

        Args:
            step: the step to read (default: the last).
            value: ``"delta_rms"`` (the change since init) or ``"rms"``.

        Raises:
            ValueError: an unknown ``value``.

        """
        if value not in ("rms", "delta_rms"):
            raise ValueError(f"value must be 'rms' or 'delta_rms', got {value!r}")
        at = self.last_step if step is None else step
        points: dict[str, list[tuple[float, float]]] = {name: [] for name in self.modules}
        for row in self.rows:
            v = getattr(row, value)
            if row.step == at and math.isfinite(v) and v > 0:
                points[row.module].append((math.log(row.width), math.log(v)))
        return {name: _ols_slope(pts) for name, pts in points.items()}


def _ols_slope(points: list[tuple[float, float]]) -> float:
    if len({x for x, _ in points}) < 2:
        return math.nan
    x, y = np.array(points, dtype=np.float64).T
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def coordinate_check(
    model_factory: Callable[[int], nn.Module],
    widths: Sequence[int],
    data: tuple[Tensor, Tensor],
    *,
    steps: int = 3,
    lr: float,
    optimizer: str | OptimizerFactory = "sgd",
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    modules: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
) -> CoordCheck:
    """Train each width for ``steps`` steps; record the RMS of module outputs through hooks.

    Args:
        model_factory: ``width -> nn.Module`` on the device and dtype of ``data``.
        widths: the widths to build.
        data: one batch ``(x, y)``, used at every step (full-batch training, as mup's
            ``fix_data=True``).
        steps: optimizer updates per run (≥ 1); steps ``0 … steps`` are recorded.
        lr: the learning rate.
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (torch.optim), or
            ``(model, lr) -> Optimizer`` — e.g.
            ``functools.partial(gdscope.integrations.mup.mup_optimizer, "sgd")`` for ``MuSGD``.
        loss_fn: ``loss_fn(model(x), y) -> scalar``; default cross-entropy (mup's ``'xent'``).
        modules: names from ``model.named_modules()`` to record (``""`` is the whole model);
            default every leaf module that holds parameters of its own.
        seeds: one run per seed and width.

    Returns:
        A :class:`CoordCheck`: rows ``(width, seed, step, module, rms, delta_rms)`` and
        :meth:`CoordCheck.slopes`.

    Raises:
        ValueError: ``steps < 1``, no widths, an unknown optimizer name or module name.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> def net(w):
        ...     return nn.Sequential(nn.Linear(4, w), nn.ReLU(), nn.Linear(w, 3))
        >>> x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3
        >>> res = coordinate_check(net, [8, 32], (x, y), steps=2, lr=0.1)
        >>> res.modules, res.last_step, len(res.rows)
        (['0', '2'], 2, 12)
        >>> sorted(res.slopes())
        ['0', '2']

    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not widths:
        raise ValueError("widths is empty: give at least one width")
    make_optimizer = _optimizer_factory(optimizer)
    loss = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    rows: list[CoordRow] = []
    for seed in seeds:
        for width in widths:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = model_factory(width)
                outputs = _train_recording(model, data, steps, lr, make_optimizer, loss, modules)
            rows.extend(_rows(int(width), int(seed), outputs))
    return CoordCheck(tuple(rows))


def _optimizer_factory(optimizer: str | OptimizerFactory) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    if optimizer not in _TORCH_OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {sorted(_TORCH_OPTIMIZERS)} or (model, lr) -> "
            f"Optimizer, got {optimizer!r}"
        )
    cls = _TORCH_OPTIMIZERS[optimizer]
    return lambda model, lr: cls(model.parameters(), lr=lr)


def _chosen_modules(model: nn.Module, names: Sequence[str] | None) -> dict[str, nn.Module]:
    named = dict(model.named_modules())
    if names is None:
        return {
            name: m
            for name, m in named.items()
            if next(m.children(), None) is None
            and next(m.parameters(recurse=False), None) is not None
        }
    unknown = [name for name in names if name not in named]
    if unknown:
        known = ", ".join(repr(n) for n in list(named)[:12])
        raise ValueError(
            f"modules {unknown} are not in {type(model).__name__}.named_modules(): "
            f"choose from {known}{', …' if len(named) > 12 else ''}"
        )
    return {name: named[name] for name in names}


def _train_recording(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    steps: int,
    lr: float,
    make_optimizer: OptimizerFactory,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    names: Sequence[str] | None,
) -> list[dict[str, Tensor]]:
    """Return, per step ``0 … steps``, ``{recorded name: detached output}``."""
    x, y = data
    model.train()
    optimizer = make_optimizer(model, lr)
    calls: dict[str, list[Tensor | tuple | list | dict]] = {}

    def hook_for(name: str):
        return lambda _m, _i, out: calls.setdefault(name, []).append(_detached(out))

    chosen = _chosen_modules(model, names)
    handles = [m.register_forward_hook(hook_for(name)) for name, m in chosen.items()]
    outputs: list[dict[str, Tensor]] = []
    try:
        for _ in range(steps):
            calls.clear()
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            outputs.append(_flatten(calls, chosen))
        calls.clear()
        with torch.no_grad():
            model(x)
        outputs.append(_flatten(calls, chosen))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _detached(out):
    if isinstance(out, Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return [_detached(o) for o in out]
    if isinstance(out, dict):
        return {k: _detached(o) for k, o in out.items()}
    return out


def _leaves(prefix: str, out) -> Iterator[tuple[str, Tensor]]:
    if isinstance(out, Tensor):
        yield prefix, out
    elif isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            yield from _leaves(f"{prefix}[{i}]", o)
    elif isinstance(out, dict):
        for k, o in out.items():
            yield from _leaves(f"{prefix}[{k}]", o)


def _flatten(calls: dict[str, list], chosen: dict[str, nn.Module]) -> dict[str, Tensor]:
    flat: dict[str, Tensor] = {}
    for name in chosen:
        seen = calls.get(name, [])
        for k, out in enumerate(seen):
            base = name if len(seen) == 1 else f"{name}#{k}"
            if isinstance(out, Tensor):
                flat[base] = out
            else:
                flat.update((f"{base}:out{suffix}", t) for suffix, t in _leaves("", out))
    return flat


def _rows(width: int, seed: int, outputs: list[dict[str, Tensor]]) -> list[CoordRow]:
    init = outputs[0]
    rows = []
    for step, outs in enumerate(outputs):
        for name, h in outs.items():
            h0 = init.get(name)
            delta = rms(h - h0) if h0 is not None and h0.shape == h.shape else math.nan
            rows.append(CoordRow(width, seed, step, name, rms(h), delta))
    return rows
