"""``python -m edgeskip`` runs the CLI."""

from edgeskip.cli import main

main()
