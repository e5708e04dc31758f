"""``python -m simulator`` runs ``massager-sim``."""

from .cli import main

main()
