"""The data-set part of a trial config: ``DataConfig`` (re-exported by :mod:`gdscope.config.parts`).

A built-in data set gets ``data.n`` and ``data.d`` when its loader takes them, gdscope's defaults
(64, 16) where they are unset; a size it does not take (``data.d`` of ``digits``) set to another
value is refused. A loader registered by name (``gs.register_dataset``) keeps its own defaults of
``n`` and ``d`` where the config leaves them unset, and the stored config marks ``null`` what
never reaches a data set (``n``, ``d``, ``options`` of a factory; the sizes a built-in or
registered loader does not take; :meth:`gdscope.config.base.FrozenPart.unread_fields`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, JsonValue, ValidationInfo, field_validator, model_validator

from gdscope import _checks as check
from gdscope._stored_form import SIZE_DEFAULTS, SIZES, loader_signature, unread_data_fields
from gdscope.config.base import Count, FrozenPart, PositiveCount, Scalar, read_back
from gdscope.data.registry import BUILT_IN_DATASETS, DATASETS
from gdscope.factories import FactoryRef
from gdscope.registration import DATASET_REGISTRY, with_code

_DATA_RESERVED = {"dtype", "device", "seed", "split"}
"""Loader parameters the trial sets itself, never through ``data.options``."""


class DataConfig(FrozenPart):
    """Which data set; ``n`` and ``d`` go to loaders that take them, ``options`` to the rest.

    ``name = "custom"``: the user's ``factory`` called with ``args``, returning ``(x, y)`` or
    ``{"train": (x, y), "test": (x, y)}`` (tensors or arrays); it gets ``seed`` when it takes one.
    A loader registered by name keeps its own defaults of ``n`` and ``d`` where they are unset
    (:meth:`_sizes_the_loader_takes`); ``n`` or ``d`` set for a loader, built-in or registered,
    that does not take it is refused.
    """

    name: str = "sphere"
    n: PositiveCount | None = SIZE_DEFAULTS["n"]
    """Training examples; ``None``: not passed (the loader's own default)."""
    d: PositiveCount | None = SIZE_DEFAULTS["d"]
    """Input dimension; ``None``: not passed (the loader's own default)."""
    seed: Count | None = None
    options: dict[str, Scalar] = Field(default_factory=dict)
    factory: FactoryRef | None = None
    """``name = "custom"`` only: ``"module:function"`` (:mod:`gdscope.factories`)."""
    args: dict[str, JsonValue] = Field(default_factory=dict)
    """Keyword arguments of ``factory`` (sweep one as ``"data.args.n"``)."""

    HASH_OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("factory", "args")

    def hash_payload(self) -> dict[str, Any]:
        """Return the part's payload; a registered data set adds its loader's code digest."""
        return with_code(super().hash_payload(), DATASET_REGISTRY.get(self.name))

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return name if name == "custom" else _check_name(name, DATASETS, "dataset")

    @model_validator(mode="before")
    @classmethod
    def _sizes_the_loader_takes(cls, raw: Any) -> Any:
        """Fill the ``n``/``d`` a config leaves unset with a registered loader's own defaults.

        ``def load(n=1000, seed=0)`` registered by name gets ``data.n = 1000`` unless the config
        sets ``data.n``; a default that is not a whole number ≥ 1 (``n=None``) makes it ``None``
        (not passed); a parameter without a default gets gdscope's ``n = 64`` / ``d = 16``, as
        a built-in loader does. The built-in data sets are left as they are (their trials keep
        their hashes). A ``null`` that marks a size the data set does not read (a stored
        config, :meth:`unread_fields`) is dropped: the field holds its default.
        """
        if not isinstance(raw, Mapping):
            return raw
        name = raw.get("name", "sphere")
        unread = unread_data_fields(name)
        raw = {k: v for k, v in raw.items() if not (v is None and k in unread)}
        if _registered(name):
            for p in loader_signature(DATASETS[name]):
                keyword = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                if keyword and p.name in SIZES and p.name not in raw and p.default is not p.empty:
                    raw[p.name] = p.default if _is_count(p.default) else None
        return raw

    def unread_fields(self) -> tuple[str, ...]:
        """``n``, ``d``, ``options`` for a factory; a built-in or registered loader: the sizes it lacks."""
        return unread_data_fields(self.name)

    @model_validator(mode="after")
    def _factory_fits_name(self, info: ValidationInfo) -> DataConfig:
        if self.name != "custom":
            if self.factory is not None or self.args:
                raise ValueError(
                    f"data.factory and data.args apply to data.name = 'custom', got "
                    f"{self.name!r}; set data.name = 'custom' or remove them"
                )
            return self._loader_gets_what_it_needs(refuse_ignored=not read_back(info))
        if self.factory is None:
            raise ValueError(
                "data.name = 'custom' needs data.factory = 'module:function' (a function "
                "returning (x, y), e.g. 'mydata:make_data' in mydata.py beside the study)"
            )
        for name in ("n", "d", "options"):
            if name in self.model_fields_set:
                raise ValueError(
                    f"data.{name} applies to the built-in data sets, not 'custom'; pass it to "
                    f"your factory as data.args.{name}"
                )
        return self

    @field_validator("options")
    @classmethod
    def _options_fit_the_loader(cls, options: dict[str, Any], info: ValidationInfo) -> dict:
        name = info.data.get("name")  # validated before options (field order)
        if not isinstance(name, str) or name not in DATASETS:
            return options  # "custom" (refused with options below) or unknown (refused above)
        taken = set(_loader_parameters(name)) - _DATA_RESERVED
        for key in options:
            if key not in taken:
                accepted = ", ".join(sorted(taken - {"n", "d"})) or "none"
                raise ValueError(
                    f"dataset {name!r} takes no option {key!r}"
                    f"{check.did_you_mean(key, sorted(taken))} (accepted: {accepted})"
                )
        return options

    def _loader_gets_what_it_needs(self, *, refuse_ignored: bool) -> DataConfig:
        """Refuse a bad option, an unset loader parameter without default, an ignored size.

        A non-finite option; a parameter of the loader without a default that the config leaves
        unset; ``n`` or ``d`` set for a loader that does not take it (``data.d`` of ``digits``),
        unless ``refuse_ignored`` is false (a stored config, :data:`~gdscope.config.base.STORED`).
        """
        for key, value in self.options.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"data.options.{key} = {value}: give a finite number")
        for key in self.unread_fields() if refuse_ignored else ():
            value = getattr(self, key)
            if value != type(self).model_fields[key].default:
                fix = "" if self.name in BUILT_IN_DATASETS else f" (or give the loader a {key!r})"
                raise ValueError(
                    f"data.{key} = {value!r}: data set {self.name!r} takes no {key!r}, so it would "
                    f"be ignored; remove data.{key}{fix}"
                )
        given = {**self.options, "n": self.n, "d": self.d}
        missing = [
            p.name
            for p in loader_signature(DATASETS[self.name])
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in _DATA_RESERVED
            and given.get(p.name) is None
        ]
        if missing:
            where = ", ".join(
                f"data.{m}" if m in ("n", "d") else f"data.options.{m}" for m in missing
            )
            flags = " ".join(
                f"--{m} N" if m in ("n", "d") else f"--data-option {m}=VALUE" for m in missing
            )
            raise ValueError(
                f"dataset {self.name!r} needs {where}; set it in the study or config "
                f"(gdscope train: {flags})"
            )
        return self

    def known_n(self) -> int | None:
        """Return the training-set size the config knows: ``data.n`` where the loader takes it.

        ``None`` for a factory or a loader without ``n`` (their size shows only once loaded), and
        where ``data.n`` is ``None`` (the loader's own default).
        """
        return self.n if "n" in self.loader_parameters() else None

    def loader_parameters(self) -> list[str]:
        """Return the keyword parameters of this data set's loader (``gdscope.data.DATASETS``).

        None for ``"custom"``: its factory takes ``args``.
        """
        return [] if self.name == "custom" else _loader_parameters(self.name)


def _registered(name: object) -> bool:
    """Whether ``data.name`` names a loader registered with ``gs.register_dataset``."""
    return isinstance(name, str) and name not in BUILT_IN_DATASETS and name in DATASETS


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _loader_parameters(name: str) -> list[str]:
    return [p.name for p in loader_signature(DATASETS[name])]


def _check_name(name: str, accepted: Any, what: str) -> str:
    return check.known(what, name, accepted)
