"""``gdscope --import MODULE`` and ``GDSCOPE_IMPORT``: the user's code, imported before a command.

A module that calls ``gs.register_model``, ``gs.register_dataset`` or ``gs.register_probe`` when
it is imported makes its names known to every command of that ``gdscope`` process (``list``,
``run``, ``train``, ``diagnose``…); the local pool's workers and Ray tasks get the registrations
as from any process (:mod:`gdscope.registration`). ``MODULE`` is

* a dotted module name (``mynets``, ``lab.nets``), imported from the current directory first
  (which is put first on ``sys.path``, as ``python -m`` does), then the import path; or
* a path to a ``.py`` file (``src/mynets.py``), imported as the module named by its stem, its
  folder put first on ``sys.path`` (as ``python FILE`` does; the current directory next) so
  that it can import its siblings.

Worker processes started later inherit that ``sys.path`` (the local pool's spawned workers),
so they import the module by name; elsewhere (a Ray node) a function is loaded from its file.

``GDSCOPE_IMPORT`` holds comma-separated values of the same kinds, imported before the
``--import`` options; each module is imported once. A value that does not import is a one-line
``ValueError`` (the command line's exit 2) naming the option (or variable), the value and the fix.

>>> split_values("mynets, lab.nets,,")
['mynets', 'lab.nets']
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["ENV_VAR", "import_all", "import_user_module", "split_values"]

ENV_VAR = "GDSCOPE_IMPORT"
"""The environment variable of modules to import before every command (comma-separated)."""
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_FIX = "give a module importable from the current directory (e.g. mynets) or a path to a .py file"


def split_values(text: str) -> list[str]:
    """Return the non-empty, stripped comma-separated values of ``text``."""
    return [value.strip() for value in text.split(",") if value.strip()]


def import_all(options: Sequence[str], env: str) -> list[str]:
    """Import the modules of ``env`` (``GDSCOPE_IMPORT``'s text), then of ``options``.

    Returns the names of the modules imported (each once, in order).

    Raises:
        ValueError: a value that is not a module name or ``.py`` path, or a module that cannot
            be found or raises when imported; one line naming ``--import`` or ``GDSCOPE_IMPORT``.

    """
    done: list[str] = []
    values = [(ENV_VAR, value) for value in split_values(env)]
    values += [("--import", value) for value in options]
    for source, value in values:
        try:
            module = import_user_module(value)
        except ValueError as err:
            raise ValueError(f"{source}: {value!r} {err}") from None
        if module.__name__ not in done:
            done.append(module.__name__)
    return done


def import_user_module(value: str) -> ModuleType:
    """Import ``value``, a dotted module name or a path to a ``.py`` file; return the module.

    Raises:
        ValueError: what went wrong and the fix (the caller names the option and the value).

    """
    value = value.strip()
    _on_path(Path.cwd())
    if value.endswith(".py") or "/" in value or os.sep in value or Path(value).is_file():
        return _import_file(Path(value))
    if not _DOTTED.fullmatch(value):
        raise ValueError(f"is neither a dotted module name nor a path to a .py file; {_FIX}")
    return _import(value)


def _import_file(path: Path) -> ModuleType:
    if path.suffix != ".py" or not path.is_file():
        what = "is not a .py file" if path.is_file() or path.suffix != ".py" else "does not exist"
        raise ValueError(f"{what} ({path.resolve()}); {_FIX}")
    path = path.resolve()
    name = path.stem
    if not _DOTTED.fullmatch(name) or "." in name:
        raise ValueError(f"names no module ({name!r} is not an identifier); rename the file")
    loaded = sys.modules.get(name)
    if loaded is not None and not _from(loaded, path):
        raise ValueError(
            f"names the module {name!r}, which is another one already "
            f"({getattr(loaded, '__file__', None) or 'built in'}); rename the file"
        )
    _on_path(path.parent)
    module = _import(name)
    if not _from(module, path):
        raise ValueError(
            f"imports another module named {name!r} ({module.__file__}) first on the import "
            "path; rename the file"
        )
    return module


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(f"{err.name}.")):
            raise ValueError(
                f"does not import: no module {name!r} in {Path.cwd()} or on the import path; {_FIX}"
            ) from None
        raise ValueError(_raised(err)) from None
    except (Exception, SystemExit) as err:  # the user's module: report any error in one line
        raise ValueError(_raised(err)) from None


def _raised(err: BaseException) -> str:
    """Say what importing raised, and where: the innermost frame of the traceback."""
    text = " ".join(str(err).split())
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return (
        f"raised {type(err).__name__}{where} when imported ({text}); fix the module so that "
        "importing it succeeds"
    )


def _on_path(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path`` (once), as ``python -m`` or ``python FILE`` does."""
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()


def _from(module: ModuleType, path: Path) -> bool:
    found = getattr(module, "__file__", None)
    return isinstance(found, str) and Path(found).resolve() == path
