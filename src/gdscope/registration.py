"""Names for a user's own networks and data sets: ``gs.register_model`` and ``gs.register_dataset``.

A registered name is used like a built-in one: ``model.kind = "my_net"`` or ``data.name =
"my_data"`` in a study file, a ``TrialConfig`` or ``gdscope train``, and ``gdscope list models``
/ ``list datasets`` show it. What the function receives:

* a **model** function is called as ``fn(**model.args)`` after ``torch.manual_seed(seed)`` —
  the keyword arguments a ``model.kind = "custom"`` factory gets (:mod:`gdscope.factories`) — and
  returns an ``nn.Module``, moved to the trial's dtype and device, whose output on the data's
  ``x`` must fit the targets. The built-in kinds' options (``model.width``, ``depth``…) are
  refused at any value but their default; ``output_activation``, ``output_scale`` and
  ``center_output`` apply as to any kind. A class (an ``nn.Module`` subclass) works as well.
* a **dataset** loader is called like a built-in one (:data:`gdscope.data.DATASETS`): with
  the keyword arguments among ``n``, ``d`` (``data.n``, ``data.d``), ``seed``, ``dtype``,
  ``device`` that it takes, and ``data.options`` (checked against its signature); one that
  takes ``split`` is called with ``"train"`` and ``"test"`` (a held-out set). It returns
  ``(x, y)`` or ``{"train": (x, y), "test": (x, y)}``, tensors or arrays, as a custom data
  factory does. Its own defaults of ``n`` and ``d`` stand where the config leaves them unset
  (and are recorded there); gdscope's ``n = 64``, ``d = 16`` fill only a parameter without a
  default; ``data.n`` / ``data.d`` set for a loader that does not take it is refused
  (:class:`gdscope.config.parts.DataConfig`).

The stored config of such a trial marks ``null`` what the function never reads: the built-in
kinds' options of a model, the sizes a loader does not take.

Each registration records the function's ``"module:qualname"`` and the SHA-256 of the file it is
defined in (of its source text where it has no file), which enter the content hash of every trial
naming it: editing the code gives new hashes, so a resumed study reruns those trials.

Worker processes get the registrations of the process that starts them (the local pool when it
starts, and with each job the registrations made since; each Ray task with its arguments): a worker imports the function's module by name, or
else loads its file by path (a module beside the study or script need not be importable there),
and refuses to build from a file whose digest is no longer the registered one. So the function
must be defined at the top level of a module file; one typed into a console or notebook works in
this process only (``workers=1``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import marshal
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gdscope.factories import file_digest, load_module_file

MODEL_KINDS = ("mlp", "two_layer", "cnn", "resnet", "custom")
"""The built-in ``model.kind`` names (``gdscope.trials.networks.MODELS`` builds them)."""

V = TypeVar("V")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_REGISTRIES: dict[str, UserRegistry] = {}
_IMPORTED: dict[str, str] = {}
"""``file → sha256`` of each user module a worker took from ``sys.modules`` (one version only)."""


@dataclass(frozen=True, eq=False)
class Registered:
    """A user's function registered under ``name``: ``ref`` (``"module:qualname"``) and its code's digest.

    Pickled (to a worker process) as its name, ref, file and digest; the worker loads the
    function again (:func:`_restore`).
    """

    what: str
    name: str
    fn: Callable[..., Any]
    ref: str
    file: str
    sha256: str

    @property
    def label(self) -> str:
        """How messages name it: ``"model.kind 'my_net' (mynets:make_net)"``."""
        field = {"model": "model.kind", "dataset": "data.name"}.get(self.what, self.what)
        return f"{field} {self.name!r} ({self.ref})"

    def hash_payload(self) -> dict[str, str]:
        """Return what enters a trial's content hash: the function's name and code digest."""
        return {"ref": self.ref, "sha256": self.sha256}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.what, self.name, self.ref, self.file, self.sha256))


class UserRegistry:
    """The names given to a user's functions of one kind (``"model"``, ``"dataset"``) in this process."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Registered] = {}
        _REGISTRIES[what] = self

    def register(
        self, name: str, fn: Callable[..., Any], *, built_in: Iterable[str], replace: bool
    ) -> None:
        """Register ``fn`` as ``name``; see :func:`register_model`."""
        verb = f"register_{self.what}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{verb}: name {name!r} must be letters, digits and '_', starting with a letter "
                "(e.g. 'my_net')"
            )
        if name in built_in:
            raise ValueError(f"{verb}: {name!r} is a built-in {self.what}; choose another name")
        entry = _entry(self.what, name, fn)
        old = self._entries.get(name)
        same = old is not None and (old.fn is fn or old.hash_payload() == entry.hash_payload())
        if old is not None and not same and not replace:
            raise ValueError(
                f"{verb}: {name!r} is registered already as {old.ref}; pass replace=True to "
                f"replace it, or choose another name"
            )
        self._entries[name] = entry

    def unregister(self, name: str) -> None:
        """Remove the registration of ``name`` (``ValueError`` if there is none)."""
        if name not in self._entries:
            raise ValueError(f"unregister_{self.what}: {name!r} was not registered")
        del self._entries[name]

    def get(self, name: str) -> Registered | None:
        """Return the registration of ``name``, or ``None``."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Return the registered names, in the order registered."""
        return list(self._entries)

    def install(self, entries: Mapping[str, Registered], *, only: bool = False) -> None:
        """Take a parent process's registrations (a worker's start), keeping equal ones.

        ``only``: also drop the names ``entries`` lacks (the parent unregistered them).
        """
        for name in [name for name in self._entries if only and name not in entries]:
            del self._entries[name]
        for name, entry in entries.items():
            old = self._entries.get(name)
            if old is None or old.hash_payload() != entry.hash_payload():
                self._entries[name] = entry


