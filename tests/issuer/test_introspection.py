"""RFC 7662 introspection of the app's own tokens, through ``IssuerRuntime.introspect``."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from authbridge.issuer import IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord

from .test_refresh import (  # the fixtures too
    ALICE,
    ISSUER,
    USER_GRANTS,
    Clock,
    CountingRefreshStore,
    claims_of,
    clock,
    login,
    postgres_database,
    postgres_store_url,
    refresh,
    runtime,
    sqlite_store_url,
    store_url,
)

# Fixtures, used by name.
__all__ = [
    "clock",
    "postgres_database",
    "postgres_store_url",
    "runtime",
    "sqlite_store_url",
    "store_url",
]

SECRET = new_secret(CLIENT_SECRET_PREFIX)
RESOURCE_SERVER = ClientRecord(
    client_id="orders-api",
    auth_method="client_secret_post",
    secret_hash=hash_secret(SECRET, "client_secret"),
)
WEB_APP = ClientRecord(
    client_id="web",
    auth_method="client_secret_post",
    secret_hash=hash_secret(SECRET, "client_secret"),
    grant_types=USER_GRANTS,
    scopes=ALICE.scopes,
)
INACTIVE = {"active": False}


@pytest.fixture(autouse=True)
def _confidential_clients(runtime: IssuerRuntime) -> None:
    runtime.add_builtin_client(RESOURCE_SERVER)
    runtime.add_builtin_client(WEB_APP)


async def introspect(
    runtime: IssuerRuntime, token: str, *, client: ClientRecord = RESOURCE_SERVER, **form: str
) -> dict[str, object]:
    request = TokenRequest(
        {"token": token, "client_id": client.client_id, "client_secret": SECRET, **form}
    )
    return await runtime.introspect(request)


async def refresh_web(runtime: IssuerRuntime, token: str) -> dict[str, str]:
    request = TokenRequest(
        {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": "web",
            "client_secret": SECRET,
        }
    )
    return await runtime.token(request)


async def test_an_active_access_token(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    answer = await introspect(runtime, access, token_type_hint="refresh_token")  # only a hint
    claims = claims_of(access)
    assert answer == {
        "active": True,
        "iss": ISSUER,
        "sub": ALICE.id,
        "aud": ISSUER,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "client_id": "app",
        "scope": "items:read items:write",
        "auth_time": claims["auth_time"],
        "token_type": "access_token",
    }


async def test_a_revoked_access_token_is_inactive(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    await runtime.revoke(TokenRequest({"token": access, "client_id": "app"}))
    assert await introspect(runtime, access) == INACTIVE


async def test_an_expired_access_token_is_inactive_without_leeway(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    clock.now = claims_of(access)["exp"] - 0.5
    assert (await introspect(runtime, access))["active"] is True
    clock.now += 0.5
    assert await introspect(runtime, access) == INACTIVE


async def test_foreign_forged_and_garbage_tokens_are_inactive(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    claims = {**claims_of(access), "scope": "items:read items:write admin"}
    key = ECKey.generate_key("P-256")
    forged = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, key)
    other_issuer = jwt.encode(
        {"alg": "ES256", "typ": "at+jwt"}, {**claims, "iss": "https://elsewhere.example"}, key
    )
    header, _, signature = access.split(".")
    tampered = f"{header}.{forged.split('.')[1]}.{signature}"
    counting = CountingRefreshStore(runtime.store.refresh)
    monkeypatch.setattr(runtime.store, "refresh", counting)
    for token in (forged, other_issuer, tampered, "garbage", "a.b.c", "x" * 20_000):
        assert await introspect(runtime, token) == INACTIVE
    assert counting.calls == []
    assert await introspect(runtime, new_secret("abrt_")) == INACTIVE
    assert counting.calls == ["find"]


async def test_an_active_refresh_token_of_the_calling_client(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    token = await login(runtime, client=WEB_APP)
    answer = await introspect(runtime, token, client=WEB_APP)
    assert answer == {
        "active": True,
        "scope": "items:read items:write",
        "client_id": "web",
        "sub": ALICE.id,
        "exp": int(clock.now + runtime.config.refresh_token_idle_ttl),
        "iat": int(clock.now),
        "token_type": "refresh_token",
        "iss": ISSUER,
    }


async def test_inactive_refresh_tokens(runtime: IssuerRuntime, clock: Clock) -> None:
    token = await login(runtime, client=WEB_APP)
    # Another client learns nothing about it, not even that it exists.
    assert await introspect(runtime, token) == INACTIVE
    # A rotated token is spent, even within the reuse interval.
    current = (await refresh_web(runtime, token))["refresh_token"]
    assert await introspect(runtime, token, client=WEB_APP) == INACTIVE
    assert (await introspect(runtime, current, client=WEB_APP))["active"] is True
    # A revoked family.
    await runtime.revoke(
        TokenRequest({"token": current, "client_id": "web", "client_secret": SECRET})
    )
    assert await introspect(runtime, current, client=WEB_APP) == INACTIVE


async def test_an_idle_expired_refresh_token_is_inactive(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    token = await login(runtime, client=WEB_APP)
    clock.advance(runtime.config.refresh_token_idle_ttl)
    assert await introspect(runtime, token, client=WEB_APP) == INACTIVE


async def test_a_disabled_user_s_refresh_token_is_inactive(runtime: IssuerRuntime) -> None:
    token = await login(runtime, client=WEB_APP)
    await runtime.store.users.delete(ALICE.id)
    assert await introspect(runtime, token, client=WEB_APP) == INACTIVE


async def test_a_public_client_is_refused(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    with pytest.raises(OAuthError) as info:
        await runtime.introspect(TokenRequest({"token": access, "client_id": "app"}))
    assert (info.value.error, info.value.status) == ("invalid_client", 401)
    assert info.value.reason == "public_client_introspection"


async def test_a_wrong_secret_is_refused(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    request = TokenRequest({"token": access, "client_id": "orders-api", "client_secret": "nope"})
    with pytest.raises(OAuthError) as info:
        await runtime.introspect(request)
    assert (info.value.error, info.value.status) == ("invalid_client", 401)


@pytest.mark.parametrize("form", [{}, {"token": ""}])
async def test_the_token_parameter_is_required(
    runtime: IssuerRuntime, form: dict[str, str]
) -> None:
    request = TokenRequest({"client_id": "orders-api", "client_secret": SECRET, **form})
    with pytest.raises(OAuthError) as info:
        await runtime.introspect(request)
    assert (info.value.error, info.value.reason) == ("invalid_request", "no_token")


async def test_the_store_being_down_is_503(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await login(runtime, client=WEB_APP)
    monkeypatch.setattr(
        runtime.store, "refresh", CountingRefreshStore(runtime.store.refresh, down=True)
    )
    with pytest.raises(OAuthError) as info:
        await introspect(runtime, token, client=WEB_APP)
    assert (info.value.error, info.value.status) == ("temporarily_unavailable", 503)
