"""``authbridge users``: the local accounts of the password grant.

Usernames are stored normalised (NFKC, case-folded, stripped: ``Alice`` and
``alice`` are one account). Each account gets a random, stable id, the ``sub``
of its tokens. Passwords are read from a hidden prompt (twice) or one line of
standard input (``--password-stdin``), hashed with argon2id, and never echoed
or stored in plain text.

Changing a password, disabling or removing an account ends its refresh
tokens; access tokens already issued run until they expire.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import typer

from ..issuer._config import SCOPE_CHARS
from ..issuer._password_grant import MAX_USERNAME_CHARS
from ..issuer._passwords import PasswordTooLong, hash_password, normalize_username, password_bytes
from ..store import Conflict, Store, UserRecord
from ._app import REFUSED, UNAVAILABLE, F, fail, group, group_command, to_json
from ._stores import StoreOption, with_store

_PAGE = 100

users_app = group(
    "users",
    "Manage the local accounts that log in with the password grant.",
)


def _command(name: str, summary: str) -> Callable[[F], F]:
    return group_command(users_app, name, summary)


UsernameArgument = Annotated[
    str, typer.Argument(metavar="USERNAME", help="The login name.", show_default=False)
]
ScopeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        metavar="SCOPE",
        help="A scope the account may be granted; repeat for several.",
        show_default=False,
    ),
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of a prompt.",
    ),
]


def _shown(username: str) -> str:
    """The username quoted for the terminal, invisible characters escaped."""
    return to_json(username)


def _username(value: str) -> str:
    name = normalize_username(value)
    if not name:
        fail("error: the username is empty", UNAVAILABLE)
    if len(name) > MAX_USERNAME_CHARS:
        fail(f"error: a username is at most {MAX_USERNAME_CHARS} characters", UNAVAILABLE)
    if not name.isprintable():
        fail("error: a username has no control or invisible formatting characters", UNAVAILABLE)
    return name


def _scopes(scopes: list[str]) -> frozenset[str]:
    for scope in scopes:
        if not scope or not set(scope) <= SCOPE_CHARS:
            fail(
                f"error: scope names are printable ASCII without spaces or quotes, got {scope!r}",
                UNAVAILABLE,
            )
    return frozenset(scopes)


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        line = sys.stdin.readline(4 * 1024 + 2)
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("error: the password is empty", UNAVAILABLE)
    try:
        password_bytes(password)
    except PasswordTooLong as exc:
        fail(f"error: {exc}", UNAVAILABLE)
    return password


def _describe(user: UserRecord) -> dict[str, Any]:
    # Never the hash: whether the account has a password is enough.
    return {
        "id": user.id,
        "username": user.username,
        "scopes": sorted(user.scopes),
        "disabled": user.disabled,
        "has_password": user.password_hash is not None,
        "email": user.email,
        "email_verified": user.email_verified,
        "created_at": user.created_at,
    }


@_command("add", "Create an account (asks for its password).")
def add(
    username: UsernameArgument,
    *,
    scope: ScopeOption = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="Contact address (unverified).")
    ] = None,
    password_stdin: PasswordStdinOption = False,
    store: StoreOption = None,
) -> None:
    """Create a local account with a password.

    The account's id (the ``sub`` of its tokens) is random and printed.
    Exit codes: 0 added, 1 the username is taken, 2 invalid input or the
    store is unavailable.
    """
    name = _username(username)
    scopes = _scopes(list(scope or ()))
    password_hash = hash_password(_read_password(password_stdin))
    user = UserRecord(
        id=secrets.token_urlsafe(16),
        username=name,
        password_hash=password_hash,
        scopes=scopes,
        email=email or None,
        created_at=time.time(),
    )

    async def action(opened: Store) -> bool:
        try:
            await opened.users.add(user)
        except Conflict:
            return False
        return True

    if not with_store(store, action):
        fail(f"error: a user named {_shown(name)} exists already", REFUSED)
    typer.echo(f"Added user {_shown(name)}.", err=True)
    typer.echo(f"id: {user.id}")


@_command("list", "The accounts (never their password hashes).")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    store: StoreOption = None,
) -> None:
    """List the local accounts, ordered by username."""

    async def action(opened: Store) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await opened.users.list(limit=_PAGE, after=after)
            found.extend(_describe(user) for user in page)
            if len(page) < _PAGE:
                return found
            after = page[-1].username

    users = with_store(store, action)
    if as_json:
        typer.echo(to_json(users))
        return
    if not users:
        typer.echo("No users.", err=True)
        return
    for user in users:
        flags = " (disabled)" if user["disabled"] else ""
        flags += "" if user["has_password"] else " (no password)"
        scopes = " ".join(user["scopes"]) or "-"
        typer.echo(f"{_shown(user['username'])[1:-1]}  id={user['id']}  scopes={scopes}{flags}")


def _change(
    store: str | None,
    username: str,
    change: Callable[[UserRecord], UserRecord] | None,
    *,
    revoke: str | None,
) -> tuple[UserRecord, int]:
    """Apply ``change`` to the account (``None``: only read it) and, with ``revoke``,
    end its refresh tokens."""
    name = _username(username)

    async def action(opened: Store) -> tuple[UserRecord, int] | None:
        user = await opened.users.by_username(name)
        if user is None:
            return None
        if change is None:
            return user, 0
        try:
            updated = await opened.users.update(change(user))
        except KeyError:
            return None
        ended = 0
        if revoke is not None:
            ended = await opened.refresh.revoke_for(now=time.time(), reason=revoke, subject=user.id)
        return updated, ended

    result = with_store(store, action)
    if result is None:
        fail(f"error: no user named {_shown(name)}", REFUSED)
    return result


def _ended(count: int) -> str:
    return f"; {count} refresh token famil{'y' if count == 1 else 'ies'} ended" if count else ""


@_command("passwd", "Set an account's password (its refresh tokens end).")
def passwd(
    username: UsernameArgument,
    *,
    password_stdin: PasswordStdinOption = False,
    store: StoreOption = None,
) -> None:
    """Set a new password; the account's refresh tokens stop working.

    Exit codes: 0 changed, 1 no such user, 2 invalid input or the store is
    unavailable.
    """
    name = _username(username)
    password_hash = hash_password(_read_password(password_stdin))
    user, ended = _change(
        store, name, lambda u: replace(u, password_hash=password_hash), revoke="password_changed"
    )
    typer.echo(f"Password of {_shown(user.username)} changed{_ended(ended)}.", err=True)


@_command("disable", "Disable an account (no login, its refresh tokens end).")
def disable(username: UsernameArgument, store: StoreOption = None) -> None:
    """Disable an account: it gets no token and its refresh tokens stop working.

    Exit codes: 0 disabled, 1 no such user, 2 the store is unavailable.
    """
    user, ended = _change(
        store, username, lambda u: replace(u, disabled=True), revoke="user_disabled"
    )
    typer.echo(f"Disabled {_shown(user.username)}{_ended(ended)}.", err=True)


@_command("enable", "Enable a disabled account.")
def enable(username: UsernameArgument, store: StoreOption = None) -> None:
    """Enable an account again (refresh tokens ended when it was disabled stay ended).

    Exit codes: 0 enabled, 1 no such user, 2 the store is unavailable.
    """
    user, _ = _change(store, username, lambda u: replace(u, disabled=False), revoke=None)
    typer.echo(f"Enabled {_shown(user.username)}.", err=True)


@_command("scopes", "Show or set the scopes an account may be granted.")
def scopes(
    username: UsernameArgument,
    *,
    scope: ScopeOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every scope.")] = False,
    store: StoreOption = None,
) -> None:
    """Replace the account's scopes with the given ``--scope`` values (or none with
    ``--clear``); without either, print them.

    Tokens already issued keep their scopes; refreshes never widen them.
    Exit codes: 0 done, 1 no such user, 2 invalid input or the store is unavailable.
    """
    wanted = _scopes(list(scope or ()))
    if clear and wanted:
        fail("error: --clear and --scope exclude each other", UNAVAILABLE)
    if not clear and not wanted:
        user, _ = _change(store, username, None, revoke=None)
    else:
        user, _ = _change(store, username, lambda u: replace(u, scopes=wanted), revoke=None)
        typer.echo(f"Scopes of {_shown(user.username)} set.", err=True)
    typer.echo(" ".join(sorted(user.scopes)))


@_command("remove", "Delete an account (its refresh tokens end).")
def remove(username: UsernameArgument, store: StoreOption = None) -> None:
    """Delete an account, its linked identities and its refresh tokens.

    Exit codes: 0 removed, 1 no such user, 2 the store is unavailable.
    """
    name = _username(username)

    async def action(opened: Store) -> int | None:
        user = await opened.users.by_username(name)
        if user is None:
            return None
        ended = await opened.refresh.revoke_for(
            now=time.time(), reason="user_removed", subject=user.id
        )
        if not await opened.users.delete(user.id):
            return None
        return ended

    ended = with_store(store, action)
    if ended is None:
        fail(f"error: no user named {_shown(name)}", REFUSED)
    typer.echo(f"Removed {_shown(name)}{_ended(ended)}.", err=True)
