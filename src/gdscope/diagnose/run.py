"""Build the diagnosed trial, train it once, measure, judge, and store the run.

:func:`diagnose` (``gs.diagnose``) is the whole diagnosis; :func:`diagnosis_config` the network
trial it trains, from :func:`network_parts` (the model and data of a factory or a registered
name); :func:`store` writes a diagnosis's series to a results store as a monitored run, and
:func:`store_interrupted` those of a diagnosis cut short by Ctrl-C (status ``interrupted``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gdscope._validation import format_errors
from gdscope.config import TrialConfig
from gdscope.config.parts import OPTIONS_BY_KIND
from gdscope.diagnose.inputs import check_lr, check_results, check_run
from gdscope.diagnose.measure import (
    DEFAULT_HESSIAN_EXAMPLES,
    DEFAULT_NTK_EXAMPLES,
    Measurements,
    measure,
)
from gdscope.diagnose.partial import Interrupted, Partial
from gdscope.diagnose.verdicts import Diagnosis, judge
from gdscope.registration import MODEL_KINDS, MODEL_REGISTRY
from gdscope.store.runs import RunWriter

__all__ = [
    "diagnose",
    "diagnosis_config",
    "network_parts",
    "store",
    "store_interrupted",
]


def network_parts(
    model: str,
    data: str,
    model_args: Mapping[str, Any] | None = None,
    data_args: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Return the ``model`` and ``data`` parts of the diagnosed trial (not yet validated).

    A ``"module:function"`` is a factory (``kind``/``name`` ``"custom"``, with ``args``);
    any other string names a model kind or data set: one registered with
    ``gs.register_model`` / ``gs.register_dataset`` (e.g. by ``gdscope --import``), or a
    built-in one. A registered model gets ``model_args`` as its ``args``, a built-in kind as its
    options (``width``, ``depth``, ``activation``, ...: fields of ``model``); a named data set
    gets ``n``, ``d`` and ``seed`` of ``data_args`` as ``data.n``, ``data.d``, ``data.seed`` and
    the rest as ``data.options``.

    >>> network_parts("mynets:make_net", "my_data", {"width": 8}, {"n": 32, "noise": 0.1})
    {'model': {'kind': 'custom', 'factory': 'mynets:make_net', 'args': {'width': 8}}, \
'data': {'name': 'my_data', 'n': 32, 'options': {'noise': 0.1}}}
    >>> network_parts("mlp", "digits", {"width": 64, "activation": "tanh"})["model"]
    {'kind': 'mlp', 'width': 64, 'activation': 'tanh'}
    """
    model_args, data_args = dict(model_args or {}), dict(data_args or {})
    if ":" in model:
        model_part: dict[str, Any] = {"kind": "custom", "factory": model, "args": model_args}
    elif model in MODEL_KINDS and model != "custom":
        model_part = {"kind": model, **_built_in_options(model, model_args)}
    else:
        model_part = {"kind": model, **({"args": model_args} if model_args else {})}
    if ":" in data:
        return {"model": model_part, "data": {"name": "custom", "factory": data, "args": data_args}}
    lifted = {key: data_args.pop(key) for key in ("n", "d", "seed") if key in data_args}
    data_part = {"name": data, **lifted, **({"options": data_args} if data_args else {})}
    return {"model": model_part, "data": data_part}


