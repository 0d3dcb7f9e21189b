"""The authorization_code grant through ``IssuerRuntime.token`` on real stores.

Single use (sequentially and under 20 concurrent redemptions, on one runtime
and on two sharing a database, SQLite and PostgreSQL), the replay revoking
what the first redemption got, the binding to the client, the redirect URI
and the PKCE verifier, the account's state, scopes and audiences, and logs
free of codes and verifiers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from authbridge.errors import InvalidToken, StoreUnavailable
from authbridge.issuer import (
    IssuerRuntime,
    OAuthError,
    TokenRequest,
    _refresh,
    complete,
    parse_authorize,
)
from authbridge.issuer._authorize import code_hash
from authbridge.issuer._code_grant import access_token_id, family_id, s256
from authbridge.issuer._secrets import CODE_PREFIX, new_secret
from authbridge.jose import parse_compact
from authbridge.store import RefreshFamily

from .code_support import (  # the fixtures too
    ALICE,
    BACKEND_SECRET,
    BOB,
    ISSUER,
    OTHER_RESOURCE,
    REDIRECT,
    REDIRECT_WITH_QUERY,
    SQLITE_ONLY,
    WEB,
    Clock,
    authorize_params,
    basic,
    clock,
    code_form,
    issue_code,
    pkce,
    postgres_database,
    postgres_store_url,
    query_of,
    redeem,
    runtime,
    sqlite_store_url,
    start_runtime,
    store_url,
)

__all__ = [
    "clock",
    "postgres_database",
    "postgres_store_url",
    "runtime",
    "sqlite_store_url",
    "store_url",
]


def claims_of(access_token: str) -> dict[str, Any]:
    return parse_compact(access_token, max_bytes=16 * 1024).claims


async def refused(
    runtime: IssuerRuntime, code: str, verifier: str | None, **form: str
) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await redeem(runtime, code, verifier, **form)
    return caught.value


async def family_of(runtime: IssuerRuntime, refresh_token: str) -> RefreshFamily:
    found = await runtime.store.refresh.find(_refresh.token_hash(refresh_token))
    assert found is not None
    return found[1]


async def access_revoked(runtime: IssuerRuntime, access_token: str) -> bool:
    """Whether the resource server refuses the token as revoked."""
    source = runtime.source
    parsed = parse_compact(access_token, max_bytes=source.max_token_bytes)
    verified = await source.verify_jwt(parsed, len(access_token))
    try:
        await source.check_active(access_token, verified.principal)
    except InvalidToken:
        return True
    return False


async def refresh_with(
    runtime: IssuerRuntime, token: str, client_id: str = "web"
) -> dict[str, Any]:
    return await runtime.token(
        TokenRequest(
            {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        )
    )


# --- success --------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_a_code_gives_an_access_and_a_refresh_token(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    code, verifier, _ = await issue_code(runtime, scope="items:read items:write")
    body = await redeem(runtime, code, verifier)
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "items:read items:write"
    assert body["expires_in"] == 600
    claims = claims_of(body["access_token"])
    assert claims["sub"] == BOB.id
    assert claims["client_id"] == "web"
    assert claims["aud"] == ISSUER
    assert claims["auth_time"] == int(clock() - 5)
    assert claims["jti"] == access_token_id(code_hash(code))
    assert not await access_revoked(runtime, body["access_token"])
    family = await family_of(runtime, body["refresh_token"])
    assert family.id == family_id(code_hash(code))
    assert (family.client_id, family.subject) == ("web", BOB.id)
    assert family.extra == {"amr": "pwd"}
    # The refresh token works (and keeps the login's auth_time).
    refreshed = await refresh_with(runtime, body["refresh_token"])
    assert claims_of(refreshed["access_token"])["auth_time"] == claims["auth_time"]


@SQLITE_ONLY
async def test_the_tokens_carry_the_users_scopes_only(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime, user=ALICE, scope="items:read items:write")
    body = await redeem(runtime, code, verifier)
    assert body["scope"] == "items:read"


@SQLITE_ONLY
async def test_rights_withdrawn_during_the_login_are_not_granted(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime)
    await runtime.store.users.update(dataclasses.replace(BOB, scopes=frozenset({"items:write"})))
    await runtime.store.clients.update(
        dataclasses.replace(WEB, scopes=frozenset({"items:read", "items:write"}))
    )
    assert (await redeem(runtime, code, verifier))["scope"] == "items:write"


@SQLITE_ONLY
async def test_no_refresh_token_for_a_client_without_the_grant(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime, client_id="no-refresh")
    body = await redeem(runtime, code, verifier, client_id="no-refresh")
    assert "refresh_token" not in body


@SQLITE_ONLY
async def test_a_confidential_client_authenticates(runtime: IssuerRuntime) -> None:
    redirect = "https://backend.example.test/cb"
    code, verifier, _ = await issue_code(runtime, client_id="backend", redirect_uri=redirect)
    # Naming itself is not enough.
    with pytest.raises(OAuthError) as caught:
        await redeem(runtime, code, verifier, client_id="backend", redirect_uri=redirect)
    assert caught.value.error == "invalid_client"
    code, verifier, _ = await issue_code(runtime, client_id="backend", redirect_uri=redirect)
    body = await runtime.token(
        TokenRequest(
            {**code_form(code, verifier, redirect_uri=redirect), "client_id": "backend"},
            authorization=basic("backend", BACKEND_SECRET),
        )
    )
    assert claims_of(body["access_token"])["client_id"] == "backend"


@SQLITE_ONLY
async def test_a_resource_of_the_request_narrows_the_audience(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime, resource=OTHER_RESOURCE)
    body = await redeem(runtime, code, verifier, resource=OTHER_RESOURCE)
    assert claims_of(body["access_token"])["aud"] == OTHER_RESOURCE
    code, verifier, _ = await issue_code(runtime, resource=OTHER_RESOURCE)
    assert claims_of((await redeem(runtime, code, verifier))["access_token"])["aud"] == (
        OTHER_RESOURCE
    )


@SQLITE_ONLY
@pytest.mark.parametrize("resource", [ISSUER, "https://evil.example.test", OTHER_RESOURCE + "/"])
async def test_audience_escalation_at_the_token_endpoint(
    runtime: IssuerRuntime, resource: str
) -> None:
    code, verifier, _ = await issue_code(runtime, resource=OTHER_RESOURCE)
    error = await refused(runtime, code, verifier, resource=resource)
    assert (error.error, error.reason) == ("invalid_target", "audience_widening")


@SQLITE_ONLY
async def test_loopback_port_must_be_repeated(runtime: IssuerRuntime) -> None:
    uri = "http://127.0.0.1:40001/native"
    code, verifier, _ = await issue_code(runtime, redirect_uri=uri)
    error = await refused(runtime, code, verifier, redirect_uri="http://127.0.0.1:40002/native")
    assert error.reason == "redirect_uri_mismatch"
    code, verifier, _ = await issue_code(runtime, redirect_uri=uri)
    assert "access_token" in await redeem(runtime, code, verifier, redirect_uri=uri)


# --- refusals -------------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        ("code", "no_code"),
        ("redirect_uri", "no_redirect_uri"),
        ("code_verifier", "no_code_verifier"),
    ],
)
async def test_missing_parameters_are_invalid_request_and_consume_nothing(
    runtime: IssuerRuntime, drop: str, reason: str
) -> None:
    code, verifier, _ = await issue_code(runtime)
    form = code_form(code, verifier)
    form[drop] = ""
    with pytest.raises(OAuthError) as caught:
        await runtime.token(TokenRequest(form))
    assert (caught.value.error, caught.value.reason) == ("invalid_request", reason)
    assert "access_token" in await redeem(runtime, code, verifier)


@SQLITE_ONLY
@pytest.mark.parametrize(
    "bad",
    [
        "a" * 42,  # short
        "a" * 129,  # long
        "a" * 42 + "+",
        "a" * 42 + "=",
        "a" * 42 + " ",
        "a" * 42 + "é",
        "a" * 42 + "\x00",
    ],
)
async def test_malformed_verifier_is_refused_before_the_code_is_taken(
    runtime: IssuerRuntime, bad: str
) -> None:
    code, verifier, _ = await issue_code(runtime)
    error = await refused(runtime, code, bad)
    assert (error.error, error.reason) == ("invalid_grant", "malformed_code_verifier")
    assert "access_token" in await redeem(runtime, code, verifier)


@SQLITE_ONLY
async def test_the_verifier_limits_are_43_and_128(runtime: IssuerRuntime) -> None:
    for length in (43, 128):
        verifier = ("abcDEF019-._~" * 10)[:length]
        challenge = s256(verifier)
        request = await parse_authorize(runtime, authorize_params(challenge))
        url = await complete(runtime, request, BOB, auth_time=runtime.clock(), amr="pwd")
        assert "access_token" in await redeem(runtime, query_of(url)["code"], verifier)


@SQLITE_ONLY
async def test_a_wrong_verifier_is_refused_and_uses_the_code_up(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime)
    other, _ = pkce()
    error = await refused(runtime, code, other)
    assert (error.error, error.reason) == ("invalid_grant", "code_verifier_mismatch")
    # plain PKCE: the challenge itself as the verifier.
    code2, _, request2 = await issue_code(runtime)
    error = await refused(runtime, code2, request2.code_challenge)
    assert error.reason == "code_verifier_mismatch"
    # The first code was used up by the failed attempt.
    assert (await refused(runtime, code, verifier)).reason == "unknown_or_used_code"


@SQLITE_ONLY
async def test_an_expired_code(runtime: IssuerRuntime, clock: Clock) -> None:
    code, verifier, _ = await issue_code(runtime)
    clock.advance(60)
    assert (await refused(runtime, code, verifier)).reason == "unknown_or_used_code"


@SQLITE_ONLY
@pytest.mark.parametrize(
    "code",
    [
        "abac_made-up",
        new_secret("abrt_"),  # a refresh token's shape
        "checksum-broken",
    ],
    ids=["made-up", "refresh-token-shape", "checksum-broken"],  # the same in every process
)
async def test_malformed_codes(runtime: IssuerRuntime, code: str) -> None:
    if code == "checksum-broken":
        good = new_secret(CODE_PREFIX)
        code = good[:-1] + ("A" if good[-1] != "A" else "B")
    verifier, _ = pkce()
    error = await refused(runtime, code, verifier)
    assert (error.error, error.reason) == ("invalid_grant", "malformed_code")


@SQLITE_ONLY
async def test_a_made_up_code_writes_nothing(runtime: IssuerRuntime) -> None:
    replay = runtime.store.replay
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            method = getattr(replay, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return await method(*args, **kwargs)

            return call

    runtime.store.replay = Counting()  # type: ignore[assignment]
    verifier, _ = pkce()
    error = await refused(runtime, new_secret(CODE_PREFIX), verifier)
    assert error.reason == "unknown_or_used_code"
    assert calls == ["seen"]


@SQLITE_ONLY
async def test_a_code_of_another_client(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime, client_id="web")
    # Client B with A's code, verifier and redirect URI: still refused.
    error = await refused(runtime, code, verifier, client_id="other")
    assert (error.error, error.reason) == ("invalid_grant", "client_mismatch")
    # Also with its own redirect URI.
    code, verifier, _ = await issue_code(runtime, client_id="web")
    error = await refused(
        runtime,
        code,
        verifier,
        client_id="other",
        redirect_uri="https://other.example.test/callback",
    )
    assert error.reason == "client_mismatch"
    assert (await refused(runtime, code, verifier)).reason == "unknown_or_used_code"


@SQLITE_ONLY
async def test_the_same_description_for_every_invalid_code(runtime: IssuerRuntime) -> None:
    descriptions = set()
    code, verifier, _ = await issue_code(runtime)
    descriptions.add((await refused(runtime, code, verifier, client_id="other")).description)
    descriptions.add((await refused(runtime, code, verifier)).description)
    code, _, _ = await issue_code(runtime)
    descriptions.add((await refused(runtime, code, pkce()[0])).description)
    code, verifier, _ = await issue_code(runtime)
    descriptions.add(
        (await refused(runtime, code, verifier, redirect_uri=REDIRECT + "/")).description
    )
    assert len(descriptions) == 1


# The token request's redirect_uri must be the authorization request's, character for character.
TOKEN_REDIRECT_SPELLINGS = [
    REDIRECT + "/",
    REDIRECT.upper(),
    "https://APP.example.test/callback",
    REDIRECT + "?",
    REDIRECT + "?x=1",
    REDIRECT + "#",
    REDIRECT + "#x",
    "https://user@app.example.test/callback",
    "https://app.example.test/%63allback",
    "https://app.example.test:443/callback",
    "http://app.example.test/callback",
    REDIRECT + " ",
    REDIRECT_WITH_QUERY,  # registered for the same client, but not the one requested
]


@SQLITE_ONLY
@pytest.mark.parametrize("spelling", TOKEN_REDIRECT_SPELLINGS)
async def test_redirect_uri_mismatch(runtime: IssuerRuntime, spelling: str) -> None:
    code, verifier, _ = await issue_code(runtime)
    error = await refused(runtime, code, verifier, redirect_uri=spelling)
    assert (error.error, error.reason) == ("invalid_grant", "redirect_uri_mismatch")


@SQLITE_ONLY
async def test_an_account_disabled_or_removed_during_the_login(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime)
    await runtime.store.users.update(dataclasses.replace(BOB, disabled=True))
    assert (await refused(runtime, code, verifier)).reason == "user_disabled"
    await runtime.store.users.update(BOB)
    code, verifier, _ = await issue_code(runtime)
    await runtime.store.users.delete(BOB.id)
    assert (await refused(runtime, code, verifier)).reason == "user_removed"


@SQLITE_ONLY
async def test_grant_not_configured_or_not_the_clients(store_url: str, clock: Clock) -> None:
    runtime = await start_runtime(store_url, clock)
    try:
        code, verifier, _ = await issue_code(runtime)
        error = await refused(runtime, code, verifier, client_id="password-only")
        assert error.error == "unauthorized_client"
        assert "access_token" in await redeem(runtime, code, verifier)  # not consumed
    finally:
        await runtime.aclose()
    runtime = await start_runtime(store_url, clock, grant_types=["password", "refresh_token"])
    try:
        verifier, _ = pkce()
        error = await refused(runtime, new_secret(CODE_PREFIX), verifier)
        assert error.error == "unsupported_grant_type"
    finally:
        await runtime.aclose()


@SQLITE_ONLY
async def test_store_down_is_a_503(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime)

    class Down:
        async def take(self, *args: Any, **kwargs: Any) -> bytes | None:
            raise StoreUnavailable("connection_refused", retry_after=2.0)

    runtime.store.one_time = Down()  # type: ignore[assignment]
    error = await refused(runtime, code, verifier)
    assert (error.error, error.status) == ("temporarily_unavailable", 503)


# --- replay -----------------------------------------------------------------------------------


async def test_a_second_redemption_revokes_what_the_first_got(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    code, verifier, _ = await issue_code(runtime)
    first = await redeem(runtime, code, verifier)
    assert not await access_revoked(runtime, first["access_token"])
    rotated = (await refresh_with(runtime, first["refresh_token"]))["refresh_token"]
    clock.advance(5)
    error = await refused(runtime, code, verifier)
    assert (error.error, error.reason) == ("invalid_grant", "unknown_or_used_code")
    family = await family_of(runtime, first["refresh_token"])
    assert (family.revoked_at, family.revoked_reason) == (clock(), "code_reuse")
    assert await access_revoked(runtime, first["access_token"])
    for token in (first["refresh_token"], rotated):
        with pytest.raises(OAuthError) as caught:
            await refresh_with(runtime, token)
        assert caught.value.reason == "family_revoked"


@SQLITE_ONLY
async def test_a_replay_by_another_client_revokes_too(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime)
    first = await redeem(runtime, code, verifier)
    await refused(runtime, code, verifier, client_id="other")
    assert (await family_of(runtime, first["refresh_token"])).revoked_at is not None
    assert await access_revoked(runtime, first["access_token"])


@SQLITE_ONLY
async def test_a_replay_revokes_the_access_token_without_a_family(runtime: IssuerRuntime) -> None:
    code, verifier, _ = await issue_code(runtime, client_id="no-refresh")
    first = await redeem(runtime, code, verifier, client_id="no-refresh")
    await refused(runtime, code, verifier, client_id="no-refresh")
    assert await access_revoked(runtime, first["access_token"])


@SQLITE_ONLY
async def test_a_replay_long_after_revokes_nothing_more(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    code, verifier, _ = await issue_code(runtime)
    first = await redeem(runtime, code, verifier)
    clock.advance(60 + 600 + 1)  # past the replay window
    await refused(runtime, code, verifier)
    assert (await family_of(runtime, first["refresh_token"])).revoked_at is None


async def redeem_all(runtimes: list[IssuerRuntime], code: str, verifier: str, n: int) -> list[Any]:
    async def one(index: int) -> Any:
        return await redeem(runtimes[index % len(runtimes)], code, verifier)

    return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


async def check_one_winner(runtime: IssuerRuntime, results: list[Any]) -> dict[str, Any]:
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if not isinstance(r, dict)]
    assert len(wins) == 1, [getattr(r, "reason", r) for r in losses]
    assert all(isinstance(r, OAuthError) and r.error == "invalid_grant" for r in losses), losses
    assert {r.reason for r in losses} == {"unknown_or_used_code"}
    return wins[0]


async def test_twenty_concurrent_redemptions_one_success_then_revoked(
    runtime: IssuerRuntime,
) -> None:
    for _ in range(3):
        code, verifier, _ = await issue_code(runtime)
        results = await redeem_all([runtime], code, verifier, 20)
        win = await check_one_winner(runtime, results)
        # Whichever order they interleaved in, the replays revoked the winner's tokens.
        family = await family_of(runtime, win["refresh_token"])
        assert family.revoked_reason == "code_reuse"
        assert await access_revoked(runtime, win["access_token"])


async def test_twenty_concurrent_redemptions_on_two_instances(store_url: str, clock: Clock) -> None:
    one = await start_runtime(store_url, clock)
    two = await start_runtime(store_url, clock)
    try:
        for _ in range(2):
            code, verifier, _ = await issue_code(one)
            results = await redeem_all([one, two], code, verifier, 20)
            win = await check_one_winner(one, results)
            assert (await family_of(two, win["refresh_token"])).revoked_at is not None
            assert await access_revoked(one, win["access_token"])
            assert await access_revoked(two, win["access_token"])
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_replay_before_the_family_exists_still_revokes_it(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The winner is held between taking the code and creating the family; a replay runs then."""
    code, verifier, _ = await issue_code(runtime)
    taken = asyncio.Event()
    release = asyncio.Event()
    original = _refresh.start_family

    async def slow_start(*args: Any, **kwargs: Any) -> str:
        taken.set()
        await release.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(_refresh, "start_family", slow_start)
    winner = asyncio.create_task(redeem(runtime, code, verifier))
    await taken.wait()
    error = await refused(runtime, code, verifier)  # the family is not there yet
    assert error.reason == "unknown_or_used_code"
    release.set()
    win = await winner
    assert (await family_of(runtime, win["refresh_token"])).revoked_reason == "code_reuse"
    assert await access_revoked(runtime, win["access_token"])


# --- logs -------------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_codes_verifiers_and_tokens_never_reach_the_logs(
    runtime: IssuerRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = []
    code, verifier, request = await issue_code(runtime)
    secrets_seen += [code, verifier, request.code_challenge]
    body = await redeem(runtime, code, verifier)
    secrets_seen += [body["access_token"], body["refresh_token"]]
    await refused(runtime, code, verifier)  # replay: a warning line
    code, verifier, _ = await issue_code(runtime)
    secrets_seen += [code, verifier]
    await refused(runtime, code, pkce()[0])
    await refused(runtime, code + "x", verifier)
    code, verifier, _ = await issue_code(runtime)
    secrets_seen += [code, verifier]
    await refused(runtime, code, verifier, redirect_uri=REDIRECT + "/")
    await refused(runtime, code, "short")
    text = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    assert "Authorization code grant refused" in text
    assert "authorization code reuse" in text
    for value in secrets_seen:
        assert value not in text
        assert value[:20] not in text
