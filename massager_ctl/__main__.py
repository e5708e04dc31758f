"""``python -m massager_ctl`` runs ``massager-ctl``."""

from .cli import main

main()