class MergedView(Mapping[str, V]):
    """A read-only mapping: the built-in entries, then one per registered name (read live)."""

    def __init__(
        self, built_in: Mapping[str, V], registry: UserRegistry, value: Callable[[Registered], V]
    ) -> None:
        self._built_in, self._registry, self._value = built_in, registry, value

    def __getitem__(self, key: str) -> V:
        if key in self._built_in:
            return self._built_in[key]
        entry = self._registry.get(key)
        if entry is None:
            raise KeyError(key)
        return self._value(entry)

    def __iter__(self) -> Iterator[str]:
        yield from self._built_in
        yield from (name for name in self._registry.names() if name not in self._built_in)

    def __len__(self) -> int:
        return sum(1 for _ in self)


MODEL_REGISTRY = UserRegistry("model")
DATASET_REGISTRY = UserRegistry("dataset")


def register_model(name: str, fn: Callable[..., Any], *, replace: bool = False) -> None:
    """Name a function that builds your network, for ``model.kind = name`` in any config.

    ``fn(**model.args)`` is called after ``torch.manual_seed(seed)`` and returns an
    ``nn.Module`` (see :mod:`gdscope.registration` for what else applies). Registering the same
    function (or the same code) again is a no-op.

    Args:
        name: the ``model.kind`` (letters, digits and ``_``), not a built-in kind.
        fn: a function or class defined at the top level of a module (worker processes load it
            from there).
        replace: allow giving ``name`` to another function than the one registered.

    Raises:
        ValueError: a bad name, a built-in kind, a name registered for another function
            (without ``replace``), or ``fn`` not a function or class.

    Example:
        >>> import torch, gdscope as gs
        >>> def tiny_net(width=8):
        ...     return torch.nn.Sequential(
        ...         torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)
        ...     )
        >>> gs.register_model("tiny_net", tiny_net)
        >>> config = gs.TrialConfig.model_validate(
        ...     {"model": {"kind": "tiny_net", "args": {"width": 4}},
        ...      "data": {"name": "sphere", "n": 8, "d": 3}, "steps": 3}
        ... )
        >>> gs.run_trial(config).status
        'completed'
        >>> unregister_model("tiny_net")

    """
    MODEL_REGISTRY.register(name, fn, built_in=MODEL_KINDS, replace=replace)


def unregister_model(name: str) -> None:
    """Remove a name given with :func:`register_model` (``ValueError`` if there is none)."""
    MODEL_REGISTRY.unregister(name)


def model_kinds() -> list[str]:
    """Every ``model.kind`` a config accepts now: the built-in kinds, then the registered ones."""
    return [*MODEL_KINDS, *(k for k in MODEL_REGISTRY.names() if k not in MODEL_KINDS)]


def with_code(payload: dict[str, Any], entry: Registered | None) -> dict[str, Any]:
    """``payload`` (a config part's hash payload) with a registered function's code digest added."""
    return payload if entry is None else {**payload, "registered": entry.hash_payload()}


