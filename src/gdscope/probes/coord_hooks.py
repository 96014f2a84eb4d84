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
over every (width, seed) point, the fit of :func:`gdscope.stats.loglog_fit`. A width may be any
positive number (a width multiplier such as ``0.5`` or ``1.75``, as mup allows); it is passed to
``model_factory`` and recorded as given.

Both statistics are computed inside the hook, when the module returns, as mup does: a later
in-place operation (``ReLU(inplace=True)``, ``out += identity``) or an optimizer step that
updates a parameter the output is a view of (``self.pos.expand(…)``) cannot change them. Only
``h_0`` is kept, as a copy, for ``delta_rms``: one output per recorded module, not one per step.

Relation to ``mup.coord_check.get_coord_data`` (microsoft/mup): there, step ``t = 1, 2, …``
records the training forward pass of update ``t``, i.e. at ``θ_{t−1}``; here ``step = t − 1``,
plus one forward pass at ``θ_steps`` after the last update. ``rms`` is mup's ``'l2'`` statistic
(``(x**2).mean()**0.5``; mup's default ``'l1'`` is ``mean |x|``). Forwards run in ``train()``
mode, as mup's do. mup seeds once per seed and builds the widths in turn from one generator;
here every width is built right after ``torch.manual_seed(seed)`` (the caller's global generator
is restored afterwards), so a model's init does not depend on which widths came before it.
A named optimizer is gdscope's (:func:`gdscope.optim.make_optimizer`; ``"adamw"``:
``torch.optim.AdamW`` on :func:`gdscope.optim.param_groups`), so it applies the per-layer
learning-rate multipliers a model declares for the optimizer's rule (gdscope's μP models:
``MuSGD``'s for SGD, ``MuAdam``'s for Adam); mup's own optimizers are passed as a callable.

