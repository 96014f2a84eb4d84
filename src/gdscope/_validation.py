"""Pydantic validation errors as one line per problem, for study files and trial configs alike.

Each line names the dotted field (claims by id: ``claims[D1-gd].band``), the value seen and what
is accepted; an unknown key gets a "did you mean" and the list of accepted keys; a wrong ``kind``
of a tagged union lists the kinds.

>>> from pydantic import BaseModel, ConfigDict, ValidationError
>>> class Box(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     width: int
>>> try:
...     Box.model_validate({"widht": 3})
... except ValidationError as error:
...     print(format_errors(error, Box, {"widht": 3}))
width: Field required
widht: unknown key; did you mean 'width'? (accepted: width)
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gdscope._checks import did_you_mean

__all__ = ["format_errors", "got_suffix"]


def format_errors(
    error: ValidationError, root: type[BaseModel] | None, data: Any = None, whole: str = "<root>"
) -> str:
    """Render ``error`` (raised validating ``data`` as ``root``) as one line per problem.

    ``data`` (the input) lets a line name a claim by its id and drop union tags; ``whole``
    names an error of the input as a whole.
    """
    lines: list[str] = []
    for item in error.errors():
        loc, where = _clean_loc(tuple(item["loc"]), data)
        where = where or whole
        kind, ctx = item["type"], item.get("ctx") or {}
        if kind == "extra_forbidden":
            accepted = _fields_at(root, loc[:-1], data)
            hint = did_you_mean(loc[-1], accepted)
            listed = f" (accepted: {', '.join(accepted)})" if accepted else ""
            lines.append(f"{where}: unknown key{hint}{listed}")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = [t.strip(" '\"") for t in str(ctx.get("expected_tags", "")).split(",")]
            what = "claim kind" if loc[:1] == ("claims",) else "kind"
            if kind == "union_tag_not_found":
                lines.append(f"{where}: missing 'kind'; give one of: {', '.join(tags)}")
            else:
                tag = ctx.get("tag")
                hint = did_you_mean(tag, tags)
                lines.append(
                    f"{where}.kind: unknown {what} {tag!r}{hint} (accepted: {', '.join(tags)})"
                )
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}{got_suffix(message, item.get('input'))}")
    return "\n".join(dict.fromkeys(lines))


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], str]:
    """Drop pydantic's union tags from ``loc``; render claims by id: ``claims[D1-gd].band``."""
    kept: list[Any] = []
    text = ""
    node = data
    for part in loc:
        if isinstance(node, Mapping) and part not in node and _is_tag(part, node):
            continue
        in_data = isinstance(node, Mapping) and part in node  # a user's key may hold "["
        if isinstance(part, str) and "[" in part and not in_data:  # "function-after[...]"
            continue
        kept.append(part)
        label = part
        child = _child(node, part)
        if (
            isinstance(part, int)
            and isinstance(child, Mapping)
            and isinstance(child.get("id"), str)
        ):
            label = child["id"]
        text += f"[{label}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        node = child
    return tuple(kept), text


def _is_tag(part: Any, node: Mapping[str, Any]) -> bool:
    return isinstance(part, str) and node.get("kind") == part


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, Sequence) and not isinstance(node, str) and isinstance(part, int):
        return node[part] if 0 <= part < len(node) else None
    return None


def _fields_at(root: Any, loc: tuple[Any, ...], data: Any) -> list[str]:
    """Field names of the model found at ``loc`` below ``root`` ([] if it is not a model)."""
    cls, node = root, data
    for part in loc:
        cls = _pick_model(cls, node)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            field = cls.model_fields.get(str(part))
            if field is None:
                return []
            cls = field.annotation
        else:
            args = get_args(cls)
            origin = get_origin(cls)
            if origin in (list, tuple, Sequence) and args:
                cls = args[0]
            elif origin in (dict, Mapping) and len(args) == 2:
                cls = args[1]
            else:
                return []
        node = _child(node, part)
    cls = _pick_model(cls, node)
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _pick_model(cls: Any, node: Any) -> Any:
    """Unwrap ``Annotated`` / ``Optional`` / unions, choosing a union member by ``node["kind"]``."""
    while get_origin(cls) is Annotated:
        cls = get_args(cls)[0]
    if get_origin(cls) in (Union, types.UnionType):
        models = [a for a in get_args(cls) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        tag = node.get("kind") if isinstance(node, Mapping) else None
        for model in models:
            field = model.model_fields.get("kind")
            is_literal = field is not None and get_origin(field.annotation) is Literal
            if is_literal and tag in get_args(field.annotation):  # type: ignore[union-attr]
                return model
        return None
    return cls


def got_suffix(message: str, value: Any) -> str:
    """`` (got VALUE)`` after an error message, unless it already says or VALUE is a whole table."""
    if "got " in message or isinstance(value, dict):
        return ""
    return f" (got {value!r})"
