"""A study's trials on a user's code: build each user model and data set once, and say what changed.

Before anything trains or is written, :func:`check_user_code` builds the model and data set of
each distinct config that calls a user's factory (:mod:`gdscope.factories`), so that a factory
that fails is refused at once; :func:`changed_factories` says why a study's stored trials were
replaced (their factory's file changed). A trial's config is stored validated, each factory with
the file and code digest it ran (:attr:`gdscope.studies.expansion.Expansion.configs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from gdscope._stored_form import stored_form
from gdscope.config import TrialConfig, canonical_hash
from gdscope.data.registry import BUILT_IN_DATASETS
from gdscope.registration import MODEL_KINDS
from gdscope.trials.networks import build_network, load_data, output_count

FILE_DATASETS = ("mnist_idx", "cifar10")
"""Data sets read from the user's files: read once before a run, like a user's factory."""


def check_user_code(configs: Iterable[Any]) -> int:
    """Build the model and data set of each distinct config that calls a user's code, once.

    A user's code: a ``custom`` factory, or a model or data set registered by name
    (:mod:`gdscope.registration`).

    What ``--dry-run`` and a run do before anything trains or is written: a factory that fails
    to import, raises, returns the wrong type, a model whose output does not fit the data's
    targets, or a data file that is missing, empty or corrupt (:data:`FILE_DATASETS`) is refused
    then, not after the first trials. Returns how many configs were built.

    Raises:
        ValueError: the first such problem, in one line naming the factory or the file.

    """
    seen: set[str] = set()
    for config in configs:
        if not isinstance(config, TrialConfig):
            continue
        user_data = config.data.name in FILE_DATASETS or config.data.name not in BUILT_IN_DATASETS
        user_model = config.model.kind == "custom" or config.model.kind not in MODEL_KINDS
        if not (user_model or user_data):
            _check_built_in_data(config, seen)
            continue
        key = canonical_hash(
            [
                config.model.hash_payload(),
                config.data.hash_payload(),
                config.dtype,
                config.device,
                "test" in config.probes,  # needs a held-out set (load_data)
            ]
        )
        if key in seen:
            continue
        seen.add(key)
        dtype, device = getattr(torch, config.dtype), torch.device(config.device)
        (x, y), eval_set = load_data(config, dtype, device)
        build_network(config, x, output_count(y, eval_set), dtype, device)
    return len(seen)


def _check_built_in_data(config: TrialConfig, seen: set[str]) -> None:
    """Load a built-in data set once per size and options (its seed aside), as its trials will.

    So a size a data set cannot give (``data.n = 5000`` of the 1438 training digits) is refused
    before the run, not in every trial.
    """
    payload = {k: v for k, v in config.data.hash_payload().items() if k != "seed"}
    key = canonical_hash([payload, config.dtype, config.device, "test" in config.probes])
    if key in seen:
        return
    seen.add(key)
    # on the CPU: a size does not depend on the device (checked apart, by the runner)
    load_data(config, getattr(torch, config.dtype), torch.device("cpu"))


def changed_factories(stale: list[dict[str, Any]], configs: list[dict[str, Any]]) -> str:
    """Say why stored trials no longer belong to their study: which factory files changed.

    ``stale``: configs of trials the study linked before and does not expand to now;
    ``configs``: what it expands to now (the validated configs, as stored).
    """
    if not stale:
        return ""
    now = {_factory_key(c): _factory_digests(c) for c in configs}
    changed = set()
    for config in stale:
        current = now.get(_factory_key(config))
        if current is not None:
            before = _factory_digests(config)
            changed |= {
                Path(f["file"]).name for f, g in zip(before, current, strict=True) if f != g
            }
    why = f": {', '.join(sorted(changed))} changed since they ran" if changed else ""
    return f"{len(stale)} stored trials replaced{why}"


def names_factory_file(configs: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a trial config names a user's factory file (``model.factory``, ``data.factory``)."""
    return any(any(_factory_digests(config)) for config in configs)


def _factory_digests(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(config.get(s, {}).get("factory") or {}) for s in ("model", "data")]


def _factory_key(config: Mapping[str, Any]) -> str:
    """Hash the config with the factories' digests left out: equal for two versions of one code.

    Read in the current stored form (:func:`~gdscope._stored_form.stored_form`): a trial stored
    before unread fields were marked ``null`` (``model.width = 256`` of a custom model) keys as
    the same config expanded now.
    """
    stripped = {
        key: (
            {**value, "factory": {"ref": value["factory"].get("ref")}}
            if isinstance(value, Mapping) and isinstance(value.get("factory"), Mapping)
            else value
        )
        for key, value in stored_form(config).items()
    }
    return canonical_hash(stripped)
