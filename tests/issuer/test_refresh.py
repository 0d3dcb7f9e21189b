"""The refresh_token grant: rotation, benign concurrent refreshes, reuse, lifetimes, binding.

Every test runs against a real store (a SQLite file, and PostgreSQL where the
server runs) through ``IssuerRuntime.token``; races are real concurrency
(``asyncio.gather`` on one runtime, and several processes on one database).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authbridge.errors import StoreUnavailable
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest, _refresh
from authbridge.issuer._secrets import REFRESH_TOKEN_PREFIX, new_secret
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, RefreshFamily, UserRecord
from store_support import (  # fixtures: a SQLite file and a PostgreSQL database
    postgres_database,
    postgres_store_url,
    sqlite_store_url,
    store_url,
)

ISSUER = "http://127.0.0.1:8000"
SCOPES = ("items:read", "items:write", "admin")
USER_GRANTS = frozenset({"password", "refresh_token"})
APP = ClientRecord(
    client_id="app", auth_method="none", grant_types=USER_GRANTS, scopes=frozenset(SCOPES)
)
OTHER = ClientRecord(
    client_id="other", auth_method="none", grant_types=USER_GRANTS, scopes=frozenset(SCOPES)
)
ALICE = UserRecord(id="user-alice", username="alice", scopes=frozenset(SCOPES))


# --- shared with test_revocation and test_introspection ------------------------------------


class Clock:
    """A settable clock shared by every runtime of a test."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


