"""The ``gdscope`` Typer app and what its command modules share.

The app itself (its commands are registered by :mod:`gdscope.cli`), the consoles for standard
output and standard error, :class:`UserError` and the number format of every table. A reader
that closes standard output early (``gdscope export DIR --csv - | head``) ends any command
quietly, with exit status 141.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

HELP = """Measure what deep-learning optimization theory predicts, and judge it.

Your own networks, data sets and probes: put the `gs.register_model`, `gs.register_dataset`
and `gs.register_probe` calls in a module and name it with `--import MODULE` before the
command (`gdscope --import mynets run study.toml`), or once in the environment
(`GDSCOPE_IMPORT=mynets,lab.probes`). MODULE is a dotted module name importable from the
current directory, or a path to a .py file; worker processes get the registrations too.
"""


class _Commands(TyperGroup):
    """The app's commands: a reader that closes standard output early ends a command quietly.

    ``gdscope export DIR --csv - | head``: the first write after ``head`` exits raises
    ``BrokenPipeError`` (or rich's console calls :meth:`_Console.on_broken_pipe`); every
    command ends then with no traceback and no message, exit status 141
    (:func:`gdscope._output.stdout_closed`), not 1 ("a trial failed").
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _closed_pipe():  # what the eager options print: --version
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _closed_pipe():
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # what is still buffered fails here, not at exit


@contextlib.contextmanager
def _closed_pipe() -> Iterator[None]:
    """Turn standard output's ``BrokenPipeError`` into a quiet exit (:func:`gdscope._output.stdout_closed`).

    Another pipe's (a user's model reading from a server that went away) is the error it is.
    The help (``gdscope --help | head``) is printed by typer's own rich console, which ends a
    closed pipe itself with the null device in its place and ``SystemExit(1)``: that exit is 141
    too.
    """
    from gdscope._output import (
        PIPE_CLOSED,
        stdout_broken,
        stdout_closed,
        stdout_silenced_since,
        stdout_target,
    )

    before = stdout_target()
    try:
        yield
    except BrokenPipeError as err:
        if not stdout_broken():  # without its errno: click would exit 1 silently on EPIPE
            raise OSError(f"{err.strerror or err} (not standard output's)") from err
        raise typer.Exit(stdout_closed()) from None
    except SystemExit as err:
        if err.code == 1 and stdout_silenced_since(before):
            raise typer.Exit(PIPE_CLOSED) from None
        raise


class _Console(Console):
    """A rich console whose closed pipe is a ``BrokenPipeError`` (rich exits with 1 itself)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("standard output closed by its reader")


app = typer.Typer(
    name="gdscope",
    cls=_Commands,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)
stdout = _Console()
if not stdout.is_terminal:  # piped or captured: no terminal width to respect, keep tables whole
    stdout.width = 160
stderr = _Console(stderr=True)
STATUS_STYLE = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow", "REPORTED": "cyan"}
"""The rich style of each verdict status in the command line's tables."""


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"gdscope {version('gdscope')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="print the version and exit",
        callback=_print_version,
        is_eager=True,
    ),
    imports: list[str] | None = typer.Option(  # noqa: B008 (typer's declaration)
        None,
        "--import",
        metavar="MODULE",
        help=(
            "import your module (registering models, data sets, probes) before the command; "
            "a dotted name importable from the current directory or a .py path; repeatable; "
            "also read, comma-separated, from GDSCOPE_IMPORT"
        ),
    ),
) -> None:
    """Import the user's modules (``--import``, ``GDSCOPE_IMPORT``) before any command runs."""
    import os

    from gdscope.cli.imports import ENV_VAR, import_all

    try:
        import_all(imports or [], os.environ.get(ENV_VAR, ""))
    except ValueError as err:
        raise UserError(str(err)) from None


class UserError(Exception):
    """An error in what the user asked for: reported as one line, exit code 2."""


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN).

    >>> finite_or_none({"a": [1.0, float("nan")], "b": float("inf")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def fmt(value: float | None) -> str:
    """Format a number for a table (4 significant digits; ``None`` is blank)."""
    return "" if value is None else f"{value:.4g}"


def check_device(device: str) -> None:
    """Refuse, in one line, a device torch does not know or this machine does not have."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(
            f"--device: unknown device {device!r}; accepted: cpu, cuda, cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {device!r} requested but CUDA is not available here; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"--device: {device!r} requested but torch sees {torch.cuda.device_count()} GPU(s); "
            "use cuda:0 … or cpu"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device: {device!r} requested but MPS is not available here; use cpu")
