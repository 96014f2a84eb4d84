"""Which config fields a user's model or data code never reads, and a stored config's current form.

A trial config's stored form (``TrialConfig.model_dump``) marks ``null`` the fields its network or
data set does not read (:meth:`gdscope.config.base.FrozenPart.unread_fields`, which asks
:func:`unread_model_fields` and :func:`unread_data_fields`):

* a ``custom`` or registered ``model.kind``: the built-in kinds' options (:data:`BUILT_IN_ONLY`);
* ``data.name = "custom"`` (a factory): ``n``, ``d`` and ``options``;
* a data set registered by name (``gs.register_dataset``) or a built-in one: the sizes its
  loader does not take (``data.d`` of ``digits``, whose inputs are 64 pixels).

The content hash reads every field as it is, so a store written before the marks (gdscope before
this format) holds the old values (``model.width = 256`` of a custom model) under the same hashes
as the new form. :func:`stored_form` reads such a config as the current format, so that a report,
an export or a comparison of stored configs never mixes the two. It needs none of the user's code:
only the sizes of a registered loader need its signature, read from the registry of this process
(``gs.register_dataset`` run here); where the loader is not registered, those two fields are left
as stored (a store written before the marks then shows ``data.d = 16`` where one written after it
shows ``null``: the value is gdscope's default either way, never one the loader read).

This module imports no torch (the report and the store read configs without it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from gdscope.registration import DATASET_REGISTRY, MODEL_KINDS

__all__ = [
    "BUILT_IN_ONLY",
    "BUILT_IN_SIZES",
    "SIZE_DEFAULTS",
    "loader_signature",
    "stored_form",
    "unread_data_fields",
    "unread_model_fields",
    "users_model",
]

BUILT_IN_ONLY = (
    "width",
    "depth",
    "activation",
    "parameterization",
    "bias",
    "residual",
    "init_scale",
    "init",
    "train_outer",
    "readout",
    "readout_init",
    "trained",
)
"""Model options of the built-in kinds; a ``custom`` model takes its own through ``model.args``."""

SIZES = ("n", "d")
"""The data sizes gdscope passes to a loader that takes them."""
SIZE_DEFAULTS = {"n": 64, "d": 16}
"""gdscope's defaults of those sizes (``DataConfig``'s): what a store written before the marks
holds for a size its loader did not take."""
BUILT_IN_SIZES = {
    "chebyshev": ("n",),
    "cifar10": ("n",),
    "digits": ("n",),
    "gaussian_mixture": SIZES,
    "lasso": SIZES,
    "mnist1d": ("n",),
    "mnist_idx": ("n",),
    "separated": SIZES,
    "sphere": SIZES,
    "sphere_images": ("n",),
    "teacher_student": SIZES,
}
"""The sizes each built-in loader takes (``gdscope.data.BUILT_IN_DATASETS``; a test holds them
equal), written here so that reading a stored config needs no torch."""


def users_model(kind: object) -> bool:
    """Whether ``model.kind`` names a user's function: ``"custom"`` or a registered kind."""
    return kind == "custom" or kind not in MODEL_KINDS


def unread_model_fields(kind: object) -> tuple[str, ...]:
    """Fields of ``model`` a network of ``kind`` never reads: a user's, the built-in options."""
    return BUILT_IN_ONLY if users_model(kind) else ()


def unread_data_fields(name: object) -> tuple[str, ...]:
    """Fields of ``data`` that never reach data set ``name``.

    ``n``, ``d``, ``options`` for ``"custom"``; the sizes a built-in loader or one registered by
    name in this process does not take; none for a name not registered here.

    >>> unread_data_fields("digits"), unread_data_fields("sphere"), unread_data_fields("custom")
    (('d',), (), ('n', 'd', 'options'))
    """
    if name == "custom":
        return (*SIZES, "options")
    entry = DATASET_REGISTRY.get(name) if isinstance(name, str) else None
    if entry is not None:
        taken = {p.name for p in loader_signature(entry.fn)}
    elif isinstance(name, str) and name in BUILT_IN_SIZES:
        taken = set(BUILT_IN_SIZES[name])
    else:
        return ()
    return tuple(size for size in SIZES if size not in taken)


@functools.cache
def loader_signature(loader: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """Return the parameters of a loader (read once per loader, which a name may change)."""
    return tuple(inspect.signature(loader).parameters.values())


_PARTS: dict[str, tuple[str, str, Callable[[object], tuple[str, ...]]]] = {
    "model": ("kind", "mlp", unread_model_fields),
    "data": ("name", "sphere", unread_data_fields),
}
"""Each part with unread fields: its naming key, that key's default, and its unread fields."""


def stored_form(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a stored trial config in the current stored form: unread fields marked ``null``.

    What ``TrialConfig.model_dump(mode="json")`` writes for the same config, whether ``config``
    was stored before the marks (every field as it is) or after them (returned equal). A field
    the stored config lacks stays absent; a config of another kind (a monitored run's) and every
    other part are returned as they are. The store is not changed: this is how configs are read.

    >>> old = {"model": {"kind": "custom", "width": 256, "args": {"w": 8}}, "seed": 0}
    >>> stored_form(old)
    {'model': {'kind': 'custom', 'width': None, 'args': {'w': 8}}, 'seed': 0}
    >>> stored_form({"model": {"kind": "mlp", "width": 256}})
    {'model': {'kind': 'mlp', 'width': 256}}
    """
    out = dict(config)
    if out.get("kind", "network") != "network":
        return out
    for part, (key, default, unread_fields) in _PARTS.items():
        fields = out.get(part)
        if isinstance(fields, Mapping):
            name = fields.get(key, default)
            unread = fields.keys() & set(unread_fields(name))
            if part == "data" and name != "custom" and name not in BUILT_IN_SIZES:
                # a registered loader, as registered here: a size off gdscope's default was read
                # by the loader that wrote the row (one registered since under the same name may
                # not take it); keep it
                unread = {f for f in unread if fields[f] in (None, SIZE_DEFAULTS[f])}
            if unread:
                out[part] = {**fields, **dict.fromkeys(unread)}
    return out