__all__ = ["postgres_database", "postgres_store_url", "sqlite_store_url", "store_url"]

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
"""For rules decided before or without the store's atomic steps: one backend is enough."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def start_runtime(url: str, clock: Clock, **options: Any) -> IssuerRuntime:
    """A started runtime on ``url`` with the test clients registered."""
    config = AppIssuer(ISSUER, store=url, scopes=list(SCOPES), development=True, **options)
    runtime = IssuerRuntime(config, clock)
    await runtime.start()
    for client in (APP, OTHER):
        runtime.add_builtin_client(client)
    return runtime


@pytest.fixture
async def runtime(store_url: str, clock: Clock) -> AsyncIterator[IssuerRuntime]:
    runtime = await start_runtime(store_url, clock)
    await runtime.store.users.add(ALICE)
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def login(
    runtime: IssuerRuntime,
    *,
    client: ClientRecord = APP,
    scopes: tuple[str, ...] = ("items:read", "items:write"),
    subject: str = ALICE.id,
) -> str:
    """A first refresh token, as the password grant hands it out."""
    return await _refresh.start_family(
        runtime,
        client=client,
        subject=subject,
        scopes=frozenset(scopes),
        audiences=(ISSUER,),
        auth_time=runtime.clock(),
    )


async def refresh(
    runtime: IssuerRuntime, token: str, *, client_id: str = "app", **form: str
) -> dict[str, Any]:
    request = TokenRequest(
        {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id, **form}
    )
    return await runtime.token(request)


async def refused(
    runtime: IssuerRuntime, token: str, *, client_id: str = "app", **form: str
) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        await refresh(runtime, token, client_id=client_id, **form)
    return info.value


async def family_of(runtime: IssuerRuntime, token: str) -> RefreshFamily:
    found = await runtime.store.refresh.find(_refresh.token_hash(token))
    assert found is not None
    return found[1]


def claims_of(access_token: str) -> dict[str, Any]:
    """The payload of an access token (its signature is checked elsewhere)."""
    return parse_compact(access_token, max_bytes=16 * 1024).claims


class CountingRefreshStore:
    """Wraps the refresh store: counts calls, and can fail them as a dead database."""

    def __init__(self, inner: Any, *, down: bool = False) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.down = down

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.down:
                raise StoreUnavailable("connection_refused")
            return await method(*args, **kwargs)

        return call


# --- rotation -------------------------------------------------------------------------------


async def test_rotation_issues_a_new_token_and_an_access_token_of_the_family(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    first = await login(runtime)
    clock.advance(60)
    body = await refresh(runtime, first)
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "items:read items:write"
    assert body["expires_in"] == int(runtime.config.access_token_ttl)
    new = body["refresh_token"]
    assert new.startswith(REFRESH_TOKEN_PREFIX)
    assert new != first
    claims = claims_of(body["access_token"])
    assert claims["sub"] == ALICE.id
    assert claims["client_id"] == "app"
    assert claims["aud"] == ISSUER
    assert claims["scope"] == "items:read items:write"
    family = await family_of(runtime, new)
    assert family.generation == 1
    assert family.rotated_at == clock.now
    assert family.siblings == 0
    # Stored only as a hash.
    assert (await runtime.store.refresh.find(new)) is None


@pytest.mark.parametrize("reused", [0, 4, 8, 9])
async def test_chain_of_ten_then_an_old_token_revokes_the_whole_family(
    runtime: IssuerRuntime, clock: Clock, caplog: pytest.LogCaptureFixture, reused: int
) -> None:
    tokens = [await login(runtime)]
    for _ in range(10):
        clock.advance(60)  # beyond the reuse interval: each step is a plain rotation
        tokens.append((await refresh(runtime, tokens[-1]))["refresh_token"])
    family = await family_of(runtime, tokens[-1])
    assert family.generation == 10
    assert len(set(tokens)) == 11

    clock.advance(60)
    with caplog.at_level(logging.WARNING, logger="authbridge.issuer"):
        error = await refused(runtime, tokens[reused])
    assert (error.error, error.status, error.code) == ("invalid_grant", 400, "oauth_error")
    assert error.reason == "refresh_token_reuse"
    revoked = await family_of(runtime, tokens[-1])
    assert revoked.revoked_at == clock.now
    assert revoked.revoked_reason == "reuse"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert family.id in warnings[0].getMessage()
    assert "app" in warnings[0].getMessage()
    for token in tokens:
        assert token not in caplog.text

    # Every token of the family is dead now, the current one included.
    for token in tokens:
        error = await refused(runtime, token)
        assert (error.error, error.reason) == ("invalid_grant", "family_revoked")
    # One description for every refusal: nothing tells a revoked token from an unknown one.
    unknown = await refused(runtime, new_secret(REFRESH_TOKEN_PREFIX))
    assert unknown.body() == error.body()


async def test_the_predecessor_within_the_interval_gets_a_sibling(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    first = await login(runtime)
    second = (await refresh(runtime, first))["refresh_token"]
    clock.advance(runtime.config.refresh_reuse_interval)  # the interval's last moment
    retry = (await refresh(runtime, first))["refresh_token"]
    assert retry not in (first, second)
    family = await family_of(runtime, retry)
    assert (family.generation, family.siblings, family.revoked_at) == (1, 1, None)
    # Both tokens of generation 1 are current: either rotates the family.
    third = (await refresh(runtime, retry))["refresh_token"]
    assert (await family_of(runtime, third)).generation == 2


async def test_the_predecessor_after_the_interval_is_reuse(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    first = await login(runtime)
    second = (await refresh(runtime, first))["refresh_token"]
    clock.advance(runtime.config.refresh_reuse_interval + 0.001)
    assert (await refused(runtime, first)).reason == "refresh_token_reuse"
    assert (await refused(runtime, second)).reason == "family_revoked"


async def test_a_token_two_generations_back_is_reuse_even_within_the_interval(
    runtime: IssuerRuntime,
) -> None:
    first = await login(runtime)
    second = (await refresh(runtime, first))["refresh_token"]
    third = (await refresh(runtime, second))["refresh_token"]
    assert (await refused(runtime, first)).reason == "refresh_token_reuse"
    assert (await refused(runtime, third)).reason == "family_revoked"


async def test_siblings_are_bounded_per_generation(runtime: IssuerRuntime) -> None:
    first = await login(runtime)
    await refresh(runtime, first)
    for _ in range(_refresh.MAX_SIBLINGS):
        await refresh(runtime, first)
    error = await refused(runtime, first)
    assert (error.error, error.reason) == ("invalid_grant", "sibling_refused")
    family = await family_of(runtime, first)
    assert (family.siblings, family.revoked_at) == (_refresh.MAX_SIBLINGS, None)


# --- benign concurrent refreshes ----------------------------------------------------------------


def _outcomes(results: list[dict[str, Any] | BaseException]) -> tuple[list[str], list[str]]:
    tokens: list[str] = []
    reasons: list[str] = []
    for result in results:
        if isinstance(result, OAuthError):
            assert result.error == "invalid_grant"
            reasons.append(str(result.reason))
        elif isinstance(result, BaseException):
            raise result
        else:
            tokens.append(result["refresh_token"])
    return tokens, reasons


async def test_twenty_concurrent_refreshes_with_the_current_token(
    runtime: IssuerRuntime, clock: Clock
) -> None:
    first = await login(runtime)
    current = (await refresh(runtime, first))["refresh_token"]
    clock.advance(1)
    results = await asyncio.gather(
        *(refresh(runtime, current) for _ in range(20)), return_exceptions=True
    )
    tokens, reasons = _outcomes(results)
    # One rotation and at most MAX_SIBLINGS siblings; the others refused, nothing revoked.
    assert len(tokens) == 1 + _refresh.MAX_SIBLINGS
    assert len(set(tokens)) == len(tokens)
    assert reasons == ["sibling_refused"] * (20 - len(tokens))
    family = await family_of(runtime, current)
    assert (family.generation, family.siblings, family.revoked_at) == (2, 4, None)
    # Each new token works...
    assert (await refresh(runtime, tokens[0]))["refresh_token"]
    # ... and one two generations back is reuse: the family goes.
    assert (await refused(runtime, first)).reason == "refresh_token_reuse"
    for token in tokens:
        assert (await refused(runtime, token)).reason == "family_revoked"


async def test_without_the_interval_one_concurrent_refresh_wins(
    store_url: str, clock: Clock
) -> None:
    runtime = await start_runtime(store_url, clock, refresh_reuse_interval=0)
    try:
        await runtime.store.users.add(ALICE)
        first = await login(runtime)
        results = await asyncio.gather(
            *(refresh(runtime, first) for _ in range(20)), return_exceptions=True
        )
        tokens, reasons = _outcomes(results)
        assert len(tokens) == 1
        # With no allowance a loser is a reuse: the family is revoked (strict mode); later
        # losers find it revoked already.
        assert "refresh_token_reuse" in reasons
        assert set(reasons) <= {"refresh_token_reuse", "family_revoked"}
        family = await family_of(runtime, first)
        assert (family.generation, family.revoked_reason) == (1, "reuse")
    finally:
        await runtime.aclose()


_CHILD = r"""
import asyncio, json, sys
from authbridge.issuer import AppIssuer, IssuerRuntime, OAuthError, TokenRequest
from authbridge.store import ClientRecord

