"""``gdscope`` command line: a thin layer over the Python API.

Every user error ends in one line ``error: <field>: <what was seen>; <what is accepted>`` on stderr
and exit code 2, with no traceback and nothing written.

This module registers the commands, in the order ``--help`` lists them, on the app of
:mod:`gdscope.cli.app`: the network commands of :mod:`gdscope.cli.train` (``train``,
``verify-probes``, ``bench``), then the study commands of :mod:`gdscope.cli.studies` (``run``,
``report``, ``show``, ``verify``, ``export``), then ``list claims|probes|models|datasets|optimizers``
(:mod:`gdscope.cli.listing`). Before any command, the app's callback imports the user's modules
named by ``--import MODULE`` and ``GDSCOPE_IMPORT`` (:mod:`gdscope.cli.imports`), so that their
``gs.register_*`` calls are seen by every command.
"""

from gdscope.cli.app import UserError, app
from gdscope.cli.main import main, one_line

__all__ = ["UserError", "app", "main", "one_line"]
