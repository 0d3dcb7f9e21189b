"""RFC 7009 revocation of the app's own tokens on a real store, through ``IssuerRuntime.revoke``."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from authbridge.errors import InvalidToken
from authbridge.issuer import IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._secrets import REFRESH_TOKEN_PREFIX, new_secret
from authbridge.jose import parse_compact

from .test_refresh import (  # the fixtures too
    Clock,
    CountingRefreshStore,
    claims_of,
    clock,
    family_of,
    login,
    postgres_database,
    postgres_store_url,
    refresh,
    refused,
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


async def revoke(
    runtime: IssuerRuntime, token: str | None, *, client_id: str = "app", **form: str
) -> None:
    body = {"client_id": client_id, **form}
    if token is not None:
        body["token"] = token
    assert await runtime.revoke(TokenRequest(body)) is None


async def replay_seen(runtime: IssuerRuntime, access_token: str) -> bool:
    jti = claims_of(access_token)["jti"]
    return await runtime.store.replay.seen("at:" + jti, now=runtime.clock())


async def check_active(runtime: IssuerRuntime, access_token: str) -> None:
    """What ``auth.active_principal`` asks of the app's own source."""
    source = runtime.source
    parsed = parse_compact(access_token, max_bytes=source.max_token_bytes)
    verified = await source.verify_jwt(parsed, len(access_token))
    await source.check_active(access_token, verified.principal)


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token", "something_else"])
async def test_a_refresh_token_revokes_its_whole_family(
    runtime: IssuerRuntime, clock: Clock, hint: str | None
) -> None:
    first = await login(runtime)
    second = (await refresh(runtime, first))["refresh_token"]
    third = (await refresh(runtime, second))["refresh_token"]
    clock.advance(1)
    form = {} if hint is None else {"token_type_hint": hint}
    await revoke(runtime, second, **form)  # an older token of the family will do
    family = await family_of(runtime, third)
    assert (family.revoked_at, family.revoked_reason) == (clock.now, "revoked")
    for token in (first, second, third):
        assert (await refused(runtime, token)).reason == "family_revoked"
    # Revoking again is still 200.
    await revoke(runtime, third)


async def test_unknown_and_garbage_tokens_are_200(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingRefreshStore(runtime.store.refresh)
    monkeypatch.setattr(runtime.store, "refresh", counting)
    for value in ("garbage", "a.b.c", "x" * 20_000, REFRESH_TOKEN_PREFIX + "A" * 49):
        await revoke(runtime, value)
    assert counting.calls == []  # malformed: no lookup
    await revoke(runtime, new_secret(REFRESH_TOKEN_PREFIX))
    assert counting.calls == ["find"]


async def test_another_client_s_refresh_token_is_200_and_not_revoked(
    runtime: IssuerRuntime,
) -> None:
    token = await login(runtime)
    await revoke(runtime, token, client_id="other")
    assert (await family_of(runtime, token)).revoked_at is None
    assert (await refresh(runtime, token))["refresh_token"]


@pytest.mark.parametrize("form", [{}, {"token": ""}])
async def test_the_token_parameter_is_required(
    runtime: IssuerRuntime, form: dict[str, str]
) -> None:
    with pytest.raises(OAuthError) as info:
        await runtime.revoke(TokenRequest({"client_id": "app", **form}))
    assert (info.value.error, info.value.status, info.value.reason) == (
        "invalid_request",
        400,
        "no_token",
    )


async def test_an_unknown_client_cannot_revoke(runtime: IssuerRuntime) -> None:
    token = await login(runtime)
    with pytest.raises(OAuthError) as info:
        await revoke(runtime, token, client_id="nobody")
    assert info.value.error == "invalid_client"
    assert (await family_of(runtime, token)).revoked_at is None


async def test_an_access_token_is_recorded_as_revoked_until_it_expires(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    body = await refresh(runtime, await login(runtime))
    access = body["access_token"]
    await check_active(runtime, access)  # active before
    await revoke(runtime, access, token_type_hint="refresh_token")  # a wrong hint changes nothing
    assert await replay_seen(runtime, access)
    with pytest.raises(InvalidToken):
        await check_active(runtime, access)
    # Other access tokens of the same login stay active.
    other = (await refresh(runtime, body["refresh_token"]))["access_token"]
    await check_active(runtime, other)
    # The record outlives the token (and any verifier's leeway), then goes.
    clock.advance(runtime.config.access_token_ttl + 299)
    assert await replay_seen(runtime, access)
    clock.advance(2)
    assert not await replay_seen(runtime, access)


async def test_another_client_s_access_token_is_not_revoked(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    await revoke(runtime, access, client_id="other")
    assert not await replay_seen(runtime, access)
    await check_active(runtime, access)


def _foreign(claims: dict[str, Any], *, typ: str = "at+jwt") -> str:
    key = ECKey.generate_key("P-256")
    return jwt.encode({"alg": "ES256", "typ": typ, "kid": "x"}, claims, key)


async def test_tokens_not_signed_by_the_issuer_change_nothing(runtime: IssuerRuntime) -> None:
    access = (await refresh(runtime, await login(runtime)))["access_token"]
    claims = {**claims_of(access), "scope": "items:read items:write admin"}
    forged = _foreign(claims)  # the claims (widened) under another key
    await revoke(runtime, forged)
    header, _, signature = access.split(".")
    tampered = f"{header}.{forged.split('.')[1]}.{signature}"
    await revoke(runtime, tampered)
    assert not await replay_seen(runtime, access)
    await check_active(runtime, access)


async def test_the_store_being_down_is_503(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await login(runtime)
    monkeypatch.setattr(
        runtime.store, "refresh", CountingRefreshStore(runtime.store.refresh, down=True)
    )
    with pytest.raises(OAuthError) as info:
        await revoke(runtime, token)
    assert (info.value.error, info.value.status) == ("temporarily_unavailable", 503)
