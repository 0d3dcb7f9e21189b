"""docs/deployment.md's outage table, KEK procedure and clock leeway, checked against the app.

The outage table is filled in by an app with PostgreSQL and Redis, each behind a TCP link the
test cuts (connections refused): every row's answer must be the page's. The KEK change runs
the page's three deploys with several instances on one store and the command line between
them, and shows what the page warns of when the first deploy is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.engine import make_url
from tests.conftest import FakeClock
from tests.test_deployment_docs import section, table
from tests.test_health import through
from typer.testing import CliRunner

import store_support
from authbridge import AppIssuer, AuthBridge, ConfigurationError, LoginSettings, Principal
from authbridge.cli import app as cli
from authbridge.errors import InvalidToken
from authbridge.fastapi._health import install_health
from authbridge.issuer._kek import kek_id, new_kek
from authbridge.issuer._passwords import hash_password
from authbridge.issuer._secrets import hash_secret
from authbridge.jose import parse_compact
from authbridge.store import ClientRecord, SQLStore, UserRecord
from authbridge.store._composite import CompositeStore
from authbridge.store._redis import RedisEphemeral
from tcp_support import link_to

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
redis_prefix = store_support.redis_prefix

ISSUER = "https://api.example.com"
PASSWORD = "correct horse battery staple"
CHEAP = Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1)


def outage_app(store: Any, clock: FakeClock) -> tuple[AuthBridge, FastAPI]:
    issuer = AppIssuer(ISSUER, store=store, key_encryption_key=new_kek(), scopes=["items:read"])
    auth = AuthBridge(providers=[], issuer=issuer, login=LoginSettings(), clock=clock, health=False)
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> str:
        return user.subject

    @app.get("/active")
    async def active(
        user: Principal = Security(auth.active_principal, scopes=["items:read"]),
    ) -> str:
        return user.subject

    auth.install(app, docs_url=None)
    install_health(app, auth, cache_ttl=0)
    return auth, app


class Probe:
    """One request per row of the page's outage table; each row's status."""

    def __init__(self, http: httpx.AsyncClient, auth: AuthBridge, clock: FakeClock) -> None:
        self.http, self.auth, self.clock = http, auth, clock
        self.access = self.refresh = self.cookie = ""

    async def seed(self) -> None:
        runtime = self.auth.issuer
        assert runtime is not None
        store = runtime.store
        await store.users.add(
            UserRecord(
                id="u1",
                username="alice",
                password_hash=hash_password(PASSWORD, hasher=CHEAP),
                scopes=frozenset({"items:read"}),
            )
        )
        await store.clients.add(
            ClientRecord(
                client_id="cli",
                auth_method="none",
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=frozenset({"items:read"}),
            )
        )
        await store.clients.add(
            ClientRecord(
                client_id="bot",
                secret_hash=hash_secret("bot-secret", "client_secret"),
                grant_types=frozenset({"client_credentials"}),
                scopes=frozenset({"items:read"}),
            )
        )
        body = (await self._password()).json()
        self.access, self.refresh = body["access_token"], body["refresh_token"]
        login = self.auth.browser_login
        assert login is not None
        value, _ = await login.sessions.create("u1", provider=None, id_token=None)
        self.cookie = f"{login.cookies.session_cookie}={value}"

    async def _password(self) -> httpx.Response:
        return await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": "cli",
                "username": "alice",
                "password": PASSWORD,
            },
        )

    async def rows(self) -> dict[str, int]:
        self.clock.advance(6.0)  # past the 5 s client cache: every client is read again
        bearer = {"Authorization": f"Bearer {self.access}"}
        found: dict[str, int] = {}
        found["A route with `auth.principal`, the app's own access token"] = (
            await self.http.get("/items", headers=bearer)
        ).status_code
        found["A route with `auth.active_principal` (revocation checked)"] = (
            await self.http.get("/active", headers=bearer)
        ).status_code
        found["A route with `auth.principal`, a browser session's cookie"] = (
            await self.http.get("/items", headers={"Cookie": self.cookie})
        ).status_code
        found["Password grant (and the login pages' password form)"] = (
            await self._password()
        ).status_code
        refreshed = await self.http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "client_id": "cli", "refresh_token": self.refresh},
        )
        if refreshed.status_code == 200:
            self.refresh = refreshed.json()["refresh_token"]
        found["Refresh token grant"] = refreshed.status_code
        found["Client credentials grant, client secret"] = (
            await self.http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("bot", "bot-secret"),
            )
        ).status_code
        jwks = await self.http.get("/oauth/jwks")
        metadata = await self.http.get("/.well-known/oauth-authorization-server")
        found["JWKS and metadata"] = max(jwks.status_code, metadata.status_code)
        found["`/readyz`"] = (await self.http.get("/readyz")).status_code
        found["`/healthz`"] = (await self.http.get("/healthz")).status_code
        return found


async def test_the_outage_table(postgres_store_url: str, redis_prefix: str) -> None:
    clock = FakeClock()
    pg_port = make_url(postgres_store_url).port or 5432
    redis_port = make_url(store_support.REDIS_URL).port or 6379
    async with link_to(pg_port) as database, link_to(redis_port) as redis:
        store = CompositeStore(
            SQLStore(through(postgres_store_url, database)),
            RedisEphemeral(f"redis://127.0.0.1:{redis.port}/0", prefix=redis_prefix),
        )
        auth, app = outage_app(store, clock)
        transport = httpx.ASGITransport(app=app)
        async with auth, httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            probe = Probe(http, auth, clock)
            await probe.seed()
            up = await probe.rows()
            await database.refuse()
            without_database = await probe.rows()
            await database.restore()
            await redis.refuse()
            without_redis = await probe.rows()
            await redis.restore()
            again = await probe.rows()
            # an instance that starts during the outage has no keys: 503 for the same token
            async with link_to(pg_port) as late_link:
                await late_link.refuse()
                late, late_app = outage_app(SQLStore(through(postgres_store_url, late_link)), clock)
                late_transport = httpx.ASGITransport(app=late_app)
                async with late, httpx.AsyncClient(transport=late_transport, base_url=ISSUER) as c:
                    started_late = await c.get(
                        "/items", headers={"Authorization": f"Bearer {probe.access}"}
                    )
    rows = table(section("When PostgreSQL or Redis is down"), "Request")
    assert [row[0] for row in rows] == list(up)
    for label, database_down, redis_down in rows:
        assert without_database[label] == int(database_down), label
        assert without_redis[label] == int(redis_down), label
    assert set(up.values()) == {200}
    assert again == up
    assert started_late.status_code == 503
    assert "**started** during the outage has no keys yet" in section(
        "When PostgreSQL or Redis is down"
    )


# --- changing the KEK on several instances ------------------------------------------------------


def _kek_id(kek: str) -> str:
    return kek_id(base64.urlsafe_b64decode(kek + "="))


class Instances:
    """Instances of one app on one SQLite file, each with the KEKs it was deployed with."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.url, self.clock = url, clock
        self.running: list[AuthBridge] = []

    async def start(self, keks: str) -> AuthBridge:
        issuer = AppIssuer(
            ISSUER, store=self.url, key_encryption_key=keks.split(","), key_rotation_interval=0
        )
        auth = AuthBridge(providers=[], issuer=issuer, login=LoginSettings(), clock=self.clock)
        assert auth.issuer is not None
        try:
            await auth.__aenter__()
        except ConfigurationError:
            await auth.issuer.store.aclose()  # a refused start leaves the store's pool open
            raise
        self.running.append(auth)
        return auth

    async def aclose(self) -> None:
        while self.running:
            await self.running.pop().__aexit__(None, None, None)


