"""Social token exchange subject tokens (SECURITY-CASES §7 token substitution, RFC 8693).

Tokens are real JWTs checked by a real resource server (HS256 shared secrets,
so no key set is fetched); accounts live in real stores (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

import store_support
from authbridge.client import ExternalIdentity
from authbridge.client._accounts import AccountPolicy, Accounts
from authbridge.client._exchange import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    ExchangeProvider,
    SubjectTokens,
    token_kind,
)
from authbridge.errors import InvalidToken, LoginError
from authbridge.providers.oidc import OIDCProvider
from authbridge.resource import JWTProvider, Principal, ResourceServer
from authbridge.store import SQLStore

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store = store_support.store
store_url = store_support.store_url

IDP = "https://idp.example.test"
APP = "https://app.example.test"
PARTNER = "https://partner.example.test"
OURS = "our-spa"
IDP_SECRET = "i" * 32
APP_SECRET = "a" * 32
PARTNER_SECRET = "p" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256(claims: dict[str, Any], secret: str, *, typ: str = "JWT") -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": typ}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.digest(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(signature)}"


def claims(issuer: str = IDP, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    fields: dict[str, Any] = {
        "iss": issuer,
        "sub": "person-1",
        "aud": OURS,
        "iat": now,
        "exp": now + 300,
        "email": "person@example.test",
        "email_verified": True,
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


def id_token(**changes: Any) -> str:
    return hs256(claims(nonce="n-1", **changes), IDP_SECRET)


def access_token(**changes: Any) -> str:
    fields = {"client_id": OURS, "scope": "openid", **changes}
    return hs256(claims(**fields), IDP_SECRET, typ="at+jwt")


@pytest.fixture
async def resource() -> AsyncIterator[ResourceServer]:
    server = ResourceServer(
        [
            # The resource role accepts several audiences (a shared API, another site's
            # client): the exchange rule alone must insist on ours.
            OIDCProvider(
                "idp",
                issuer=IDP,
                audience=[OURS, "another-site", "https://api.other"],
                hmac_secret=IDP_SECRET,
                client_id=OURS,
                token_endpoint_auth="none",  # a public client (the SPA's)
            ),
            JWTProvider("app", issuer=APP, audience=APP, hmac_secret=APP_SECRET),  # our own
            JWTProvider("partner", issuer=PARTNER, audience=OURS, hmac_secret=PARTNER_SECRET),
        ]
    )
    await server.start(warm_up=False)
    try:
        yield server
    finally:
        await server.aclose()


class Calls:
    """Counts the verifications a resolution asks for (and makes each take real time)."""

    def __init__(self, verify: Callable[[str], Awaitable[Principal]]) -> None:
        self.verify = verify
        self.count = 0

    async def __call__(self, token: str) -> Principal:
        self.count += 1
        await asyncio.sleep(0.01)
        return await self.verify(token)


def accounts_of(store: SQLStore, **policy: Any) -> Accounts:
    return Accounts(store.users, store.identities, clock=time.time, policy=AccountPolicy(**policy))


def subject_tokens(resource: ResourceServer, store: SQLStore, **policy: Any) -> SubjectTokens:
    providers: dict[str, ExchangeProvider] = {}
    for provider in resource._providers:
        if isinstance(provider, ExchangeProvider):
            providers[provider.name] = provider
    return SubjectTokens(resource.verify, providers, accounts_of(store, **policy), own=("app",))


async def reason(call: Awaitable[object]) -> str:
    with pytest.raises(LoginError) as refused:
        await call
    return refused.value.reason


def test_only_providers_with_an_exchange_rule_are_exchange_providers() -> None:
    oidc = OIDCProvider(
        "idp", issuer=IDP, audience=OURS, client_id=OURS, token_endpoint_auth="none"
    )
    assert isinstance(oidc, ExchangeProvider)
    assert not isinstance(JWTProvider("partner", issuer=PARTNER, audience=OURS), ExchangeProvider)


async def test_exchange_lands_on_the_browser_logins_account(
    resource: ResourceServer, store: SQLStore
) -> None:
    tokens = subject_tokens(resource, store)
    user, provider = await tokens.resolve(id_token(), ID_TOKEN_TYPE)
    assert provider == "idp"
    assert user.password_hash is None
    link = await store.identities.find(IDP, "person-1")
    assert link is not None
    assert link.user_id == user.id
    # the browser login of the same person (same issuer namespace, same subject)
    browser = ExternalIdentity(provider="idp", issuer=IDP, subject="person-1")
    assert (await accounts_of(store).resolve(browser)).id == user.id
    # an access token of the same person, and the generic JWT type
    again, _ = await tokens.resolve(access_token(), ACCESS_TOKEN_TYPE)
    third, _ = await tokens.resolve(id_token(), JWT_TOKEN_TYPE)
    assert again.id == third.id == user.id
    assert len(await store.users.list()) == 1


async def test_token_for_another_client_is_refused(
    resource: ResourceServer, store: SQLStore
) -> None:
    """Token substitution: a valid token of our provider, minted for another app."""
    tokens = subject_tokens(resource, store)
    elsewhere = id_token(aud="another-site", azp="another-site")
    assert await reason(tokens.resolve(elsewhere, ID_TOKEN_TYPE)) == "token_not_issued_to_us"
    foreign_access = access_token(aud="https://api.other", client_id="another-site")
    assert await reason(tokens.resolve(foreign_access, ACCESS_TOKEN_TYPE)) == (
        "token_not_issued_to_us"
    )
    assert await store.users.list() == []


async def test_the_apps_own_tokens_are_not_exchanged(
    resource: ResourceServer, store: SQLStore
) -> None:
    tokens = subject_tokens(resource, store)
    own = hs256(claims(APP, aud=APP, client_id=OURS), APP_SECRET, typ="at+jwt")
    assert await reason(tokens.resolve(own, ACCESS_TOKEN_TYPE)) == "own_token_not_exchangeable"
    assert await store.users.list() == []


async def test_a_provider_without_an_exchange_rule_is_refused(
    resource: ResourceServer, store: SQLStore
) -> None:
    partner = hs256(claims(PARTNER), PARTNER_SECRET)
    tokens = subject_tokens(resource, store)
    assert await reason(tokens.resolve(partner, JWT_TOKEN_TYPE)) == "unknown_provider"


async def test_token_types_are_checked(resource: ResourceServer, store: SQLStore) -> None:
    calls = Calls(resource.verify)
    tokens = SubjectTokens(
        calls,
        {"idp": resource._providers[0]},
        accounts_of(store),
        own=("app",),  # type: ignore[dict-item]
    )
    for unsupported in (
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:saml2",
        "access_token",
        "",
    ):
        assert await reason(tokens.resolve(id_token(), unsupported)) == (
            "unsupported_subject_token_type"
        )
    # an ID token is always a JWT: an opaque value is refused before any verification
    assert await reason(tokens.resolve("gho_opaque1234", ID_TOKEN_TYPE)) == (
        "subject_token_type_mismatch"
    )
    assert calls.count == 0
    # an ID token presented as an access token, and the reverse
    assert await reason(tokens.resolve(id_token(), ACCESS_TOKEN_TYPE)) == (
        "subject_token_type_mismatch"
    )
    assert await reason(tokens.resolve(access_token(), ID_TOKEN_TYPE)) == (
        "subject_token_type_mismatch"
    )
    assert await store.users.list() == []


async def test_a_token_that_does_not_verify_is_refused(
    resource: ResourceServer, store: SQLStore
) -> None:
    tokens = subject_tokens(resource, store)
    forged = hs256(claims(nonce="n"), "f" * 32)
    with pytest.raises(InvalidToken):
        await tokens.resolve(forged, ID_TOKEN_TYPE)
    expired = id_token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    with pytest.raises(InvalidToken):
        await tokens.resolve(expired, ID_TOKEN_TYPE)
    assert await store.users.list() == []


async def test_account_rules_apply(resource: ResourceServer, store: SQLStore) -> None:
    closed = subject_tokens(resource, store, create_accounts=False)
    assert await reason(closed.resolve(id_token(), ID_TOKEN_TYPE)) == "account_creation_disabled"
    tokens = subject_tokens(resource, store)
    user, _ = await tokens.resolve(id_token(), ID_TOKEN_TYPE)
    await store.users.update(replace(user, disabled=True))
    assert await reason(tokens.resolve(id_token(), ID_TOKEN_TYPE)) == "account_disabled"


async def test_concurrent_exchanges_of_a_new_person_make_one_account(
    resource: ResourceServer, store: SQLStore
) -> None:
    tokens = [id_token(jti=f"t{i}") for i in range(20)]  # distinct tokens: no shared cache
    calls = Calls(resource.verify)
    exchange = SubjectTokens(
        calls,
        {"idp": resource._providers[0]},
        accounts_of(store),  # type: ignore[dict-item]
    )
    results = await asyncio.gather(*(exchange.resolve(t, ID_TOKEN_TYPE) for t in tokens))
    assert len({user.id for user, _ in results}) == 1
    assert len(await store.users.list()) == 1
    assert calls.count == 20


@pytest.mark.parametrize(
    ("token", "found", "kind"),
    [
        (hs256({}, "s" * 32, typ="at+jwt"), {}, "access"),
        (hs256({}, "s" * 32, typ="application/AT+JWT"), {}, "access"),
        ("opaque", {"token_use": "id"}, "id"),
        ("opaque", {"token_use": "access"}, "access"),
        ("opaque", {"typ": "ID"}, "id"),
        ("opaque", {"typ": "Bearer"}, "access"),
        ("opaque", {"nonce": "n"}, "id"),
        ("opaque", {"at_hash": "h"}, "id"),
        ("opaque", {"scp": ["a"]}, "access"),
        ("opaque", {"client_id": "c"}, "access"),
        ("opaque", {"sub": "x", "aud": "c"}, None),
        ("a.b.c", {}, None),
        ("!!!.b.c", {}, None),
        (b64(b"[1]") + ".b.c", {}, None),
    ],
)
def test_token_kind(token: str, found: dict[str, Any], kind: str | None) -> None:
    assert token_kind(token, found) == kind
