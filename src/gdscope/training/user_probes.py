"""A user's own scheduled probes: ``gs.register_probe(name, fn, metrics=[...])``.

A registered probe is scheduled by name like a built-in one (``probes = {"curvature": 10}`` in a
study, ``gs.train(..., probes=...)``, ``gs.monitor``), and a study refuses, when it loads, a claim
reading a metric that no probe of its trials records, so ``metrics`` must name every key ``fn``
returns (a name ending in ``/`` stands for a family: ``"rms/"`` covers ``"rms/layers.0"``).

``fn(ctx)`` gets the :class:`~gdscope.training.ProbeContext` of the checkpoint (the model, its
parameters and those at init, the loss, the data, the step; cached NTK and outputs) and returns
``{metric: value}``. Worker processes (the local pool's, each Ray task) install the probes
registered in the parent (a running pool's workers also those registered after it started),
loading each function as :mod:`gdscope.registration` loads a registered model: by importing its
module, else from its file. So ``fn`` must be defined at the top level of a module file (not a
lambda, nor a function typed into a console: that one fails in a worker with a message saying
so, when the probe runs).

>>> import gdscope as gs
>>> def weight_norm(ctx):
...     return {"weight_norm": float(sum(p.pow(2).sum() for p in ctx.params.values()) ** 0.5)}
>>> gs.register_probe("weight_norm", weight_norm, metrics=["weight_norm"])
>>> "weight_norm" in gs.training.PROBES
True
>>> unregister_probe("weight_norm")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gdscope.registration import Registered, portable
from gdscope.training.context import ProbeContext
from gdscope.training.scheduled import PROBES, ScheduledProbe

ProbeFn = Callable[[ProbeContext], dict[str, float]]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_REGISTERED: dict[str, ScheduledProbe] = {}
"""The probes registered in this process (installed into each worker of a local pool)."""


def register_probe(
    name: str, fn: ProbeFn, *, metrics: Iterable[str], replace: bool = False
) -> None:
    """Make ``fn`` a probe scheduled by ``name`` that records ``metrics``.

    Args:
        name: the probe's name in a schedule (letters, digits and ``_``).
        fn: ``fn(ctx: ProbeContext) -> {metric: value}``.
        metrics: every metric ``fn`` may return (``"family/"`` for a family of names).
        replace: allow replacing a probe registered before (never a built-in one).

    Raises:
        ValueError: a bad name, a built-in probe's name, a name registered already (without
            ``replace``), ``fn`` not callable, or no metrics.

    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"register_probe: name {name!r} must be letters, digits and '_' (e.g. 'curvature')"
        )
    if name in PROBES and name not in _REGISTERED:
        raise ValueError(f"register_probe: {name!r} is a built-in probe; choose another name")
    if name in _REGISTERED and not replace:
        raise ValueError(
            f"register_probe: {name!r} is registered already; pass replace=True to replace it"
        )
    if not callable(fn):
        raise ValueError(f"register_probe: fn must be callable, got {type(fn).__name__}")
    declared = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
    if not declared or not all(isinstance(m, str) and m for m in declared):
        raise ValueError(
            f"register_probe: metrics must name every metric {name!r} records, got {metrics!r}"
        )
    probe = ScheduledProbe(fn, declared)
    _REGISTERED[name] = probe
    PROBES[name] = probe


def unregister_probe(name: str) -> None:
    """Remove a probe registered with :func:`register_probe` (built-in probes stay).

    Raises:
        ValueError: ``name`` was not registered.

    """
    if name not in _REGISTERED:
        raise ValueError(f"unregister_probe: {name!r} was not registered")
    del _REGISTERED[name]
    del PROBES[name]


def registered_probes() -> dict[str, ScheduledProbe]:
    """Return the probes registered in this process, ``{name: ScheduledProbe}``."""
    return dict(_REGISTERED)


def install_probes(probes: Mapping[str, ScheduledProbe]) -> None:
    """Register ``probes`` in this process (a worker's initializer), replacing earlier ones."""
    for name, probe in probes.items():
        register_probe(name, probe.fn, metrics=probe.metrics, replace=True)


def portable_probes() -> dict[str, tuple[tuple[str, ...], Any]]:
    """Return the registered probes as worker processes get them: ``{name: (metrics, fn)}``.

    Each ``fn`` in the form :func:`gdscope.registration.portable` gives (loaded by import, else
    from its file, in the worker; never failing to unpickle).
    """
    return {
        name: (tuple(probe.metrics), portable("probe", name, probe.fn))
        for name, probe in _REGISTERED.items()
    }


def install_portable_probes(
    probes: Mapping[str, tuple[tuple[str, ...], Any]], *, only: bool = False
) -> None:
    """Register the :func:`portable_probes` of a parent process here (a worker).

    ``only``: also unregister the probes ``probes`` lacks (the parent unregistered them).
    """
    for name in [name for name in _REGISTERED if only and name not in probes]:
        unregister_probe(name)
    for name, (metrics, fn) in probes.items():
        function = fn.fn if isinstance(fn, Registered) else fn
        current = _REGISTERED.get(name)
        if current is None or current.fn is not function or current.metrics != metrics:
            register_probe(name, function, metrics=metrics, replace=True)
