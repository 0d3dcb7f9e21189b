"""RFC 8693 token exchange through ``IssuerRuntime.token`` with a fake subject-token resolver.

The resolver stands for ``client.SubjectTokens`` (resource-server
verification and the account policy, tested with it); here: what the grant
sends it, what it refuses before calling it, and how its refusals map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authbridge.errors import (
    InvalidToken,
    LoginError,
    MissingToken,
    ProviderUnavailable,
    StoreUnavailable,
)
from authbridge.issuer import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    IssuerRuntime,
    OAuthError,
    SubjectTokenResolver,
    TokenRequest,
    _refresh,
)
from authbridge.issuer._secrets import hash_secret
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, UserRecord

from .code_support import (  # the fixtures too
    ALICE,
    BACKEND_SECRET,
    BOB,
    ISSUER,
    OTHER_RESOURCE,
    Clock,
    basic,
    clock,
    sqlite_store_url,
    start_runtime,
)

__all__ = ["clock", "sqlite_store_url"]

SPA = ClientRecord(
    client_id="spa",
    auth_method="none",
    grant_types=frozenset({TOKEN_EXCHANGE, "refresh_token"}),
    scopes=frozenset({"items:read", "items:write"}),
)
SPA_NO_REFRESH = ClientRecord(
    client_id="spa-no-refresh",
    auth_method="none",
    grant_types=frozenset({TOKEN_EXCHANGE}),
    scopes=frozenset({"items:read"}),
)
SERVICE = ClientRecord(
    client_id="service",
    secret_hash=hash_secret(BACKEND_SECRET, "client_secret"),
    grant_types=frozenset({TOKEN_EXCHANGE}),
    scopes=frozenset({"items:read"}),
)
NO_EXCHANGE = ClientRecord(
    client_id="no-exchange", auth_method="none", grant_types=frozenset({"password"})
)
GOOGLE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMDk4NzYifQ.c2lnbmF0dXJlLW9mLWdvb2dsZQ"


class FakeResolver:
    """Answers with ``user`` (or raises ``error``) after ``delay`` seconds; records its calls."""

    def __init__(self, user: UserRecord = BOB, *, provider: str = "google") -> None:
        self.user = user
        self.provider = provider
        self.error: BaseException | None = None
        self.delay = 0.0
        self.calls: list[tuple[str, str]] = []

    async def resolve(self, subject_token: str, subject_token_type: str) -> tuple[UserRecord, str]:
        self.calls.append((subject_token, subject_token_type))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.user, self.provider


@pytest.fixture
def store_url(sqlite_store_url: str) -> str:
    """The grant's rules do not depend on the backend: a SQLite file is enough."""
    return sqlite_store_url


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver()


@pytest.fixture
async def runtime(
    store_url: str, clock: Clock, resolver: FakeResolver
) -> AsyncIterator[IssuerRuntime]:
    runtime = await start_runtime(store_url, clock)
    for client in (SPA, SPA_NO_REFRESH, SERVICE, NO_EXCHANGE):
        await runtime.store.clients.add(client)
    runtime.subject_tokens = resolver
    try:
        yield runtime
    finally:
        await runtime.aclose()


def exchange_form(client_id: str = "spa", **extra: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": TOKEN_EXCHANGE,
        "client_id": client_id,
        "subject_token": GOOGLE_TOKEN,
        "subject_token_type": ID_TOKEN_TYPE,
    }
    form.update(extra)
    return {name: value for name, value in form.items() if value is not None}


async def exchange(runtime: IssuerRuntime, **extra: str | None) -> dict[str, Any]:
    return await runtime.token(TokenRequest(exchange_form(**extra)))


async def refused(runtime: IssuerRuntime, **extra: str | None) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await exchange(runtime, **extra)
    return caught.value


def claims_of(token: str) -> dict[str, Any]:
    return parse_compact(token, max_bytes=16384).claims


# --- success --------------------------------------------------------------------------------


def test_the_fake_is_a_resolver(resolver: FakeResolver) -> None:
    assert isinstance(resolver, SubjectTokenResolver)


@pytest.mark.parametrize("token_type", [ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE])
async def test_a_providers_token_for_the_apps_tokens(
    runtime: IssuerRuntime, resolver: FakeResolver, token_type: str
) -> None:
    body = await exchange(runtime, subject_token_type=token_type)
    assert resolver.calls == [(GOOGLE_TOKEN, token_type)]
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "items:read items:write"
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["aud"]) == (BOB.id, "spa", ISSUER)
    assert "auth_time" not in claims
    found = await runtime.store.refresh.find(_refresh.token_hash(body["refresh_token"]))
    assert found is not None
    family = found[1]
    assert (family.subject, family.client_id) == (BOB.id, "spa")
    assert family.extra == {"exchanged_from": "google"}


