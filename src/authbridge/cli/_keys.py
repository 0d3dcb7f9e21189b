"""``authbridge keys``: the signing keys of the app's own issuer.

``list`` shows every key with its state (next, active, retired, revoked) and
times; ``rotate`` adds a key (published ahead of use, or active at once with
``--now``, revoking the current one with ``--revoke-current``); ``revoke``
withdraws one key; ``kek`` prints a new key-encryption key. Private key
material is never printed: keys are created encrypted under the
key-encryption key read from ``AUTHBRIDGE_KEY_ENCRYPTION_KEY``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from ..issuer._config import KEK_ENV, AppIssuer
from ..issuer._kek import SigningKeyInfo, new_kek
from ..issuer._keys import KeyManager
from ..store import Store
from ._app import (
    REFUSED,
    UNAVAILABLE,
    F,
    fail,
    group,
    group_command,
    library_logs,
    to_json,
)
from ._stores import StoreOption, with_store

keys_app = group(
    "keys",
    (
        "The signing keys of the app's own authorization server: list them, rotate them, "
        "make a key-encryption key."
    ),
)


def _command(name: str, summary: str, *, dash_arguments: bool = False) -> Callable[[F], F]:
    return group_command(keys_app, name, summary, dash_arguments=dash_arguments)


class Algorithm(StrEnum):
    """The signing algorithms a new key may use."""

    ES256 = "ES256"
    RS256 = "RS256"
    EdDSA = "EdDSA"


DevelopmentOption = Annotated[
    bool,
    typer.Option(
        "--development",
        help=f"Allow keys stored unencrypted when {KEK_ENV} is not set (development only).",
    ),
]
JwksMaxAgeOption = Annotated[
    float,
    typer.Option(
        "--jwks-max-age",
        metavar="SECONDS",
        min=1.0,
        help="The app's AppIssuer(jwks_max_age=...): how long a new key is published before "
        "it signs, and part of how long a retired key is kept.",
    ),
]
AccessTokenTtlOption = Annotated[
    float,
    typer.Option(
        "--access-token-ttl",
        metavar="SECONDS",
        min=1.0,
        help="The app's AppIssuer(access_token_ttl=...): how long a retired key is kept.",
    ),
]


def _manager(
    store: Store,
    *,
    development: bool,
    jwks_max_age: float = 3600.0,
    access_token_ttl: float = 600.0,
    alg: Algorithm = Algorithm.ES256,
) -> KeyManager:
    # Only the key settings matter here; the issuer URL is never used by the keys.
    config = AppIssuer(
        "http://127.0.0.1",
        store=store,
        development=development,
        signing_algorithm=alg.value,
        jwks_max_age=jwks_max_age,
        access_token_ttl=access_token_ttl,
        key_rotation_interval=0,
    )
    return KeyManager(store.keys, config=config, clock=time.time)


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(info: SigningKeyInfo) -> list[str]:
    return [
        info.kid,
        info.alg,
        info.state,
        info.kek_id,
        _when(info.created_at),
        _when(info.active_from),
        _when(info.retired_at or info.revoked_at),
        _when(info.published_until),
    ]


def _table(rows: list[list[str]]) -> str:
    head = ["KID", "ALG", "STATE", "KEK", "CREATED", "SIGNS FROM", "RETIRED/REVOKED", "UNTIL"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    )


@_command("list", "Every signing key with its state and times (no key material).")
def list_keys(
    *,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    jwks_max_age: JwksMaxAgeOption = 3600.0,
    access_token_ttl: AccessTokenTtlOption = 600.0,
    store: StoreOption = None,
) -> None:
    """List the signing keys in the store, oldest first.

    States: ``next`` (published, signs from SIGNS FROM), ``active`` (signs
    now), ``retired`` (published UNTIL its last token has expired, then
    deleted), ``revoked`` (withdrawn). KEK is the id of the key-encryption
    key the private part is stored under (``none``: unencrypted). Needs no
    key-encryption key: nothing is decrypted.
    """

    async def action(opened: Store) -> list[SigningKeyInfo]:
        keys = _manager(
            opened,
            development=True,
            jwks_max_age=jwks_max_age,
            access_token_ttl=access_token_ttl,
        )
        return await keys.describe()

    found = with_store(store, action)
    if as_json:
        typer.echo(to_json([info.as_dict() for info in found]))
        return
    if not found:
        typer.echo("No signing keys yet: the app makes its first one when it starts.", err=True)
        return
    typer.echo(_table([_row(info) for info in found]))


@_command("rotate", "Add a new signing key (published ahead, or active at once with --now).")
def rotate(
    *,
    now: Annotated[
        bool, typer.Option("--now", help="Sign with the new key at once (not published ahead).")
    ] = False,
    revoke_current: Annotated[
        bool,
        typer.Option(
            "--revoke-current",
            help="With --now: also revoke the key that signs now (a compromised key); its "
            "tokens are refused at once.",
        ),
    ] = False,
    alg: Annotated[
        Algorithm | None,
        typer.Option("--alg", help="The new key's algorithm (default: ES256).", show_default=False),
    ] = None,
    development: DevelopmentOption = False,
    jwks_max_age: JwksMaxAgeOption = 3600.0,
    access_token_ttl: AccessTokenTtlOption = 600.0,
    store: StoreOption = None,
) -> None:
    """Add a new signing key to the store, encrypted under the key-encryption key.

    Without --now the key is published at once and signs after one JWKS
    max-age (plus the instances' reload interval), so verifiers that cached
    the JWKS have it when it signs; the current key is retired then. With
    --now it signs as soon as each instance reloads its keys (within a
    minute). Running instances pick the new key up by themselves.

    The key-encryption key is read from AUTHBRIDGE_KEY_ENCRYPTION_KEY (make
    one with ``authbridge keys kek``); --development allows none.
    """
    if revoke_current and not now:
        fail("error: --revoke-current needs --now (a key must replace it at once)", UNAVAILABLE)

    async def action(opened: Store) -> tuple[SigningKeyInfo, bool, list[SigningKeyInfo]]:
        keys = _manager(
            opened,
            development=development,
            jwks_max_age=jwks_max_age,
            access_token_ttl=access_token_ttl,
            alg=alg or Algorithm.ES256,
        )
        before = {info.kid: info for info in await keys.describe()}
        added = await keys.rotate(immediately=now, revoke_current=revoke_current)
        after = await keys.describe()
        changed = [
            info
            for info in after
            if info.kid in before
            and (info.retired_at, info.revoked_at)
            != (before[info.kid].retired_at, before[info.kid].revoked_at)
        ]
        return added, added.kid in before, changed

    with library_logs():  # this command reports what changed itself
        added, existed, changed = with_store(store, action)
    if existed:
        when = _when(added.active_from)
        typer.echo(f"Signing key {added.kid} ({added.alg}) is already scheduled, from {when}.")
        return
    when = "now" if now else _when(added.active_from)
    typer.echo(f"Added signing key {added.kid} ({added.alg}), signing from {when}.")
    for info in changed:
        typer.echo(f"{'Revoked' if info.revoked_at else 'Retired'} signing key {info.kid}.")


@_command(
    "revoke", "Withdraw one signing key at once (its tokens are refused).", dash_arguments=True
)
def revoke(
    kid: Annotated[str, typer.Argument(metavar="KID", help="The key id (see keys list).")],
    store: StoreOption = None,
) -> None:
    """Revoke one signing key: it leaves the JWKS and its tokens are refused.

    To replace the key that signs now, prefer ``authbridge keys rotate --now
    --revoke-current``; revoking it alone makes each instance generate a new
    key when it next reloads. Exit codes: 0 revoked, 1 no such key, 2 the
    store is unavailable.
    """

    async def action(opened: Store) -> SigningKeyInfo | None:
        return await _manager(opened, development=True).revoke(kid)

    with library_logs():
        found = with_store(store, action)
    if found is None:
        fail(f"error: no signing key with the id {kid!r}", REFUSED)
    typer.echo(f"Revoked signing key {kid}.")


@_command("kek", "Print a new key-encryption key (base64url of 32 random bytes).")
def kek() -> None:
    """Print a new random key-encryption key on standard output.

    Keep it secret (a secrets manager, the deployment's environment) and set
    it as AUTHBRIDGE_KEY_ENCRYPTION_KEY for the app and for ``authbridge
    keys rotate``. To replace a KEK, set "NEW,OLD": the first encrypts new
    keys, both decrypt, until no key encrypted under the old one is left
    (see ``authbridge keys list``).
    """
    typer.echo(new_kek())
    typer.echo(
        f"Set it as {KEK_ENV} (keep it secret: it decrypts the issuer's signing keys).",
        err=True,
    )