A module called ``k > 1`` times in one forward pass (e.g. the shared ``activation`` of
:class:`gdscope.models.mlp.MLP`) is recorded as ``name#0 … name#{k−1}`` in call order; a
tuple, list or dict output as ``name:out[i]`` (mup's naming); the whole model is ``""``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from gdscope.functional import savable
from gdscope.optim.registry import OPTIMIZERS, make_optimizer, param_groups
from gdscope.probes.coord_check import rms

__all__ = ["CoordCheck", "CoordRow", "coordinate_check"]

OptimizerFactory = Callable[[nn.Module, float], torch.optim.Optimizer]

_NAMED_OPTIMIZERS = sorted([*OPTIMIZERS, "adamw"])


class CoordRow(NamedTuple):
    """One measurement: a module's output at one step of one (width, seed) run."""

    width: float
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

    Raises:
        ValueError: a row whose width is not a finite number > 0 (``slopes`` takes its log).

    """

    rows: tuple[CoordRow, ...]

    def __post_init__(self) -> None:
        for index, row in enumerate(self.rows):
            _check_width(f"rows[{index}].width", row.width)

    @property
    def modules(self) -> list[str]:
        """Module names in the order they were first recorded."""
        return list(dict.fromkeys(row.module for row in self.rows))

    @property
    def last_step(self) -> int:
        """The last recorded step (the number of updates).

        Raises:
            ValueError: the table is empty.

        """
        if not self.rows:
            raise ValueError(
                "CoordCheck.rows is empty: nothing was recorded; run coordinate_check with "
                "modules=[...] naming modules that the forward pass calls"
            )
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
            ValueError: an unknown ``value``, a ``step`` that was not recorded, an empty table.

        """
        if value not in ("rms", "delta_rms"):
            raise ValueError(f"value must be 'rms' or 'delta_rms', got {value!r}")
        at = self.last_step if step is None else step
        recorded = sorted({row.step for row in self.rows})
        if isinstance(at, bool) or at not in recorded:
            raise ValueError(
                f"step must be a recorded step, got {step!r}; recorded steps: "
                f"{_span(recorded)} (or step=None for the last)"
            )
        points: dict[str, list[tuple[float, float]]] = {name: [] for name in self.modules}
        for row in self.rows:
            v = getattr(row, value)
            if row.step == at and math.isfinite(v) and v > 0:
                points[row.module].append((math.log(row.width), math.log(v)))
        return {name: _ols_slope(pts) for name, pts in points.items()}


def _span(steps: list[int]) -> str:
    if len(steps) > 2 and steps == list(range(steps[0], steps[-1] + 1)):
        return f"{steps[0]} … {steps[-1]}"
    return ", ".join(str(s) for s in steps)


def _ols_slope(points: list[tuple[float, float]]) -> float:
    if len({x for x, _ in points}) < 2:
        return math.nan
    x, y = np.array(points, dtype=np.float64).T
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def _check_width(name: str, width: Any) -> float:
    """Return ``width`` unchanged (an int stays an int) if it is a finite real number > 0."""
    real = isinstance(width, numbers.Real) and not isinstance(width, bool)
    if not (real and math.isfinite(float(width)) and float(width) > 0):
        raise ValueError(
            f"{name} must be a finite number > 0 (a width or a width multiplier), got {width!r}"
        )
    return int(width) if isinstance(width, numbers.Integral) else float(width)


def coordinate_check(
    model_factory: Callable[[Any], nn.Module],
    widths: Sequence[float],
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
        widths: the widths to build: finite numbers > 0 (integers, or width multipliers).
        data: one batch ``(x, y)``, used at every step (full-batch training, as mup's
            ``fix_data=True``).
        steps: optimizer updates per run (≥ 1); steps ``0 … steps`` are recorded.
        lr: the learning rate.
        optimizer: a name of :data:`gdscope.optim.OPTIMIZERS` (``"sgd"``, ``"adam"``, …, built
            by :func:`gdscope.optim.make_optimizer` with the model's lr multipliers) or
            ``"adamw"``, or ``(model, lr) -> Optimizer`` — e.g.
            ``functools.partial(gdscope.integrations.mup.mup_optimizer, "sgd")`` for ``MuSGD``.
        loss_fn: ``loss_fn(model(x), y) -> scalar``; default cross-entropy (mup's ``'xent'``).
        modules: names from ``model.named_modules()`` to record (``""`` is the whole model);
            default every leaf module that holds parameters of its own.
        seeds: one run per seed and width.

    Returns:
        A :class:`CoordCheck`: rows ``(width, seed, step, module, rms, delta_rms)`` and
        :meth:`CoordCheck.slopes`.

    Raises:
        ValueError: ``steps < 1``, no widths or a width that is not a finite number > 0, an
            unknown optimizer name or module name, a named module the forward pass never calls,
            or nothing to record (a model whose parameters are not held by leaf modules: name
            the modules to record with ``modules=``).

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
    if len(widths) == 0:
        raise ValueError("widths is empty: give at least one width")
    given = [_check_width(f"widths[{i}]", w) for i, w in enumerate(widths)]
    if modules is not None and len(modules) == 0:
        raise ValueError("modules is empty: give names from model.named_modules(), or None")
    make_opt = _optimizer_factory(optimizer)
    loss = torch.nn.functional.cross_entropy if loss_fn is None else loss_fn
    rows: list[CoordRow] = []
    for seed in seeds:
        for width in given:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = model_factory(width)
                stats = _train_recording(model, data, steps, lr, make_opt, loss, modules)
            rows.extend(
                CoordRow(width, int(seed), step, name, h_rms, delta)
                for step, outs in enumerate(stats)
                for name, (h_rms, delta) in outs.items()
            )
    return CoordCheck(tuple(rows))


def _optimizer_factory(optimizer: str | OptimizerFactory) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    if optimizer == "adamw":  # torch's default weight decay 0.01, divided by c per group
        return lambda model, lr: torch.optim.AdamW(
            param_groups(model, lr, optimizer="adamw", weight_decay=0.01), lr=lr
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {_NAMED_OPTIMIZERS} or (model, lr) -> Optimizer, "
            f"got {optimizer!r}"
        )
    name = optimizer
    return lambda model, lr: make_optimizer(name, model, lr)


def _chosen_modules(model: nn.Module, names: Sequence[str] | None) -> dict[str, nn.Module]:
    named = dict(model.named_modules())
    kind = type(model).__name__
    if names is None:
        chosen = {
            name: m
            for name, m in named.items()
            if next(m.children(), None) is None
            and next(m.parameters(recurse=False), None) is not None
        }
        if not chosen:
            raise ValueError(
                f"coordinate_check found no module to record in {kind}: by default it records "
                "leaf modules holding parameters of their own, and it has none (raw "
                "nn.Parameters?); pass modules=[...] with names from model.named_modules() "
                "('' is the whole model)"
            )
        return chosen
    unknown = [name for name in names if name not in named]
    if unknown:
        known = ", ".join(repr(n) for n in list(named)[:12])
        raise ValueError(
            f"modules {unknown} are not in {kind}.named_modules(): "
            f"choose from {known}{', …' if len(named) > 12 else ''}"
        )
    return {name: named[name] for name in names}


Stats = dict[str, tuple[float, float]]


class _Recorder:
    """Forward hooks that reduce each output to ``(rms, delta_rms)`` when the module returns.

    ``init`` keeps a copy of every step-0 output (keyed by module, call index and leaf), the
    ``h_0`` of ``delta_rms``; ``calls`` holds, per module, one list of ``(leaf, rms, delta)``
    per call of the current forward pass.
    """

    def __init__(self) -> None:
        self.init: dict[tuple[str, int, str], Tensor] = {}
        self.calls: dict[str, list[list[tuple[str, float, float]]]] = {}
        self.first = True

    def hook_for(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            seen = self.calls.setdefault(name, [])
            stats = []
            for leaf, tensor in _leaves("", out):
                h = tensor.detach()
                key = (name, len(seen), leaf)
                if self.first:
                    self.init[key] = h.clone()
                h0 = self.init.get(key)
                delta = math.nan if h0 is None or h0.shape != h.shape else rms(h.double() - h0)
                stats.append((leaf, rms(h), delta))
            seen.append(stats)

        return hook

    def collect(self, chosen: dict[str, nn.Module]) -> Stats:
        """Name this forward pass's statistics (``name``, ``name#k``, ``name:out[i]``)."""
        flat: Stats = {}
        for name in chosen:
            seen = self.calls.get(name, [])
            for k, stats in enumerate(seen):
                base = name if len(seen) == 1 else f"{name}#{k}"
                for leaf, h_rms, delta in stats:
                    flat[f"{base}:out{leaf}" if leaf else base] = (h_rms, delta)
        self.calls.clear()
        self.first = False
        return flat


def _train_recording(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    steps: int,
    lr: float,
    make_opt: OptimizerFactory,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    names: Sequence[str] | None,
) -> list[Stats]:
    """Return, per step ``0 … steps``, ``{recorded name: (rms, delta_rms)}``."""
    x, y = savable(data)  # inputs or targets made in inference mode: copies a graph can save
    model.train()
    optimizer = make_opt(model, lr)
    chosen = _chosen_modules(model, names)
    recorder = _Recorder()
    handles = [m.register_forward_hook(recorder.hook_for(name)) for name, m in chosen.items()]
    stats: list[Stats] = []
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            if not stats:
                _check_called(model, names, recorder)
            optimizer.step()
            stats.append(recorder.collect(chosen))
        with torch.no_grad():
            model(x)
        stats.append(recorder.collect(chosen))
    finally:
        for handle in handles:
            handle.remove()
    return stats


def _check_called(model: nn.Module, names: Sequence[str] | None, recorder: _Recorder) -> None:
    kind = type(model).__name__
    if names is not None:
        idle = [name for name in names if name not in recorder.calls]
        if idle:
            raise ValueError(
                f"modules {idle} of {kind} are not called by its forward pass: record modules "
                "that run (a shared module's calls are recorded as name#0, name#1, …)"
            )
    if not recorder.init:
        raise ValueError(
            f"coordinate_check recorded no output of {kind}: the chosen modules returned no "
            "tensor; pass modules=[...] with names from model.named_modules() ('' is the whole "
            "model)"
        )


def _leaves(prefix: str, out: Any) -> Iterator[tuple[str, Tensor]]:
    if isinstance(out, Tensor):
        yield prefix, out
    elif isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            yield from _leaves(f"{prefix}[{i}]", o)
    elif isinstance(out, dict):
        for k, o in out.items():
            yield from _leaves(f"{prefix}[{k}]", o)