async def test_an_access_token_may_be_requested_explicitly(runtime: IssuerRuntime) -> None:
    body = await exchange(runtime, requested_token_type=ACCESS_TOKEN_TYPE)
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE


async def test_no_refresh_token_without_the_refresh_grant(runtime: IssuerRuntime) -> None:
    body = await exchange(runtime, client_id="spa-no-refresh")
    assert "refresh_token" not in body
    assert body["scope"] == "items:read"


async def test_a_confidential_client_authenticates(runtime: IssuerRuntime) -> None:
    form = exchange_form(client_id="service")
    with pytest.raises(OAuthError) as caught:
        await runtime.token(TokenRequest(form))
    assert caught.value.error == "invalid_client"
    del form["client_id"]
    body = await runtime.token(TokenRequest(form, authorization=basic("service", BACKEND_SECRET)))
    assert claims_of(body["access_token"])["client_id"] == "service"


# --- scopes and audience ------------------------------------------------------------------------


async def test_scopes_are_requested_the_clients_and_the_users(
    runtime: IssuerRuntime, resolver: FakeResolver
) -> None:
    resolver.user = ALICE  # items:read and admin
    assert (await exchange(runtime))["scope"] == "items:read"
    assert (await exchange(runtime, scope="items:read"))["scope"] == "items:read"


async def test_scope_escalation(runtime: IssuerRuntime, resolver: FakeResolver) -> None:
    # Beyond the client: refused before any provider is asked.
    error = await refused(runtime, scope="admin")
    assert error.error == "invalid_scope"
    error = await refused(runtime, scope="nope")
    assert error.error == "invalid_scope"
    assert resolver.calls == []
    # Beyond the account.
    resolver.user = ALICE
    error = await refused(runtime, scope="items:write")
    assert (error.error, error.reason) == ("invalid_scope", "scope_not_allowed")


async def test_audience(runtime: IssuerRuntime, resolver: FakeResolver) -> None:
    body = await exchange(runtime, resource=OTHER_RESOURCE)
    assert claims_of(body["access_token"])["aud"] == OTHER_RESOURCE
    body = await exchange(runtime, audience=OTHER_RESOURCE)
    assert claims_of(body["access_token"])["aud"] == OTHER_RESOURCE
    resolver.calls.clear()
    for extra in (
        {"resource": "https://evil.example.test"},
        {"audience": "https://evil.example.test"},
        {"resource": OTHER_RESOURCE, "audience": ISSUER},
    ):
        error = await refused(runtime, **extra)
        assert error.error == "invalid_target"
    assert resolver.calls == []


# --- refused before the resolver ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"subject_token": None}, "no_subject_token"),
        ({"subject_token": ""}, "no_subject_token"),
        ({"subject_token_type": None}, "no_subject_token"),
        ({"actor_token": "eyJ.actor.token"}, "actor_token_unsupported"),
        (
            {"actor_token": "eyJ.actor.token", "actor_token_type": ACCESS_TOKEN_TYPE},
            "actor_token_unsupported",
        ),
        ({"actor_token_type": ACCESS_TOKEN_TYPE}, "actor_token_unsupported"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "unsupported_requested_token_type",
        ),
        ({"requested_token_type": ID_TOKEN_TYPE}, "unsupported_requested_token_type"),
        ({"requested_token_type": "access_token"}, "unsupported_requested_token_type"),
        (
            {"subject_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "unsupported_subject_token_type",
        ),
        (
            {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            "unsupported_subject_token_type",
        ),
        ({"subject_token_type": "id_token"}, "unsupported_subject_token_type"),
        ({"subject_token": "e" * 16385}, "subject_token_too_long"),
    ],
)
async def test_invalid_requests(
    runtime: IssuerRuntime, resolver: FakeResolver, extra: dict[str, str | None], reason: str
) -> None:
    error = await refused(runtime, **extra)
    assert (error.error, error.reason, error.status) == ("invalid_request", reason, 400)
    assert resolver.calls == []


async def test_without_a_resolver_the_grant_is_unsupported(runtime: IssuerRuntime) -> None:
    runtime.subject_tokens = None
    error = await refused(runtime)
    assert error.error == "unsupported_grant_type"