def token(auth: AuthBridge) -> str:
    assert auth.issuer is not None
    minted, _ = auth.issuer.mint_access_token(
        subject="u1", client_id="cli", scopes=(), audiences=(ISSUER,)
    )
    return minted


async def accepts(auth: AuthBridge, minted: str) -> bool:
    assert auth.issuer is not None
    await auth.issuer.keys.refresh()  # as the instance's timer does within a minute
    try:
        await auth.verify(minted)
    except InvalidToken:
        return False
    return True


async def session_of(auth: AuthBridge) -> str:
    assert auth.browser_login is not None
    value, _ = await auth.browser_login.sessions.create("u1", provider=None, id_token=None)
    return value


async def knows_session(auth: AuthBridge, value: str) -> bool:
    assert auth.browser_login is not None
    return await auth.browser_login.sessions.get(value) is not None


async def keys(monkeypatch: pytest.MonkeyPatch, keks: str, *args: str) -> str:
    """``authbridge keys ARGS`` with these KEKs (in a thread: it runs its own event loop)."""
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", keks)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_changing_the_kek_in_three_deploys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_kek(), new_kek()
    url = f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"
    monkeypatch.setenv("AUTHBRIDGE_STORE", url)
    clock = FakeClock()
    instances = Instances(url, clock)
    try:
        first = await instances.start(old)
        assert first.issuer is not None
        await first.issuer.store.users.add(UserRecord(id="u1", username="alice"))
        before = token(first)
        cookie = await session_of(first)

        # Skipping deploy 1: an instance goes straight to "NEW,OLD" and rotates.
        rushed = await instances.start(f"{new},{old}")
        await keys(monkeypatch, f"{new},{old}", "rotate", "--now")
        assert await accepts(rushed, before)
        after = token(rushed)
        listed = json.loads(await keys(monkeypatch, f"{new},{old}", "list", "--json"))
        under_new = {key["kid"] for key in listed if key["kek_id"] == _kek_id(new)}
        assert (
            parse_compact(after, max_bytes=16384).header["kid"] in under_new
        )  # signed with the new key
        assert not await accepts(first, after)  # the old-only instance refuses it
        with pytest.raises(ConfigurationError, match="unknown_key_encryption_key"):
            await instances.start(old)  # and a restart of it does not start

        # Deploy 1, "OLD,NEW": the instances understand both, sessions go on.
        step1 = await instances.start(f"{old},{new}")
        assert await accepts(step1, before)
        assert await accepts(step1, after)
        assert await knows_session(step1, cookie)

        # Deploy 2, "NEW,OLD" everywhere and `authbridge keys rotate`: sessions end.
        step2 = await instances.start(f"{new},{old}")
        assert await accepts(step2, before)
        assert not await knows_session(step2, cookie)
        listed = json.loads(await keys(monkeypatch, f"{new},{old}", "list", "--json"))
        assert _kek_id(new) in {key["kek_id"] for key in listed}

        # Deploy 3 waits until no key is under the old KEK (the retired one is deleted
        # when its last token has expired): "NEW" alone starts only then.
        with pytest.raises(ConfigurationError, match="unknown_key_encryption_key"):
            await instances.start(new)
        clock.advance(step2.issuer.keys.retention + 1)  # type: ignore[union-attr]
        await step2.issuer.keys.refresh()  # type: ignore[union-attr]
        listed = json.loads(await keys(monkeypatch, f"{new},{old}", "list", "--json"))
        assert _kek_id(old) not in {key["kek_id"] for key in listed}
        step3 = await instances.start(new)
        assert await accepts(step3, token(step2))
    finally:
        await instances.aclose()
    for step in ('`AUTHBRIDGE_KEY_ENCRYPTION_KEY="OLD,NEW"`', '`"NEW,OLD"`', '`"NEW"`'):
        assert step in section("The key-encryption key")


def test_the_app_accepts_its_own_tokens_with_the_leeway_the_page_gives() -> None:
    auth = AuthBridge(providers=[], issuer=AppIssuer(ISSUER, store="sqlite+aiosqlite:///:memory:"))
    assert auth.issuer is not None
    leeway = auth.issuer.source.provider.policy.leeway
    assert f"with a {int(leeway)}-second leeway" in section("Clocks")
    assert f"{int(leeway)} seconds ahead" in section("Clocks")
