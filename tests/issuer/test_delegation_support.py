"""Shared by the delegation tests (test_delegation_*.py): robots, users' tokens, store counts.

A runtime on a real store (code_support's, with its clients and users) plus
these clients, and a subject-token resolver that must never be called (the
app's own tokens never reach it):

- ``robot``: confidential, token exchange + refresh_token + client_credentials,
  ``items:read`` and ``items:write``;
- ``robot2`` .. ``robot5``: the same, only ``robot3`` with refresh_token (chains);
- ``narrow``: confidential, ``items:read`` only;
- ``public-robot``: a public client allowed token exchange;
- ``off-robot``: disabled.

This module holds no tests; it is named like them so that it stays among the
delegation tests' files.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from sqlalchemy import func, select

from authbridge import Principal
from authbridge.issuer import TOKEN_EXCHANGE, IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, UserRecord
from authbridge.store import _models as tables

from .code_support import BOB, ISSUER, OTHER_RESOURCE, Clock, basic, start_runtime

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ROBOT_SECRET = new_secret(CLIENT_SECRET_PREFIX)
ROBOT_SCOPES = frozenset({"items:read", "items:write"})
ACTOR_GRANTS = frozenset({TOKEN_EXCHANGE, "client_credentials"})


def robot(client_id: str, **changes: Any) -> ClientRecord:
    fields: dict[str, Any] = {
        "client_id": client_id,
        "secret_hash": hash_secret(ROBOT_SECRET, "client_secret"),
        "grant_types": ACTOR_GRANTS,
        "scopes": ROBOT_SCOPES,
    }
    fields.update(changes)
    return ClientRecord(**fields)


ROBOTS = (
    robot("robot", grant_types=ACTOR_GRANTS | {"refresh_token"}),
    robot("robot2"),
    robot("robot3", grant_types=ACTOR_GRANTS | {"refresh_token"}),
    robot("robot4"),
    robot("robot5"),
    robot("narrow", scopes=frozenset({"items:read"})),
    robot("public-robot", auth_method="none", secret_hash=None),
    robot("off-robot", disabled=True),
)
CAROL = UserRecord(id="user-carol", username="carol", scopes=frozenset({"items:read"}))


class NeverResolver:
    """A subject-token resolver that records calls: the app's own tokens must not reach it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def resolve(self, subject_token: str, subject_token_type: str) -> tuple[UserRecord, str]:
        self.calls.append(subject_token_type)
        raise AssertionError("the app's own token was handed to the resolver")


async def delegation_runtime(url: str, clock: Clock, **options: Any) -> IssuerRuntime:
    runtime = await start_runtime(url, clock, **options)
    for client in ROBOTS:
        if await runtime.store.clients.get(client.client_id) is None:
            await runtime.store.clients.add(client)
    if await runtime.store.users.get(CAROL.id) is None:
        await runtime.store.users.add(CAROL)
    runtime.subject_tokens = NeverResolver()
    return runtime


@pytest.fixture
async def runtime(store_url: str, clock: Clock) -> AsyncIterator[IssuerRuntime]:
    runtime = await delegation_runtime(store_url, clock)
    try:
        yield runtime
    finally:
        await runtime.aclose()


def user_token(
    runtime: IssuerRuntime,
    user: UserRecord = BOB,
    *,
    scopes: Iterable[str] = ("items:read", "items:write"),
    audiences: tuple[str, ...] = (ISSUER, OTHER_RESOURCE),
    client_id: str = "web",
    lifetime: float | None = None,
    **extra: Any,
) -> str:
    """An access token of the app for ``user`` (through the ``web`` client by default)."""
    token, _ = runtime.mint_access_token(
        subject=user.id,
        client_id=client_id,
        scopes=scopes,
        audiences=audiences,
        extra=extra or None,
        lifetime=lifetime,
    )
    return token


def client_token(runtime: IssuerRuntime, client_id: str, **extra: Any) -> str:
    """A client-credentials token of ``client_id`` (the client is its own subject)."""
    token, _ = runtime.mint_access_token(
        subject=client_id,
        client_id=client_id,
        scopes=ROBOT_SCOPES,
        audiences=(ISSUER,),
        extra=extra or None,
    )
    return token


async def principal_of(runtime: IssuerRuntime, token: str) -> Principal:
    """The principal the app's resource server makes of one of its tokens."""
    parsed = parse_compact(token, max_bytes=16384)
    return (await runtime.source.verify_jwt(parsed, len(token))).principal


def claims_of(token: str) -> dict[str, Any]:
    return parse_compact(token, max_bytes=16384).claims


def exchange_form(subject_token: str, **extra: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS,
    }
    form.update(extra)
    return {name: value for name, value in form.items() if value is not None}


async def exchange(
    runtime: IssuerRuntime, subject_token: str, *, actor: str = "robot", **extra: str | None
) -> dict[str, Any]:
    """RFC 8693 exchange of ``subject_token`` by the ``actor`` client (its secret in Basic;
    a public client names itself)."""
    form = exchange_form(subject_token, **extra)
    if actor.startswith("public"):
        return await runtime.token(TokenRequest({**form, "client_id": actor}))
    return await runtime.token(TokenRequest(form, authorization=basic(actor, ROBOT_SECRET)))


async def refresh(
    runtime: IssuerRuntime, refresh_token: str, *, client_id: str = "robot", **extra: str
) -> dict[str, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return await runtime.token(TokenRequest(form, authorization=basic(client_id, ROBOT_SECRET)))


async def rows(runtime: IssuerRuntime, table: str) -> int:
    """How many rows the store's table ``authbridge_<table>`` holds."""
    db = runtime.store._db  # type: ignore[attr-defined]
    row = await db.first(select(func.count()).select_from(getattr(tables, table)))
    return int(row[0])


async def stored(runtime: IssuerRuntime) -> tuple[int, int, int, int]:
    """(delegations, refresh families, refresh tokens, replay records) in the store."""
    return (
        await rows(runtime, "delegations"),
        await rows(runtime, "refresh_families"),
        await rows(runtime, "refresh_tokens"),
        await rows(runtime, "replay"),
    )


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    text = logged(caplog)
    for secret in secrets:
        assert secret not in text
        assert secret[:40] not in text  # not even a prefix of a token
    assert "eyJ" not in text  # no JWT at all
    assert ROBOT_SECRET not in text


def refusal(caught: pytest.ExceptionInfo[OAuthError]) -> tuple[str, int, str]:
    error = caught.value
    return error.error, error.status, str(error.reason)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