async def test_not_configured_or_not_the_clients(
    store_url: str, clock: Clock, resolver: FakeResolver
) -> None:
    runtime = await start_runtime(store_url, clock, grant_types=["password"])
    runtime.subject_tokens = resolver
    try:
        await runtime.store.clients.add(SPA)
        assert (await refused(runtime)).error == "unsupported_grant_type"
    finally:
        await runtime.aclose()
    runtime = await start_runtime(store_url, clock)
    runtime.subject_tokens = resolver
    try:
        await runtime.store.clients.add(NO_EXCHANGE)
        assert (await refused(runtime, client_id="no-exchange")).error == "unauthorized_client"
    finally:
        await runtime.aclose()
    assert resolver.calls == []


# --- the resolver's refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (LoginError("token_not_issued_to_us", provider="google"), "token_not_issued_to_us"),
        (LoginError("own_token_not_exchangeable"), "own_token_not_exchangeable"),
        (LoginError("account_disabled"), "account_disabled"),
        (LoginError("account_creation_disabled"), "account_creation_disabled"),
        (
            InvalidToken(
                "audience_mismatch",
                claim="aud",
                detail={"expected": ["ours"], "actual": ["https://other-site.example"]},
            ),
            "audience_mismatch",
        ),
        (InvalidToken("bad_signature"), "bad_signature"),
        (MissingToken("no_token"), "no_token"),
    ],
)
async def test_refusals_are_invalid_request_with_nothing_of_the_reason(
    runtime: IssuerRuntime, resolver: FakeResolver, raised: Exception, reason: str
) -> None:
    resolver.error = raised
    error = await refused(runtime)
    # RFC 8693 §2.2.2: an invalid or unacceptable subject token is invalid_request.
    assert (error.error, error.status) == ("invalid_request", 400)
    assert error.reason == f"subject_token_refused:{reason}"
    assert error.body() == {
        "error": "invalid_request",
        "error_description": "The subject token is invalid or not accepted",
    }
    assert error.__cause__ is None
    assert error.__suppress_context__


async def test_a_disabled_account_is_refused(
    runtime: IssuerRuntime, resolver: FakeResolver
) -> None:
    resolver.user = UserRecord(id="user-carol", username="carol", disabled=True)
    error = await refused(runtime)
    assert (error.error, error.reason) == (
        "invalid_request",
        "subject_token_refused:account_disabled",
    )


async def test_provider_unavailable_is_a_503(
    runtime: IssuerRuntime, resolver: FakeResolver
) -> None:
    resolver.error = ProviderUnavailable("jwks_unreachable", provider="google", retry_after=7.0)
    error = await refused(runtime)
    assert (error.error, error.status, error.retry_after) == ("temporarily_unavailable", 503, 7.0)
    resolver.error = ProviderUnavailable("timeout")
    assert (await refused(runtime)).retry_after == 5.0


async def test_store_unavailable_is_a_503(runtime: IssuerRuntime, resolver: FakeResolver) -> None:
    resolver.error = StoreUnavailable("connection_refused", retry_after=3.0)
    error = await refused(runtime)
    assert (error.error, error.status) == ("temporarily_unavailable", 503)


async def test_another_error_is_not_swallowed(
    runtime: IssuerRuntime, resolver: FakeResolver
) -> None:
    resolver.error = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        await exchange(runtime)


async def test_concurrent_exchanges_each_get_their_own_account(
    runtime: IssuerRuntime,
) -> None:
    """Resolvers taking real time, answering per token: no answer crosses to another request."""

    class PerToken:
        async def resolve(
            self, subject_token: str, subject_token_type: str
        ) -> tuple[UserRecord, str]:
            await asyncio.sleep(0.01 * (hash(subject_token) % 5))
            return UserRecord(id=f"user-{subject_token}", username=subject_token), "google"

    runtime.subject_tokens = PerToken()
    tokens = [f"t{i}" for i in range(30)]
    bodies = await asyncio.gather(*(exchange(runtime, subject_token=t, scope=None) for t in tokens))
    assert [claims_of(b["access_token"])["sub"] for b in bodies] == [f"user-{t}" for t in tokens]


async def test_subject_tokens_never_reach_the_logs(
    runtime: IssuerRuntime, resolver: FakeResolver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await exchange(runtime)
    resolver.error = InvalidToken("bad_signature")
    await refused(runtime)
    await refused(runtime, actor_token=GOOGLE_TOKEN + "-actor")
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "Token exchange refused for client spa: subject_token_refused:bad_signature" in text
    for secret in (GOOGLE_TOKEN, GOOGLE_TOKEN[:30], body["access_token"], body["refresh_token"]):
        assert secret not in text
