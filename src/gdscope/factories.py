"""A user's own model or data factory, named ``"module:function"`` in a study or trial config.

A study can train a network and data set of the user's code (``model.kind = "custom"``,
``data.name = "custom"``)::

    [base.model]
    kind = "custom"
    factory = "mynets:make_net"        # module:function, the module found beside the study first
    args = { width = 256, depth = 3 }  # keyword arguments; sweep them as "model.args.width"

A :class:`FactoryRef` names the function, the file its module was found in and the SHA-256 of
that file. The digest enters the trial's content hash, so editing the factory's source gives new
hashes and a resumed study reruns those trials instead of reusing stale ones; the file's path does
not (moving a project does not rerun it). :func:`load_factory` imports the module from that file
and refuses it when the file no longer has the digest the trial was validated with.

Where the module is looked for (:func:`locate`): beside the study file first (``mynets.py`` or
``mynets/__init__.py``; ``a.b`` as ``a/b.py``), then the current directory, then Python's import
path (an installed package).

>>> ref = FactoryRef.model_validate("json:dumps")   # any importable module works
>>> ref.ref, ref.file.endswith("__init__.py"), len(ref.sha256)
('json:dumps', True, 64)
>>> load_factory(ref)({"a": 1})
'{"a": 1}'
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_REF = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")
_LOADED: dict[tuple[str, str], Any] = {}
"""``(file, sha256) → module``: each version of a user's module is executed once per process."""


class FactoryRef(BaseModel):
    """A user's factory function: ``ref`` (``"module:function"``), its module's file and digest.

    Validates from the string ``"module:function"`` (located with :func:`locate`) or from the
    dict a store keeps. ``sha256`` is always recomputed from ``file``: it says what the code is
    now, so a stored config validated again after an edit gets a new content hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str
    file: str
    sha256: str

    @model_validator(mode="before")
    @classmethod
    def _locate(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"ref": value}
        if not isinstance(value, dict) or not isinstance(value.get("ref"), str):
            raise ValueError(
                f"factory must be a string 'module:function' (e.g. 'mynets:make_net'), got {value!r}"
            )
        ref = value["ref"]
        path = Path(value["file"]) if value.get("file") else locate(ref)
        return {**value, "file": str(path), "sha256": file_digest(path, ref)}

    def hash_payload(self) -> dict[str, str]:
        """Return what enters a trial's content hash: the name and the code's digest, not the path."""
        return {"ref": self.ref, "sha256": self.sha256}


def locate(ref: str, beside: Path | None = None) -> Path:
    """Return the file of ``ref``'s module: beside ``beside``, else the current directory, else import.

    Raises:
        ValueError: ``ref`` is not ``"module:function"``, or no such module is found.

    """
    if not _REF.fullmatch(ref):
        raise ValueError(
            f"factory {ref!r} is not 'module:function' (e.g. 'mynets:make_net' for the function "
            "make_net in mynets.py beside the study file)"
        )
    module = ref.split(":")[0]
    parts = module.split(".")
    for folder in [beside, Path.cwd()] if beside is not None else [Path.cwd()]:
        for candidate in (
            folder.joinpath(*parts).with_suffix(".py"),
            folder.joinpath(*parts, "__init__.py"),
        ):
            if candidate.is_file():
                return candidate.resolve()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        where = f"{beside}, " if beside is not None else ""
        raise ValueError(
            f"factory {ref!r}: no module {module!r} ({parts[-1]}.py) in {where}the current "
            "directory or the import path; put it beside the study file or install it"
        )
    return Path(spec.origin).resolve()


def file_digest(path: Path, ref: str = "") -> str:
    """SHA-256 hex digest of the bytes of ``path`` (the factory's module file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise ValueError(f"factory {ref!r}: cannot read {path} ({err.strerror})") from None


def load_factory(factory: FactoryRef) -> Callable[..., Any]:
    """Import ``factory``'s module from its file and return the function.

    The file's folder is put on ``sys.path`` (once) so that the module can import its siblings.

    Raises:
        ValueError: the file changed since ``factory`` was validated (its digest differs), the
            module fails to import (the error's type and message are given), or it has no such
            callable.

    """
    path = Path(factory.file)
    module_name, function = factory.ref.split(":")
    if file_digest(path, factory.ref) != factory.sha256:
        raise ValueError(
            f"factory {factory.ref!r}: {path} changed since the trial was configured; "
            "load the study again (its trials then get new hashes)"
        )
    module = load_module_file(path, module_name, factory.sha256, factory.ref)
    found = getattr(module, function, None)
    if not callable(found):
        own = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__
        )
        close = difflib.get_close_matches(function, own, n=1)
        listed = f"; its functions: {', '.join(own)}" if own else "; it defines no function"
        raise ValueError(
            f"factory {factory.ref!r}: {path} has no function {function!r}"
            + (f" ({type(found).__name__})" if found is not None else "")
            + (f"; did you mean {close[0]!r}?" if close else listed)
        )
    return found


def load_module_file(path: Path, module_name: str, sha256: str, ref: str) -> Any:
    """Execute the module in ``path`` (digest ``sha256``) once per process; ``ValueError`` if it fails.

    The folder holding its top package is put on ``sys.path`` (once) so that it can import its
    siblings.
    """
    key = (str(path), sha256)
    module = _LOADED.get(key)
    if module is None:
        root = path.parent
        for _ in range(module_name.count(".") + (path.name == "__init__.py")):
            root = root.parent
        if str(root) not in sys.path:
            sys.path.append(str(root))
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"factory {ref!r}: {path} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's module: report any error in one line
            raise ValueError(
                f"factory {ref!r}: importing {path} failed: {type(err).__name__}: {err}"
            ) from None
        _LOADED[key] = module
    return module


def call_factory(
    factory: FactoryRef, args: dict[str, Any], what: str, *, seed: int | None = None
) -> Any:
    """Call the factory with ``args`` as keyword arguments; any error becomes one ``ValueError`` line.

    ``what`` names the config field in the message (``"model.factory"``). With ``seed``, a
    function that takes a ``seed`` parameter gets it, unless ``args`` sets one.
    """
    function = load_factory(factory)
    if seed is not None and "seed" not in args and _takes_seed(function):
        args = {**args, "seed": seed}
    return call_user(function, args, f"{what} {factory.ref!r}")


def call_user(function: Callable[..., Any], args: dict[str, Any], label: str) -> Any:
    """Return ``function(**args)``; any error becomes one ``ValueError`` line starting with ``label``."""
    try:
        return function(**args)
    except Exception as err:  # the user's function: report any error in one line
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ValueError(f"{label}({shown}) raised {type(err).__name__}: {err}") from None


def _takes_seed(function: Callable[..., Any]) -> bool:
    try:
        return "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature (a builtin): pass no seed
        return False
