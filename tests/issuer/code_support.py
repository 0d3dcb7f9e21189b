"""Shared by the authorization endpoint, code grant and token exchange tests.

A runtime on a real store (``store_url``: a SQLite file, and PostgreSQL where
the server runs) with these clients, all allowed ``items:read`` and
``items:write``:

- ``web``: public, ``authorization_code`` + ``refresh_token``, three
  registered redirect URIs (one with a query, one loopback for a native app);
- ``other``: public, the same grants, its own redirect URI;
- ``backend``: confidential (``client_secret_basic``), the same grants;
- ``no-refresh``: public, ``authorization_code`` only;
- ``password-only``: public, no ``authorization_code``;
- ``gone``: disabled.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from authbridge.issuer import (
    AppIssuer,
    AuthorizeRequest,
    IssuerRuntime,
    TokenRequest,
    complete,
    parse_authorize,
)
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, UserRecord
from store_support import (  # fixtures: a SQLite file and a PostgreSQL database
    postgres_database,
    postgres_store_url,
    sqlite_store_url,
    store_url,
)

ISSUER = "http://127.0.0.1:8000"
OTHER_RESOURCE = "https://reports.example.test"
SCOPES = ("items:read", "items:write", "admin")
CLIENT_SCOPES = frozenset({"items:read", "items:write"})
CODE_GRANTS = frozenset({"authorization_code", "refresh_token"})

REDIRECT = "https://app.example.test/callback"
REDIRECT_WITH_QUERY = "https://app.example.test/cb?tenant=7"
LOOPBACK = "http://127.0.0.1/native"
OTHER_REDIRECT = "https://other.example.test/callback"
BACKEND_SECRET = new_secret(CLIENT_SECRET_PREFIX)

WEB = ClientRecord(
    client_id="web",
    auth_method="none",
    grant_types=CODE_GRANTS,
    scopes=CLIENT_SCOPES,
    redirect_uris=(REDIRECT, REDIRECT_WITH_QUERY, LOOPBACK),
)
OTHER = ClientRecord(
    client_id="other",
    auth_method="none",
    grant_types=CODE_GRANTS,
    scopes=CLIENT_SCOPES,
    redirect_uris=(OTHER_REDIRECT,),
)
BACKEND = ClientRecord(
    client_id="backend",
    secret_hash=hash_secret(BACKEND_SECRET, "client_secret"),
    grant_types=CODE_GRANTS,
    scopes=CLIENT_SCOPES,
    redirect_uris=("https://backend.example.test/cb",),
)
NO_REFRESH = ClientRecord(
    client_id="no-refresh",
    auth_method="none",
    grant_types=frozenset({"authorization_code"}),
    scopes=CLIENT_SCOPES,
    redirect_uris=(REDIRECT,),
)
PASSWORD_ONLY = ClientRecord(
    client_id="password-only",
    auth_method="none",
    grant_types=frozenset({"password", "refresh_token"}),
    scopes=CLIENT_SCOPES,
    redirect_uris=(REDIRECT,),
)
GONE = ClientRecord(
    client_id="gone",
    auth_method="none",
    grant_types=CODE_GRANTS,
    scopes=CLIENT_SCOPES,
    redirect_uris=(REDIRECT,),
    disabled=True,
)
CLIENTS = (WEB, OTHER, BACKEND, NO_REFRESH, PASSWORD_ONLY, GONE)

ALICE = UserRecord(id="user-alice", username="alice", scopes=frozenset({"items:read", "admin"}))
BOB = UserRecord(id="user-bob", username="bob", scopes=frozenset(SCOPES))

__all__ = [
    "Clock",
    "clock",
    "postgres_database",
    "postgres_store_url",
    "runtime",
    "sqlite_store_url",
    "store_url",
]

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
"""For rules decided without the store's atomic steps: one backend is enough."""


class Clock:
    """A settable clock shared by every runtime of a test."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def start_runtime(url: str, clock: Clock, **options: Any) -> IssuerRuntime:
    """A started runtime on ``url``; the test clients are added to the store once."""
    options.setdefault("resources", [OTHER_RESOURCE])
    config = AppIssuer(ISSUER, store=url, scopes=list(SCOPES), development=True, **options)
    runtime = IssuerRuntime(config, clock)
    await runtime.start()
    for client in CLIENTS:
        if await runtime.store.clients.get(client.client_id) is None:
            await runtime.store.clients.add(client)
    for user in (ALICE, BOB):
        if await runtime.store.users.get(user.id) is None:
            await runtime.store.users.add(user)
    return runtime


@pytest.fixture
async def runtime(store_url: str, clock: Clock) -> AsyncIterator[IssuerRuntime]:
    runtime = await start_runtime(store_url, clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()


def pkce() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_params(
    challenge: str, *, client_id: str = "web", redirect_uri: str = REDIRECT, **extra: str | None
) -> list[tuple[str, str]]:
    """A valid authorization request's query; ``extra`` adds, replaces (``None``: drops)."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "st-" + secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return [(name, value) for name, value in params.items() if value is not None]


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a redirect (each once)."""
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    found = dict(pairs)
    assert len(found) == len(pairs), url
    return found


async def issue_code(
    runtime: IssuerRuntime,
    *,
    user: UserRecord = BOB,
    client_id: str = "web",
    redirect_uri: str = REDIRECT,
    **extra: str | None,
) -> tuple[str, str, AuthorizeRequest]:
    """Parse a request and complete it: (code, verifier, request)."""
    verifier, challenge = pkce()
    request = await parse_authorize(
        runtime,
        authorize_params(challenge, client_id=client_id, redirect_uri=redirect_uri, **extra),
    )
    url = await complete(runtime, request, user, auth_time=runtime.clock() - 5, amr="pwd")
    return query_of(url)["code"], verifier, request


def code_form(
    code: str,
    verifier: str | None,
    *,
    client_id: str = "web",
    redirect_uri: str = REDIRECT,
    **extra: str,
) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        **extra,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return form


async def redeem(
    runtime: IssuerRuntime,
    code: str,
    verifier: str | None,
    *,
    authorization: str | None = None,
    **options: str,
) -> dict[str, Any]:
    return await runtime.token(
        TokenRequest(code_form(code, verifier, **options), authorization=authorization)
    )


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
