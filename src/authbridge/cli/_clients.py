"""``authbridge clients``: register, list, remove OAuth clients and rotate their secrets.

Secrets are generated here (256 bits behind the ``abcs_`` prefix), printed
once and stored only as their hash: a lost secret is replaced
(``authbridge clients secret ID``), never shown again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from ..issuer._client_auth import MAX_CLIENT_ID_CHARS, SECRET_METHODS
from ..issuer._config import GRANT_TYPES, SCOPE_CHARS, is_loopback_url
from ..issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from ..jose.keys import PRIVATE_MEMBERS, UnusableKey, key_from_jwk
from ..store import ClientAuthMethod, ClientRecord, Conflict, Store
from ._app import REFUSED, UNAVAILABLE, F, fail, group, group_command, to_json
from ._stores import StoreOption, with_store

MAX_JWKS_BYTES = 64 * 1024
"""Largest JWKS file read by ``--jwks-file``."""

_VSCHAR = frozenset(chr(c) for c in range(0x20, 0x7F))

_AUTH_METHODS: dict[str, ClientAuthMethod] = {
    "client_secret_basic": "client_secret_basic",
    "client_secret_post": "client_secret_post",
    "private_key_jwt": "private_key_jwt",
}

clients_app = group(
    "clients",
    (
        "Register the OAuth clients of the app's own authorization server (machines, "
        "first-party apps) and rotate their secrets."
    ),
)


def _command(name: str, summary: str) -> Callable[[F], F]:
    return group_command(clients_app, name, summary)


ClientIdArgument = Annotated[
    str, typer.Argument(metavar="CLIENT_ID", help="The client id.", show_default=False)
]


def _check_client_id(client_id: str) -> None:
    # RFC 6749 Appendix A.1: printable ASCII; spaces at either end are surely a mistake.
    if (
        not client_id
        or len(client_id) > MAX_CLIENT_ID_CHARS
        or not set(client_id) <= _VSCHAR
        or client_id != client_id.strip()
    ):
        fail(
            f"error: a client id is 1 to {MAX_CLIENT_ID_CHARS} printable ASCII characters "
            "without leading or trailing spaces",
            UNAVAILABLE,
        )


def _read_jwks(path: Path) -> dict[str, Any]:
    """The public JWKS in ``path``; refused if any key is private, unusable or symmetric."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        fail(f"error: cannot read the JWKS file {str(path)!r}: {exc.strerror}", UNAVAILABLE)
    if len(data) > MAX_JWKS_BYTES:
        fail(f"error: the JWKS file is larger than {MAX_JWKS_BYTES} bytes", UNAVAILABLE)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        fail(f"error: {str(path)!r} is not a JSON document", UNAVAILABLE)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        fail(
            'error: the JWKS file must be a JWKS: {"keys": [...]} with at least one key',
            UNAVAILABLE,
        )
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            fail(f"error: key #{index} of the JWKS is not an object", UNAVAILABLE)
        private = sorted(PRIVATE_MEMBERS & set(key))
        if private:
            # Never echo the values: only the member names.
            fail(
                f"error: key #{index} of the JWKS holds private key material "
                f"({', '.join(private)}); register the public keys only",
                UNAVAILABLE,
            )
        try:
            key_from_jwk(key)
        except UnusableKey as exc:
            fail(f"error: key #{index} of the JWKS cannot verify signatures ({exc})", UNAVAILABLE)
    return {"keys": keys}


def _check_scopes(scopes: list[str]) -> frozenset[str]:
    for scope in scopes:
        if not scope or not set(scope) <= SCOPE_CHARS:
            fail(
                f"error: scope names are printable ASCII without spaces or quotes, got {scope!r}",
                UNAVAILABLE,
            )
    return frozenset(scopes)


_UNSAFE_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})


