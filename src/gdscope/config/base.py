"""The frozen base of every config part, and the count types its fields use.

A part's stored form (``model_dump``) marks with ``null`` the fields its network or data set
does not read (:meth:`FrozenPart.unread_fields`: gdscope's defaults such as ``model.width`` of a
user's factory), so that an export or a report never shows a value that was not used. The
content hash reads every field as it is (:meth:`FrozenPart.hash_payload`), so that the mark
changed no stored hash; each part drops the marks when a stored config is read back. Which fields
are unread, and how a config stored before the marks reads in this form, is
:mod:`gdscope._stored_form` (no torch: the store and the report use it).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from gdscope.factories import FactoryRef

Scalar = int | float | str | bool

EVERY_FIELD = "every_field"
"""Serialization context key: dump every field as it is, unread ones included (the hash's view)."""
STORED = "stored"
"""Validation context key: the config was read back from a store (``gdscope verify``), where an
earlier gdscope wrote it; a refusal added since (a size its data set ignores, ``data.d = 4`` of
``chebyshev``) does not apply, so that it validates with its stored hash."""


def read_back(info: ValidationInfo) -> bool:
    """Whether this validation reads a config back from a store (the :data:`STORED` context)."""
    return isinstance(info.context, dict) and bool(info.context.get(STORED))


def _whole(value: Any) -> Any:
    """Refuse a bool or a float where a count is wanted (``steps = 1e18``, ``steps = true``)."""
    if isinstance(value, bool | float):
        raise ValueError(
            f"must be a whole number written without a decimal point, exponent or true/false, "
            f"got {value!r}"
        )
    return value


PositiveCount = Annotated[int, BeforeValidator(_whole), Field(gt=0)]
"""An integer ≥ 1 (a bool or a float is refused, not converted)."""
Count = Annotated[int, BeforeValidator(_whole), Field(ge=0)]
"""An integer ≥ 0 (a bool or a float is refused, not converted)."""


def _admits(annotation: Any, kind: type) -> bool:
    """Whether a field's type admits ``kind``: ``kind`` or ``Any`` anywhere in it."""
    if annotation is kind or annotation is Any:
        return True
    return any(_admits(arg, kind) for arg in typing.get_args(annotation))


class FrozenPart(BaseModel):
    """A frozen part of a trial config (unknown keys refused) with its content-hash payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    HASH_OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
    """Fields added after catalogue results were stored: left out of ``TrialConfig.content_hash``
    while they hold their default, so the hashes of existing configs do not change."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``true``/``false`` for a real number (``optimizer.l1 = true`` was read as 1.0)."""
        kind = cls.model_fields[info.field_name].annotation if info.field_name else None
        if isinstance(value, bool) and _admits(kind, float) and not _admits(kind, bool):
            raise ValueError(f"must be a number or a name, not true/false (got {value!r})")
        return value

    def unread_fields(self) -> tuple[str, ...]:
        """Fields this part's network or data set never reads; each holds its default.

        Dumped as ``null`` (the stored config says they were not used); none by default.
        """
        return ()

    @model_serializer(mode="wrap")
    def _unread_as_null(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not (isinstance(info.context, dict) and info.context.get(EVERY_FIELD)):
            data.update(dict.fromkeys(data.keys() & set(self.unread_fields())))
        return data

    def hash_payload(self) -> dict[str, Any]:
        """Return the JSON dict hashed for this part: defaults of late-added fields left out.

        Every other field enters as it is, an unread one included (its default, as before it
        was marked ``null`` in the stored config). A user's factory enters by its name and code
        digest, not its file's path.
        """
        data = self.model_dump(mode="json", context={EVERY_FIELD: True})
        for name in self.HASH_OMITTED_AT_DEFAULT:
            if getattr(self, name) == type(self).model_fields[name].get_default(
                call_default_factory=True
            ):
                del data[name]
        factory = getattr(self, "factory", None)
        if isinstance(factory, FactoryRef):
            data["factory"] = factory.hash_payload()
        return data