def registrations() -> dict[str, dict[str, Registered]]:
    """Return the registrations, ``{"model": {...}, "dataset": {...}}``, for worker processes."""
    return {what: dict(r._entries) for what, r in _REGISTRIES.items() if r._entries}


def install_registrations(
    snapshot: Mapping[str, Mapping[str, Registered]] | None, *, only: bool = False
) -> None:
    """Install a parent's :func:`registrations` in this (worker) process.

    ``only``: make this process's registrations exactly ``snapshot`` (a newer one than the
    worker started with: names the parent unregistered since are dropped).
    """
    snapshot = snapshot or {}
    for what, registry in _REGISTRIES.items():
        if what in snapshot or only:
            registry.install(snapshot.get(what, {}), only=only)


def portable(what: str, name: str, fn: Any) -> Any:
    """Return ``fn`` in the form a worker loads (a :class:`Registered`), or as it is if it cannot be.

    What a registered probe travels as: unpickled in a worker, it never raises (a function the
    worker cannot load says why when called), and it loads from its file a module the worker
    cannot import by name.
    """
    try:
        return _entry(what, name, fn)
    except ValueError:  # not a function or class of a module (e.g. a partial): pickled as it is
        return fn


def _entry(what: str, name: str, fn: Any) -> Registered:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not callable(fn) or not isinstance(module, str) or not isinstance(qualname, str):
        raise ValueError(
            f"register_{what}: {name!r} needs a function or class defined in a module, got a "
            f"{type(fn).__name__}; wrap it in a function"
        )
    ref = f"{module}:{qualname}"
    file = _source_file(fn)
    digest = file_digest(Path(file), ref) if file else hashlib.sha256(_source(fn, ref)).hexdigest()
    return Registered(what, name, fn, ref, file, digest)


def _codes(fn: Any) -> list[Any]:
    if hasattr(fn, "__code__"):
        return [fn.__code__]
    values = vars(fn).values() if isinstance(fn, type) else ()
    return [v.__code__ for v in values if hasattr(v, "__code__")]


def _source_file(fn: Any) -> str:
    """Return the file ``fn`` is defined in, or ``""`` (a console, a notebook, a doctest)."""
    codes = _codes(fn)
    path: str | None = codes[0].co_filename if codes else None
    if path is None:
        try:
            path = inspect.getsourcefile(fn)
        except TypeError:  # a builtin
            path = None
    return str(Path(path).resolve()) if path and os.path.isfile(path) else ""


def _source(fn: Any, ref: str) -> bytes:
    """Return what is hashed for code without a file: its source text, else its byte code."""
    try:
        return inspect.getsource(fn).encode()
    except (OSError, TypeError):
        return b"".join(marshal.dumps(c) for c in _codes(fn)) or ref.encode()


class _Unusable:
    """Stands for a registered function a worker could not load: calling it says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(self.problem)


def _restore(what: str, name: str, ref: str, file: str, sha256: str) -> Registered:
    """Load a registered function in a worker; never raises (building it then says why not)."""
    try:
        fn: Callable[..., Any] = _load(ref, file, sha256)
    except Exception as err:
        fn = _Unusable(f"registered {what} {name!r} ({ref}) cannot be loaded here: {err}")
    return Registered(what, name, fn, ref, file, sha256)


def _load(ref: str, file: str, sha256: str) -> Any:
    module_name, qualname = ref.split(":")
    if not file or "<" in qualname:
        raise ValueError(
            "it is not defined at the top level of a module file; define it there, or run in "
            "one process (workers=1)"
        )
    path = Path(file)
    if file_digest(path, ref) != sha256:
        raise ValueError(f"{path} changed since it was registered; register it again")
    module = sys.modules.get(module_name)
    if not _same_file(module, path):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # not importable here: loaded from its file below
            module = None
    if _same_file(module, path) and _IMPORTED.setdefault(file, sha256) == sha256:
        return functools.reduce(getattr, qualname.split("."), module)
    name = "__gdscope_main__" if module_name == "__main__" else module_name
    module = load_module_file(path, name, sha256, ref)
    return functools.reduce(getattr, qualname.split("."), module)


def _same_file(module: Any, path: Path) -> bool:
    found = getattr(module, "__file__", None)
    return isinstance(found, str) and Path(found).resolve() == path
