"""The ``authbridge`` command line (``python -m authbridge``).

Commands: ``check`` (can authbridge verify an issuer's tokens?), ``decode``
(a token's header and claims, unverified), ``verify`` (a token checked as an
app would), ``mint`` (development tokens from the embedded test issuer),
``demo`` and ``version``; ``db upgrade|current`` (the store's schema).
See ``docs/cli.md``.
"""

from __future__ import annotations

from . import _check, _dev, _tokens
from ._app import app
from ._clients import clients_app
from ._db import db_app
from ._keys import keys_app
from ._users import users_app

__all__ = ["app", "main"]

# The command modules register themselves on `app` when imported; list them
# in the order a reader meets them.
_ORDER = ("check", "decode", "verify", "mint", "demo", "version")
_COMMANDS = (_check, _dev, _tokens)
app.registered_commands.sort(key=lambda info: _ORDER.index(info.name or ""))
# Command groups are listed after the commands.
app.add_typer(users_app, name="users")
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def main() -> None:
    """Entry point of the ``authbridge`` script."""
    app()
