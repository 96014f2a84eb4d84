"""From trial configs to ensembles: which trials train together, and running one group.

Trials of a study that differ only in ``seed``, ``optimizer.lr`` and ``model.init_scale`` build
models of one structure (the seed and the init scale change values, never shapes or forward
multipliers) and optimizers that run the same operations with other constants, so they can be
stacked. ``run_trial_group`` returns, per config, exactly what :func:`gdscope.trials.trial.run_config`
returns (a ``Trace``), or the exception it raises; whenever the ensemble cannot reproduce the
loop it runs the loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from gdscope.config import TrialConfig
from gdscope.ensemble._train import train_ensemble
from gdscope.training import Stop, Trace
from gdscope.training.scheduled import PROBES
from gdscope.training.user_probes import registered_probes
from gdscope.trials.trial import Trial, build_trial, run_config, validate_trial

__all__ = [
    "BATCHED_OPTIMIZERS",
    "VARYING",
    "batch_refusal",
    "can_batch",
    "group_trials",
    "run_trial_group",
]

BATCHED_OPTIMIZERS = frozenset({"gd", "sgd", "heavy_ball", "nesterov"})
"""Optimizer names built on ``torch.optim.SGD``, the ones :class:`StackedSGD` reproduces."""

VARYING = (("seed",), ("optimizer", "lr"), ("model", "init_scale"))
"""Config fields in which the members of one ensemble may differ."""

ConfigLike = Mapping[str, Any] | BaseModel


def _validated(config: ConfigLike) -> Any:
    return config if isinstance(config, BaseModel) else validate_trial(config)


def _alone_refusal(config: Any) -> str | None:
    """Why this config cannot join any ensemble, or ``None``."""
    if not isinstance(config, TrialConfig):
        return f"trial kind {getattr(config, 'kind', type(config).__name__)!r} is not batched"
    if config.batch_size is not None:
        return f"mini-batch training (batch_size={config.batch_size}) is not batched"
    if config.optimizer.name not in BATCHED_OPTIMIZERS:
        return (
            f"optimizer {config.optimizer.name!r} is not batched; batched: "
            f"{', '.join(sorted(BATCHED_OPTIMIZERS))}"
        )
    registered = registered_probes()
    for name in config.probes:
        if name in registered or PROBES[name].needs_optimizer:
            return (
                f"probe {name!r} may read the optimizer or .grad, which a member of an "
                "ensemble does not have (registered probes and those reading the optimizer "
                "run in the loop)"
            )
    return None


def _group_key(config: TrialConfig) -> str:
    data = config.model_dump(mode="json")
    for path in VARYING:
        node = data
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1])
    return json.dumps(data, sort_keys=True)


def batch_refusal(configs: Sequence[ConfigLike]) -> str | None:
    """Return why ``configs`` cannot be trained as one ensemble, or ``None`` if they can.

    They can when every one is a network trial trained full batch by ``gd``/``sgd``/
    ``heavy_ball``/``nesterov`` and they differ at most in ``seed``, ``optimizer.lr`` and
    ``model.init_scale``. (Numerical agreement is checked again when the ensemble runs.)

    Raises:
        pydantic.ValidationError: a config dict is invalid.

    """
    if not configs:
        return "no configs"
    validated = [_validated(c) for c in configs]
    for i, config in enumerate(validated):
        reason = _alone_refusal(config)
        if reason is not None:
            return f"config {i}: {reason}"
    keys = [_group_key(c) for c in validated]
    for i, key in enumerate(keys[1:], 1):
        if key != keys[0]:
            fields = _differing(json.loads(keys[0]), json.loads(key))
            return (
                f"config {i} differs from config 0 in {', '.join(fields)}; an ensemble may "
                "vary only seed, optimizer.lr and model.init_scale"
            )
    return None


def can_batch(configs: Sequence[ConfigLike]) -> bool:
    """Whether ``configs`` can run as one ensemble (see :func:`batch_refusal` for the reason)."""
    return batch_refusal(configs) is None


def _differing(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            path
            for key in sorted(set(a) | set(b))
            for path in _differing(a.get(key), b.get(key), f"{prefix}{key}.")
        ]
    return [] if a == b else [prefix.rstrip(".")]


def group_trials(configs: Sequence[ConfigLike], *, max_size: int | None = None) -> list[list[int]]:
    """Partition config indices into ensembles; every config appears in exactly one group.

    Configs that :func:`can_batch` together share a group (in input order, groups ordered by
    their first config); configs that cannot be batched at all are groups of one. With
    ``max_size``, larger groups are split into consecutive chunks.

    Example:
        >>> base = {"model": {"kind": "two_layer", "width": 8}, "steps": 2}
        >>> configs = [{**base, "seed": s} for s in range(3)] + [{**base, "steps": 3}]
        >>> group_trials(configs)
        [[0, 1, 2], [3]]

    """
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be a positive integer or None, got {max_size!r}")
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        validated = _validated(config)
        refusal = _alone_refusal(validated)
        key = f"alone:{i}" if refusal is not None else _group_key(validated)
        groups.setdefault(key, []).append(i)
    size = max_size or max(len(configs), 1)
    return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]


def run_trial_group(
    configs: Sequence[ConfigLike], *, exact: bool = True
) -> list[Trace | Exception]:
    """Run ``configs`` as one ensemble; return per config what ``run_config`` returns or raises.

    Args:
        configs: trial config dicts (as ``run_config`` takes them) or validated configs.
        exact: bitwise the loop's numbers; ``False`` trades that for speed (not for the store).

    Returns:
        ``results[i]``: the ``Trace`` of config ``i``, or the exception its run raised.
        When the configs cannot be batched (:func:`batch_refusal`), or the ensemble cannot
        reproduce the loop (:class:`NotBatchableError`) or any member fails, the configs are
        run one by one with ``run_config`` instead, so the results are always the loop's.

    """
    results: list[Trace | Exception | None] = [None] * len(configs)
    validated: dict[int, Any] = {}
    for i, config in enumerate(configs):
        try:
            validated[i] = _validated(config)
        except Exception as error:
            results[i] = error
    if len(validated) > 1 and batch_refusal(list(validated.values())) is None:
        _run_ensemble(validated, results, exact)
    for i, config in enumerate(configs):
        if results[i] is None:
            results[i] = _run_alone(config)
    return [r for r in results if r is not None]


def _run_alone(config: ConfigLike) -> Trace | Exception:
    try:
        return run_config(config.model_dump() if isinstance(config, BaseModel) else config)
    except Exception as error:
        return error


def _run_ensemble(
    configs: dict[int, TrialConfig], results: list[Trace | Exception | None], exact: bool
) -> None:
    """Fill ``results`` of the configs that build, when the ensemble reproduces the loop."""
    trials: dict[int, Trial] = {}
    for i, config in configs.items():
        try:
            trials[i] = build_trial(config)
        except Exception as error:
            results[i] = error
    if not trials:
        return
    first = next(iter(trials.values()))
    cfg = first.config
    try:
        traces = train_ensemble(
            [t.model for t in trials.values()],
            [t.optimizer for t in trials.values()],
            [t.data for t in trials.values()],
            cfg.steps,
            loss_fn=first.loss_fn,
            probes=cfg.probes,
            stop=Stop(cfg.stop.loss_below, cfg.stop.accuracy_at_least),
            eval_data=[t.eval_data for t in trials.values()],
            exact=exact,
        )
    except Exception:  # NotBatchableError, or a member failed: the loop decides, exactly
        return
    for (i, trial), trace in zip(trials.items(), traces, strict=True):
        trace.record(0, trial.tuning)
        results[i] = trace