args = json.loads(sys.argv[1])


async def main():
    now = args["now"]
    config = AppIssuer(args["issuer"], store=args["url"], scopes=args["scopes"],
                       development=True, refresh_reuse_interval=args["interval"])
    runtime = IssuerRuntime(config, lambda: now)
    await runtime.start()
    runtime.add_builtin_client(ClientRecord(
        client_id="app", auth_method="none", grant_types=frozenset(args["grants"]),
        scopes=frozenset(args["scopes"])))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    form = {"grant_type": "refresh_token", "refresh_token": args["token"], "client_id": "app"}

    async def one():
        try:
            return (await runtime.token(TokenRequest(form)))["refresh_token"]
        except OAuthError as exc:
            return "refused:" + str(exc.reason)

    results = await asyncio.gather(*(one() for _ in range(args["count"])))
    await runtime.aclose()
    print(json.dumps(results), flush=True)


asyncio.run(main())
"""


async def _race_in_processes(
    url: str, token: str, now: float, *, interval: float, processes: int = 3, count: int = 7
) -> list[str]:
    """Redeem ``token`` ``count`` times at once in each of ``processes`` processes."""
    args = {
        "url": url,
        "token": token,
        "now": now,
        "interval": interval,
        "count": count,
        "issuer": ISSUER,
        "scopes": list(SCOPES),
        "grants": sorted(USER_GRANTS),
    }
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            json.dumps(args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
        for child in children:  # all started: let them go together
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        results: list[str] = []
        for child in children:
            out, _ = await child.communicate()
            assert child.returncode == 0
            results.extend(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()


@pytest.mark.slow
@pytest.mark.parametrize("interval", [10.0, 0.0])
async def test_concurrent_refreshes_in_several_processes(
    store_url: str, clock: Clock, interval: float
) -> None:
    runtime = await start_runtime(store_url, clock, refresh_reuse_interval=interval)
    try:
        await runtime.store.users.add(ALICE)
        first = await login(runtime)
        current = (await refresh(runtime, first))["refresh_token"]
        results = await _race_in_processes(store_url, current, clock.now + 1, interval=interval)
        tokens = [r for r in results if not r.startswith("refused:")]
        reasons = {r for r in results if r.startswith("refused:")}
        family = await family_of(runtime, current)
        assert family.generation == 2
        if interval:
            assert len(tokens) == 1 + _refresh.MAX_SIBLINGS
            assert reasons == {"refused:sibling_refused"}
            assert (family.siblings, family.revoked_at) == (4, None)
        else:
            assert len(tokens) == 1
            assert "refused:refresh_token_reuse" in reasons
            assert reasons <= {"refused:refresh_token_reuse", "refused:family_revoked"}
            assert family.revoked_reason == "reuse"
    finally:
        await runtime.aclose()


# --- lifetimes ------------------------------------------------------------------------------------


async def test_idle_expiry(store_url: str, clock: Clock) -> None:
    runtime = await start_runtime(
        store_url, clock, refresh_token_idle_ttl=100, refresh_token_ttl=1000
    )
    try:
        await runtime.store.users.add(ALICE)
        token = await login(runtime)
        for _ in range(3):  # each use starts a new idle period
            clock.advance(99)
            token = (await refresh(runtime, token))["refresh_token"]
        clock.advance(100)
        assert (await refused(runtime, token)).reason == "refresh_token_expired"
    finally:
        await runtime.aclose()


async def test_absolute_expiry_caps_every_token(store_url: str, clock: Clock) -> None:
    runtime = await start_runtime(
        store_url, clock, refresh_token_idle_ttl=600, refresh_token_ttl=1000
    )
    try:
        await runtime.store.users.add(ALICE)
        token = await login(runtime)
        clock.advance(500)
        token = (await refresh(runtime, token))["refresh_token"]
        found = await runtime.store.refresh.find(_refresh.token_hash(token))
        assert found is not None
        record, family = found
        assert record.expires_at == family.expires_at == clock.now - 500 + 1000
        clock.advance(499)
        token = (await refresh(runtime, token))["refresh_token"]
        clock.advance(1)
        assert (await refused(runtime, token)).reason == "family_expired"
    finally:
        await runtime.aclose()


# --- binding, users, scopes ---------------------------------------------------------------------


@SQLITE_ONLY
async def test_another_client_cannot_use_or_burn_the_token(runtime: IssuerRuntime) -> None:
    token = await login(runtime)
    error = await refused(runtime, token, client_id="other")
    assert (error.error, error.reason) == ("invalid_grant", "client_mismatch")
    family = await family_of(runtime, token)
    assert (family.generation, family.revoked_at) == (0, None)
    assert error.body() == (await refused(runtime, new_secret(REFRESH_TOKEN_PREFIX))).body()
    # The owner still refreshes with it.
    assert (await refresh(runtime, token))["refresh_token"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        REFRESH_TOKEN_PREFIX,
        REFRESH_TOKEN_PREFIX + "A" * 49,
        new_secret("abxx_"),  # right shape, another prefix
        new_secret(REFRESH_TOKEN_PREFIX)[:-1] + "~",  # checksum broken
        new_secret(REFRESH_TOKEN_PREFIX)[len(REFRESH_TOKEN_PREFIX) :] + "abcde",  # no prefix
        new_secret(REFRESH_TOKEN_PREFIX) + " ",
        "abrt_" + "é" * 49,
        "abrt_" + "\ud800" * 49,
        "x" * 100_000,
        "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",  # a JWT is no refresh token
    ],
    # the same in every process (some values are random)
    ids=[
        "garbage",
        "prefix-only",
        "prefix-and-49",
        "another-prefix",
        "checksum-broken",
        "no-prefix",
        "trailing-space",
        "non-ascii",
        "surrogates",
        "huge",
        "jwt",
    ],
)
async def test_malformed_tokens_are_refused_without_a_store_call(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    counting = CountingRefreshStore(runtime.store.refresh)
    monkeypatch.setattr(runtime.store, "refresh", counting)
    error = await refused(runtime, value)
    assert (error.error, error.status, error.reason) == (
        "invalid_grant",
        400,
        "malformed_refresh_token",
    )
    assert counting.calls == []


@SQLITE_ONLY
async def test_a_missing_refresh_token_is_invalid_request(runtime: IssuerRuntime) -> None:
    for form in ({}, {"refresh_token": ""}):
        with pytest.raises(OAuthError) as info:
            await runtime.token(
                TokenRequest({"grant_type": "refresh_token", "client_id": "app", **form})
            )
        assert (info.value.error, info.value.reason) == ("invalid_request", "no_refresh_token")


@SQLITE_ONLY
async def test_a_well_formed_unknown_token_costs_one_lookup(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingRefreshStore(runtime.store.refresh)
    monkeypatch.setattr(runtime.store, "refresh", counting)
    error = await refused(runtime, new_secret(REFRESH_TOKEN_PREFIX))
    assert (error.error, error.reason) == ("invalid_grant", "unknown_refresh_token")
    assert counting.calls == ["find"]


@SQLITE_ONLY
async def test_the_store_being_down_is_503(
    runtime: IssuerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await login(runtime)
    monkeypatch.setattr(
        runtime.store, "refresh", CountingRefreshStore(runtime.store.refresh, down=True)
    )
    error = await refused(runtime, token)
    assert (error.error, error.status) == ("temporarily_unavailable", 503)
    assert error.retry_after
    assert token not in repr(error.body()) + str(error.reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda store: store.users.update(dataclasses.replace(ALICE, disabled=True)),
            "user_disabled",
        ),
        (lambda store: store.users.delete(ALICE.id), "user_removed"),
    ],
)
async def test_a_disabled_or_removed_user_ends_the_family(
    runtime: IssuerRuntime, change: Any, reason: str
) -> None:
    token = await login(runtime)
    await change(runtime.store)
    error = await refused(runtime, token)
    assert (error.error, error.reason) == ("invalid_grant", reason)
    assert (await family_of(runtime, token)).revoked_reason == reason
    # Enabling (or re-creating) the account does not bring the family back.
    if reason == "user_disabled":
        await runtime.store.users.update(ALICE)
    else:
        await runtime.store.users.add(ALICE)
    assert (await refused(runtime, token)).reason == "family_revoked"


@SQLITE_ONLY
async def test_a_refresh_may_narrow_the_scope_for_one_token(runtime: IssuerRuntime) -> None:
    token = await login(runtime)
    body = await refresh(runtime, token, scope="items:read")
    assert body["scope"] == "items:read"
    assert claims_of(body["access_token"])["scope"] == "items:read"
    # The grant itself is unchanged: the next refresh without scope gets all of it.
    body = await refresh(runtime, body["refresh_token"])
    assert body["scope"] == "items:read items:write"


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ("items:read admin", "scope_widening"),
        ("admin", "scope_widening"),
        ("unknown:scope", "scope_widening"),
    ],
)
async def test_a_refresh_never_widens_the_scope(
    runtime: IssuerRuntime, scope: str, reason: str
) -> None:
    token = await login(runtime)
    error = await refused(runtime, token, scope=scope)
    assert (error.error, error.reason) == ("invalid_scope", reason)
    # A refused request consumes nothing.
    family = await family_of(runtime, token)
    assert (family.generation, family.revoked_at) == (0, None)
    assert (await refresh(runtime, token))["scope"] == "items:read items:write"


@SQLITE_ONLY
async def test_scopes_withdrawn_since_the_login_are_not_carried_on(
    runtime: IssuerRuntime,
) -> None:
    token = await login(runtime)
    await runtime.store.users.update(dataclasses.replace(ALICE, scopes=frozenset({"items:read"})))
    body = await refresh(runtime, token)
    assert body["scope"] == "items:read"
    error = await refused(runtime, body["refresh_token"], scope="items:write")
    assert (error.error, error.reason) == ("invalid_scope", "scope_withdrawn")


@SQLITE_ONLY
async def test_the_audience_stays_the_family_s(runtime: IssuerRuntime) -> None:
    token = await login(runtime)
    body = await refresh(runtime, token, resource=ISSUER)
    assert claims_of(body["access_token"])["aud"] == ISSUER
    error = await refused(runtime, body["refresh_token"], resource="https://elsewhere.example")
    assert (error.error, error.reason) == ("invalid_target", "audience_widening")


async def test_start_family_records_the_login(runtime: IssuerRuntime, clock: Clock) -> None:
    token = await login(runtime, scopes=("items:read",))
    assert token.startswith(REFRESH_TOKEN_PREFIX)
    family = await family_of(runtime, token)
    assert family.client_id == "app"
    assert family.subject == ALICE.id
    assert family.scopes == frozenset({"items:read"})
    assert family.audiences == (ISSUER,)
    assert family.created_at == family.auth_time == clock.now
    assert family.expires_at == clock.now + runtime.config.refresh_token_ttl
    assert (family.generation, family.rotated_at, family.siblings) == (0, None, 0)
    assert len(family.id) >= 22
