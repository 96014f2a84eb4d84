"""``gdscope`` command line: a thin layer over the Python API.

Every user error ends in one line ``error: <field>: <what was seen>; <what is accepted>`` on stderr
and exit code 2, with no traceback and nothing written.

This module registers the commands, in the order ``--help`` lists them, on the app of
:mod:`gdscope.cli.app`: the network commands of :mod:`gdscope.cli.train` (``train``,
``verify-probes``, ``bench``), then the study commands of :mod:`gdscope.cli.studies` (``run``,
``report``, ``show``, ``verify``, ``export``), then ``list claims|probes|models|datasets|optimizers``
(:mod:`gdscope.cli.listing`).
"""

from __future__ import annotations

import sys

import typer

from gdscope.cli import diagnose as cli_diagnose
from gdscope.cli import listing as cli_listing
from gdscope.cli import studies as cli_studies
from gdscope.cli import train as cli_train
from gdscope.cli.app import UserError, app, stderr

__all__ = ["UserError", "app", "main"]

app.command()(cli_train.train)
app.command("verify-probes")(cli_train.verify_probes_command)
app.command()(cli_train.bench)
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
    """Entry point of the ``gdscope`` console script."""
    from gdscope.store import StoreError

    try:
        app()
    except (UserError, ValueError, OSError, ImportError, StoreError) as err:
        stderr.print(f"error: {err}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
