"""``python -m gdscope.cli``: the ``gdscope`` command."""

from gdscope.cli import main

main()