def _built_in_options(kind: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """Return a built-in kind's options from ``--arg``; refuse a key naming none of its options."""
    known = {*OPTIONS_BY_KIND[kind], "output_activation", "output_scale", "center_output"}
    for key in model_args:
        if key not in known:
            raise ValueError(
                f"--arg {key}: not an option of the built-in model {kind!r}; use one of "
                f"{', '.join(sorted(known))}"
            )
    return model_args


def diagnosis_config(
    model: str,
    data: str,
    *,
    optimizer: str = "gd",
    lr: float,
    steps: int = 200,
    momentum: float | None = None,
    batch_size: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    data_args: Mapping[str, Any] | None = None,
    loss: str = "auto",
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
) -> TrialConfig:
    """Return the validated network trial that :func:`diagnose` runs (parts: :func:`network_parts`).

    Raises:
        ValueError: a field is wrong, in one line naming its path (the problems of several
            joined by "; ", as ``gdscope diagnose`` prints them), e.g. a factory that cannot be
            located or a learning rate that is not a number greater than 0.

    """
    check_lr(lr)
    raw = {
        **network_parts(model, data, model_args, data_args),
        "optimizer": {"name": optimizer, "lr": lr, "momentum": momentum},
        "loss": loss,
        "steps": steps,
        "batch_size": batch_size,
        "probes": {"loss": 1},
        "seed": seed,
        "dtype": dtype,
        "device": device,
    }
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as err:
        raise ValueError(format_errors(err, TrialConfig, raw).replace("\n", "; ")) from None


def diagnose(
    model: str | TrialConfig,
    data: str | None = None,
    *,
    lr: float | None = None,
    optimizer: str = "gd",
    steps: int = 200,
    momentum: float | None = None,
    batch_size: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    data_args: Mapping[str, Any] | None = None,
    loss: str = "auto",
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
    ntk_examples: int = DEFAULT_NTK_EXAMPLES,
    hessian_examples: int = DEFAULT_HESSIAN_EXAMPLES,
    every: int | None = None,
    results: str | os.PathLike[str] | None = None,
    run: str | None = None,
) -> Diagnosis:
    """Measure a network at init and along a short run; say which regime it trains in.

    ``model`` and ``data`` are ``"module:function"`` factories (the model is built after
    ``torch.manual_seed(seed)``; the data factory returns ``(x, y)`` and gets ``seed=`` when it
    takes one) or registered names (:func:`network_parts`), or ``model`` is a ready
    :class:`~gdscope.config.TrialConfig` (then the other trial options are ignored). See :mod:`gdscope.diagnose.measure` for what is measured and
    :mod:`gdscope.diagnose.verdicts` for the checks (thresholds stated in each).

    Args:
        model: the model factory or registered kind, or a whole trial config.
        data: the data factory or registered data set.
        lr: the learning rate (a number).
        optimizer: a ``gdscope list optimizers`` name.
        steps: optimizer updates of the run.
        momentum: β for heavy ball and Nesterov (default 0.9).
        batch_size: mini-batch size; default full batch.
        model_args: keyword arguments of the model factory, or a built-in kind's options.
        data_args: keyword arguments of the data factory.
        loss: ``auto`` (mse for float targets, cross-entropy for labels), ``mse``, ...
        seed: seeds the model, the data, the batch order and the probe sets.
        dtype: ``float32`` or ``float64``.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        ntk_examples: examples of the NTK probe set.
        hessian_examples: examples of the Hessian probe set.
        every: steps between sharpness, PL and distance checkpoints (default ``steps // 20``).
        results: a results directory to store the run's series in (``None``: store nothing).
        run: the stored run's name (default ``"diagnose-<function>"``).

    Returns:
        The :class:`Diagnosis`.

    Raises:
        ValueError: a factory that does not import, raises or returns the wrong type, data
            that does not fit the model, a network with nothing to train, a bad option, a
            ``results`` directory the run could not be stored in, or ``run`` without
            ``results`` (one line; nothing is written).
        Interrupted: Ctrl-C (a ``KeyboardInterrupt``) once the trial is built; with
            ``results``, the series measured so far are stored first as a run of status
            ``interrupted`` (its name in ``.stored``).

    """
    check_run(run, results)
    if results is not None:
        check_results(results)
    if isinstance(model, TrialConfig):
        config = model
    else:
        if data is None or lr is None:
            raise ValueError("diagnose: give data='module:function' and lr=<number>")
        config = diagnosis_config(
            model,
            data,
            optimizer=optimizer,
            lr=lr,
            steps=steps,
            momentum=momentum,
            batch_size=batch_size,
            model_args=model_args,
            data_args=data_args,
            loss=loss,
            seed=seed,
            dtype=dtype,
            device=device,
        )
    return diagnose_checked(
        config,
        ntk_examples=ntk_examples,
        hessian_examples=hessian_examples,
        every=every,
        results=results,
        run=run,
    )


def diagnose_checked(
    config: TrialConfig,
    *,
    ntk_examples: int = DEFAULT_NTK_EXAMPLES,
    hessian_examples: int = DEFAULT_HESSIAN_EXAMPLES,
    every: int | None = None,
    results: str | os.PathLike[str] | None = None,
    run: str | None = None,
) -> Diagnosis:
    """Measure, judge and (with ``results``) store ``config``'s run, its options checked.

    :func:`diagnose` after its checks; the command checks the same options under its own names
    (``--results``) and calls this, so the store is not opened and tried twice.
    """
    try:
        measured = measure(
            config, ntk_examples=ntk_examples, hessian_examples=hessian_examples, every=every
        )
    except Interrupted as stop:
        if results is not None:
            stop.stored = store_interrupted(stop.partial, results, run)
        raise
    diagnosis = judge(measured)
    if results is not None:
        store(diagnosis, results, run)
    return diagnosis


def store(diagnosis: Diagnosis, results: str | os.PathLike[str], run: str | None = None) -> str:
    """Store the diagnosed run's series in ``results`` as a monitored run; return its hash.

    The stored config is that of ``gs.monitor`` (kind ``"monitor"``, the run's name, the model
    class and parameter count, the probe schedule and probe set) with the trial config under
    ``"trial"`` and the regime under ``"diagnosis"``; a second run under one name is a new attempt.
    """
    m = diagnosis.measurements
    regime = {"regime": diagnosis.regime, "reason": diagnosis.regime_reason}
    _, key = _write(m, results, run, (m.status, m.reason, m.steps), regime)
    return key


def store_interrupted(
    partial: Partial, results: str | os.PathLike[str], run: str | None = None
) -> str:
    """Store an interrupted diagnosis's series as a run of status ``interrupted``; return its name."""
    reason = f"interrupted (Ctrl-C) {partial.summary()}"
    regime = {"regime": "unknown", "reason": reason}
    name, _ = _write(partial, results, run, ("interrupted", reason, partial.steps), regime)
    return name


def _write(
    m: Measurements | Partial,
    results: str | os.PathLike[str],
    run: str | None,
    ending: tuple[str, str, int],
    regime: dict[str, str],
) -> tuple[str, str]:
    """Write ``m``'s series as one attempt of a monitored run; return its name and hash."""
    ref = _model_ref(m.config)
    name = run or f"diagnose-{ref.split(':')[-1]}"
    config = {
        "kind": "monitor",
        "run": name,
        "model": {"class": ref, "parameters": m.parameters},
        "loss_fn": m.loss,
        "probes": dict(m.schedule),
        "probe_set": {
            "source": "diagnose",
            "examples": m.n_train,
            "ntk_examples": m.ntk_examples,
            "hessian_examples": m.hessian_examples,
        },
        "trial": m.config.model_dump(mode="json"),
        "diagnosis": regime,
    }
    writer = RunWriter(results)
    key, _ = writer.begin(config)
    rows = [
        (step, metric, value)
        for metric, (steps, values) in m.records.items()
        for step, value in zip(steps, values, strict=True)
    ]
    writer.append(rows)
    status, reason, steps = ending
    writer.finish(status, reason, None, steps, m.wall_time_s)
    return name, key


def _model_ref(config: TrialConfig) -> str:
    """``"module:function"`` of the diagnosed model's factory or registered function, or its kind."""
    factory = config.model.factory
    entry = MODEL_REGISTRY.get(config.model.kind)
    return factory.ref if factory else entry.ref if entry else config.model.kind
