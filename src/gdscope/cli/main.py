"""The ``gdscope`` command: every command registered on the app, and the entry point ``main``.

The commands are registered in the order ``--help`` lists them (see the package docstring);
:func:`main` turns every error into one line on stderr and an exit code.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from typing import Any

import typer

from gdscope.cli import bench as cli_bench
from gdscope.cli import diagnose as cli_diagnose
from gdscope.cli import listing as cli_listing
from gdscope.cli import studies as cli_studies
from gdscope.cli import train as cli_train
from gdscope.cli.app import UserError, app, stderr

__all__ = ["main", "one_line"]

app.command()(cli_train.train)
app.command("verify-probes")(cli_train.verify_probes_command)
app.command()(cli_bench.bench)
app.command()(cli_diagnose.diagnose)

list_app = typer.Typer(help="List what gdscope knows.", no_args_is_help=True)
app.add_typer(list_app, name="list")

app.command()(cli_studies.run)
app.command()(cli_studies.report)
list_app.command("claims")(cli_listing.list_claims)
list_app.command("probes")(cli_listing.list_probes)
list_app.command("models")(cli_listing.list_models)
list_app.command("datasets")(cli_listing.list_datasets)
list_app.command("optimizers")(cli_listing.list_optimizers)
app.command()(cli_studies.show)
app.command()(cli_studies.verify)
app.command()(cli_studies.export)


def main() -> None:
    """Entry point of the ``gdscope`` console script.

    Every error ends as one line on stderr: a user error (``error: ...``, exit 2; the lines of a
    study's several problems joined by :func:`one_line`) or a bad flag
    or command (click's usage error with the value given and where the help is, exit 2; no
    arguments print the help, exit 2). A warning is one ``warning: ...`` line (a
    damaged store's :class:`~gdscope.store.StoreDamaged` once per message and command). A
    reader that closes standard output early (``| head``) ends a command with no message,
    exit 141 (the app's command group handles it, :mod:`gdscope.cli.app`).
    """
    from gdscope.store import StoreDamaged, StoreError

    with warnings.catch_warnings():
        warnings.simplefilter("default", StoreDamaged)  # once per message and command
        warnings.showwarning = _one_line_warnings(warnings.showwarning, Warning)
        try:
            code = app(standalone_mode=False)
        except typer.Abort:
            _error("aborted")
            code = 1
        except (UserError, ValueError, OSError, ImportError, StoreError) as err:
            _error(str(err))
            code = 2
        except Exception as err:
            if not _is_usage_error(err):
                raise
            if type(err).__name__ != "NoArgsIsHelpError":  # else the help is printed already
                _error(_usage(err))
            code = getattr(err, "exit_code", 2)
    sys.exit(code if isinstance(code, int) else 0)  # as click's standalone mode: always exits


def _error(text: str) -> None:
    stderr.print(f"error: {one_line(text)}", highlight=False, markup=False, soft_wrap=True)


def one_line(text: str) -> str:
    r"""Return ``text`` as one line: a line ending in ``:`` runs on, the others join with ``;``.

    A study's errors list one problem per indented line under a heading; the command line
    prints them on one line, in the same order.

    >>> one_line("study.toml: invalid study:\n  seeds[1]: negative\n  name: empty\n")
    'study.toml: invalid study: seeds[1]: negative; name: empty'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = lines[0] if lines else "failed"
    for previous, line in itertools.pairwise(lines):
        joined += (" " if previous.endswith(":") else "; ") + line
    return joined


def _is_usage_error(err: Exception) -> bool:
    """Whether ``err`` is click's error about the command line (click, or typer's own copy)."""
    return callable(getattr(err, "format_message", None)) and isinstance(
        getattr(err, "exit_code", None), int
    )


def _usage(err: Any) -> str:
    """Return click's error as one line: what is wrong, the value given, where the help is."""
    text = " ".join(str(err.format_message()).split())
    param: Any = getattr(err, "param", None)
    if param is not None and getattr(param, "param_type_name", None) == "option":
        given = _given([*param.opts, *param.secondary_opts])
        if given is not None and repr(given) not in text:
            text = f"{text.rstrip('.')} (got {given!r})"
    return f"{text.rstrip('.')}; see '{_command_path()} --help'"


def _command_path() -> str:
    """Return ``gdscope`` and the (sub)command names that begin the command line."""
    command, words = typer.main.get_command(app), ["gdscope"]
    for arg in sys.argv[1:]:
        command = getattr(command, "commands", {}).get(arg)
        if command is None:
            break
        words.append(arg)
    return " ".join(words)


def _given(opts: list[str]) -> str | None:
    """Return the last value given on the command line to an option named ``opts``, if any."""
    args, found = sys.argv[1:], None
    for index, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in opts:
            found = value if eq else (args[index + 1] if index + 1 < len(args) else None)
    return found


def _one_line_warnings(show: Any, category: type[Warning]) -> Any:
    """Return ``warnings.showwarning`` printing ``category`` as one ``warning: ...`` line."""

    def show_one_line(message: Any, cls: type[Warning], *args: Any, **kwargs: Any) -> None:
        if not issubclass(cls, category):
            show(message, cls, *args, **kwargs)
            return
        text = " ".join(str(message).split())
        stderr.print(f"warning: {text}", highlight=False, markup=False, soft_wrap=True)

    return show_one_line
