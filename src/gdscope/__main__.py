"""``python -m gdscope`` runs the command line."""

from gdscope.cli import main

main()