def _redirect_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI, or ``None``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not (parts.netloc or parts.path) or "#" in uri:
        return "is absolute and has no fragment"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in uri):
        return "has no spaces, control characters or backslashes"
    scheme = parts.scheme.lower()
    if scheme in _UNSAFE_SCHEMES:
        return f"cannot use the {scheme}: scheme"
    if scheme in ("http", "https"):
        if not parts.hostname or "@" in parts.netloc:
            return "names a host and has no user information (user@host)"
        if scheme == "http" and not is_loopback_url(uri):
            return "uses https (http only for a loopback address: http://127.0.0.1:PORT/...)"
    return None


def _check_redirect_uris(uris: list[str]) -> tuple[str, ...]:
    for uri in uris:
        problem = _redirect_problem(uri)
        if problem is not None:
            fail(f"error: a redirect URI {problem}, got {uri!r}", UNAVAILABLE)
    return tuple(dict.fromkeys(uris))


def _print_secret(client_id: str, secret: str) -> None:
    typer.echo(f"client_id: {client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo(
        "This secret is shown only now and cannot be shown again: store it where the client "
        f"reads it (a new one: authbridge clients secret {client_id}).",
        err=True,
    )


@_command("add", "Register a client (prints its generated secret once).")
def add(
    client_id: ClientIdArgument,
    *,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Human-readable name.")] = "",
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            metavar="GRANT",
            help=f"A grant it may use ({', '.join(sorted(GRANT_TYPES))}); repeat for several. "
            "Default: client_credentials.",
            show_default=False,
        ),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="A scope it may be granted; repeat for several.",
            show_default=False,
        ),
    ] = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="A public client (no secret, e.g. a browser or mobile app): identified by "
            "its id only; it cannot use client_credentials.",
        ),
    ] = False,
    auth_method: Annotated[
        str | None,
        typer.Option(
            "--auth-method",
            metavar="client_secret_basic|client_secret_post|private_key_jwt",
            help="How a confidential client authenticates (default: client_secret_basic; "
            "client_secret_post is accepted for either secret method).",
            show_default=False,
        ),
    ] = None,
    jwks_file: Annotated[
        Path | None,
        typer.Option(
            "--jwks-file",
            metavar="PATH",
            help="The client's public keys (a JWKS) for private_key_jwt.",
            dir_okay=False,
        ),
    ] = None,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            metavar="URI",
            help="A registered redirect URI for the authorization_code grant (matched "
            "exactly; https, or http on a loopback address, where a native app may use any "
            "port of http://127.0.0.1/... or http://[::1]/...); repeat for several.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Register a client in the store.

    A confidential client gets a generated secret (client_secret_basic or
    client_secret_post), printed once, or authenticates with keys of its own
    (private_key_jwt with --jwks-file). Exit codes: 0 added, 1 the client id
    is taken, 2 invalid options or the store is unavailable.
    """
    _check_client_id(client_id)
    if public and auth_method is not None:
        fail("error: --public and --auth-method exclude each other", UNAVAILABLE)
    if auth_method is not None and auth_method not in _AUTH_METHODS:
        fail(f"error: --auth-method is one of {', '.join(_AUTH_METHODS)}", UNAVAILABLE)
    method: ClientAuthMethod = (
        "none" if public else _AUTH_METHODS[auth_method or "client_secret_basic"]
    )
    if jwks_file is not None and method != "private_key_jwt":
        fail("error: --jwks-file goes with --auth-method private_key_jwt", UNAVAILABLE)
    if method == "private_key_jwt" and jwks_file is None:
        fail("error: --auth-method private_key_jwt needs --jwks-file PATH", UNAVAILABLE)
    grants = list(grant or ())
    if not grants:
        if public:
            fail("error: name the grants of a public client with --grant GRANT", UNAVAILABLE)
        grants = ["client_credentials"]
    unknown = sorted(set(grants) - GRANT_TYPES)
    if unknown:
        fail(
            f"error: unknown grant {unknown[0]!r} (known: {', '.join(sorted(GRANT_TYPES))})",
            UNAVAILABLE,
        )
    if public and "client_credentials" in grants:
        fail(
            "error: a public client cannot use client_credentials (it has no credentials); "
            "register a confidential client",
            UNAVAILABLE,
        )
    redirect_uris = _check_redirect_uris(list(redirect_uri or ()))
    if "authorization_code" in grants and not redirect_uris:
        fail(
            "error: the authorization_code grant needs at least one --redirect-uri URI",
            UNAVAILABLE,
        )
    jwks = _read_jwks(jwks_file) if jwks_file is not None else None
    secret = new_secret(CLIENT_SECRET_PREFIX) if method in SECRET_METHODS else None
    record = ClientRecord(
        client_id=client_id,
        name=name,
        auth_method=method,
        secret_hash=hash_secret(secret, "client_secret") if secret is not None else None,
        jwks=jwks,
        grant_types=frozenset(grants),
        scopes=_check_scopes(list(scope or ())),
        redirect_uris=redirect_uris,
        created_at=time.time(),
    )

    async def action(opened: Store) -> bool:
        try:
            await opened.clients.add(record)
        except Conflict:
            return False
        return True

    if not with_store(store, action):
        fail(f"error: a client with the id {client_id!r} exists already", REFUSED)
    typer.echo(f"Added client {client_id!r} ({method}).", err=True)
    if secret is not None:
        _print_secret(client_id, secret)


def _describe(client: ClientRecord) -> dict[str, Any]:
    # Never the secret hash: what a client is, not how it proves it.
    return {
        "client_id": client.client_id,
        "name": client.name,
        "auth_method": client.auth_method,
        "grant_types": sorted(client.grant_types),
        "scopes": sorted(client.scopes),
        "redirect_uris": list(client.redirect_uris),
        "keys": len(client.jwks.get("keys") or ()) if client.jwks else 0,
        "disabled": client.disabled,
        "created_at": client.created_at,
    }


@_command("list", "The registered clients (never their secrets).")
def list_clients(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    store: StoreOption = None,
) -> None:
    """List the clients registered in the store, without any secret or hash."""

    async def action(opened: Store) -> list[dict[str, Any]]:
        return [_describe(client) for client in await opened.clients.list()]

    clients = with_store(store, action)
    if as_json:
        typer.echo(to_json(clients))
        return
    if not clients:
        typer.echo("No clients registered.", err=True)
        return
    for client in clients:
        flags = " (disabled)" if client["disabled"] else ""
        grants = ",".join(client["grant_types"]) or "-"
        scopes = " ".join(client["scopes"]) or "-"
        typer.echo(
            to_json(client["client_id"])[1:-1]
            + f"  {client['auth_method']}  grants={grants}  scopes={scopes}{flags}"
        )


@_command("remove", "Remove a client (its refresh tokens stop working).")
def remove(client_id: ClientIdArgument, store: StoreOption = None) -> None:
    """Remove a client and its refresh-token families.

    Access tokens already issued to it stay valid until they expire. Exit
    codes: 0 removed, 1 no such client, 2 the store is unavailable.
    """

    async def action(opened: Store) -> bool:
        return await opened.clients.delete(client_id)

    if not with_store(store, action):
        fail(f"error: no client with the id {client_id!r}", REFUSED)
    typer.echo(f"Removed client {client_id!r}.", err=True)


@_command("secret", "Replace a client's secret (the new one is printed once).")
def rotate_secret(client_id: ClientIdArgument, store: StoreOption = None) -> None:
    """Give a client a new generated secret; the old one stops working at once.

    Exit codes: 0 replaced, 1 no such client or the client has no secret
    (public or private_key_jwt), 2 the store is unavailable.
    """
    secret = new_secret(CLIENT_SECRET_PREFIX)

    async def action(opened: Store) -> str | None:
        client = await opened.clients.get(client_id)
        if client is None:
            return "no_client"
        if client.auth_method not in SECRET_METHODS:
            return client.auth_method
        try:
            await opened.clients.update(
                replace(client, secret_hash=hash_secret(secret, "client_secret"))
            )
        except KeyError:
            return "no_client"
        return None

    problem = with_store(store, action)
    if problem == "no_client":
        fail(f"error: no client with the id {client_id!r}", REFUSED)
    if problem is not None:
        fail(
            f"error: client {client_id!r} authenticates with {problem}, not with a secret",
            REFUSED,
        )
    _print_secret(client_id, secret)
