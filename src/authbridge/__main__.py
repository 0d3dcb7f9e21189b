"""``python -m authbridge``."""

from .cli import main

main()
