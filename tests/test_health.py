"""Liveness and readiness endpoints: real stores (SQLite, PostgreSQL, Redis), real outages.

Outages are real network conditions: a closed port, and a TCP link in front of the real
server that the test cuts (connections refused) or holds (accepted, never answered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from tests.conftest import FakeClock

import store_support
from authbridge import AppIssuer, AuthBridge, ConfigurationError, OIDCProvider
from authbridge.fastapi._health import Health, install_health
from authbridge.issuer._kek import new_kek
from authbridge.store import SQLStore, Store
from authbridge.store._composite import CompositeStore
from authbridge.store._redis import RedisEphemeral
from tcp_support import Link, link_to

postgres_database = store_support.postgres_database
postgres_store_url = store_support.postgres_store_url
sqlite_store_url = store_support.sqlite_store_url
store_url = store_support.store_url
redis_prefix = store_support.redis_prefix

ISSUER = "https://api.example.com"
PASSWORD = "He4lth-Pa55word"
PROVIDER = OIDCProvider("corp", issuer="https://login.example.org", audience=ISSUER)
READY_OK = {"status": "ok", "checks": {"store": "ok", "keys": "ok"}}


def through(url: str, link: Link) -> str:
    return make_url(url).set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)


class Counted:
    """Counts the calls of a store's ``ping`` and delegates to the real one."""

    def __init__(self, target: Any) -> None:
        self.calls = 0
        self._real: Callable[[], Awaitable[None]] = target.ping
        target.ping = self

    async def __call__(self) -> None:
        self.calls += 1
        await self._real()


def make_app(
    store: str | Store, *, clock: FakeClock | None = None, **options: Any
) -> tuple[AuthBridge, FastAPI, Health]:
    issuer = AppIssuer(ISSUER, store=store, key_encryption_key=new_kek())
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    auth = AuthBridge(providers=[], issuer=issuer, **extra)
    app = FastAPI(docs_url=None, redoc_url=None)
    health = install_health(app, auth, **options)
    return auth, app, health


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


# --- liveness, the answers' form --------------------------------------------------------------


async def test_liveness_answers_get_and_head_without_the_store(tmp_path: Path) -> None:
    # A store that cannot be opened: liveness does not care.
    auth, app, _ = make_app(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    async with auth, client(app) as http:
        got = await http.get("/healthz")
        head = await http.head("/healthz")
    assert (got.status_code, got.json()) == (200, {"status": "ok"})
    assert got.headers["cache-control"] == "no-store"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


async def test_health_paths_are_not_in_the_openapi_document(sqlite_store_url: str) -> None:
    _, app, _ = make_app(sqlite_store_url)
    assert "/healthz" not in str(app.openapi()["paths"])
    assert "/readyz" not in str(app.openapi()["paths"])
    async with client(app) as http:
        assert (await http.post("/healthz")).status_code == 405


async def test_ready_on_the_real_store(store_url: str) -> None:
    auth, app, _ = make_app(store_url)
    async with auth, client(app) as http:
        got = await http.get("/readyz")
        head = await http.head("/readyz")
    assert (got.status_code, got.json()) == (200, READY_OK)
    assert got.headers["cache-control"] == "no-store"
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"]


async def test_ready_with_redis_checks_both_and_names_the_one_down(
    postgres_store_url: str, redis_prefix: str
) -> None:
    redis_port = make_url(store_support.REDIS_URL).port or 6379
    async with link_to(redis_port) as link:
        store = CompositeStore(
            SQLStore(postgres_store_url),
            RedisEphemeral(f"redis://127.0.0.1:{link.port}/0", prefix=redis_prefix),
        )
        auth, app, _ = make_app(store, cache_ttl=0)
        async with auth, client(app) as http:
            ok = await http.get("/readyz")
            await link.refuse()
            down = await http.get("/readyz")
            await link.restore()
            again = await http.get("/readyz")
    assert (ok.status_code, ok.json()["checks"]) == (
        200,
        {"store": "ok", "redis": "ok", "keys": "ok"},
    )
    assert (down.status_code, down.json()) == (
        503,
        {"status": "unavailable", "checks": {"store": "ok", "redis": "failed", "keys": "ok"}},
    )
    assert again.status_code == 200


# --- before and after the lifespan ---------------------------------------------------------


async def test_not_ready_before_the_lifespan_and_after_it_pinging_nothing(
    sqlite_store_url: str,
) -> None:
    auth, app, _ = make_app(sqlite_store_url, cache_ttl=0)
    assert auth.issuer is not None
    pings = Counted(auth.issuer.store)
    async with client(app) as http:
        before = await http.get("/readyz")
        async with auth:
            during = await http.get("/readyz")
        after = await http.get("/readyz")
        head = await http.head("/readyz")
    not_ready = {"status": "unavailable", "checks": {"keys": "failed"}}
    assert (before.status_code, before.json()) == (503, not_ready)
    assert (during.status_code, during.json()) == (200, READY_OK)
    assert (after.status_code, after.json()) == (503, not_ready)
    assert (head.status_code, head.content) == (503, b"")
    assert pings.calls == 1  # only while the lifespan ran


# --- outages --------------------------------------------------------------------------------


async def test_a_store_on_a_closed_port_is_503_at_once_and_says_nothing_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = store_support_closed_port()
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{port}/authbridge"
    auth, app, _ = make_app(url)
    caplog.set_level(logging.INFO)
    async with auth, client(app) as http:  # the app starts anyway
        started = time.monotonic()
        got = await http.get("/readyz")
        elapsed = time.monotonic() - started
        head = await http.head("/readyz")
    assert elapsed < 1.0
    assert (got.status_code, got.json()) == (
        503,
        {"status": "unavailable", "checks": {"store": "failed", "keys": "failed"}},
    )
    assert head.status_code == 503
    for text in (got.text, str(dict(got.headers))):
        assert PASSWORD not in text
        assert str(port) not in text
        assert "postgres" not in text
    assert PASSWORD not in caplog.text
    readiness = [r.getMessage() for r in caplog.records if "Readiness check" in r.getMessage()]
    assert any(m.startswith("Readiness check store: failed (unreachable") for m in readiness)


def store_support_closed_port() -> int:
    from tests.store._support import closed_port  # noqa: PLC0415

    return closed_port()


async def test_a_hanging_store_is_a_timeout_within_the_bound(postgres_store_url: str) -> None:
    async with link_to(make_url(postgres_store_url).port or 5432) as link:
        auth, app, _ = make_app(through(postgres_store_url, link), timeout=0.5, cache_ttl=0)
        async with auth, client(app) as http:
            assert (await http.get("/readyz")).status_code == 200
            await link.hold()  # the pooled connections are cut; new ones never answered
            started = time.monotonic()
            hanging = await http.get("/readyz")
            elapsed = time.monotonic() - started
            await link.restore()
            recovered = await http.get("/readyz")
    assert (hanging.status_code, hanging.json()["checks"]) == (
        503,
        {"store": "timeout", "keys": "ok"},
    )
    assert 0.5 <= elapsed < 1.5
    assert recovered.status_code == 200


async def test_a_flood_of_probes_pings_the_store_once_per_cache_period(
    postgres_store_url: str,
) -> None:
    auth, app, health = make_app(postgres_store_url, cache_ttl=0.5)
    assert auth.issuer is not None
    pings = Counted(auth.issuer.store)
    async with auth, client(app) as http:
        burst = await asyncio.gather(*(http.get("/readyz") for _ in range(300)))
        assert {r.status_code for r in burst} == {200}
        assert pings.calls == 1  # 300 probes in flight at once: one ping
        pings.calls = 0
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 1.6:
            wave = await asyncio.gather(*(http.get("/readyz") for _ in range(40)))
            answered += len(wave)
        elapsed = time.monotonic() - started
    assert answered >= 200
    # a fresh ping at most every cache period, whatever the rate of probes
    assert 1 <= pings.calls <= int(elapsed / health.cache_ttl) + 1


async def test_a_probe_starts_an_issuer_whose_store_was_down(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    clock = FakeClock()
    auth, app, _ = make_app(
        f"sqlite+aiosqlite:///{directory / 'authbridge.db'}", clock=clock, cache_ttl=0
    )
    assert auth.issuer is not None
    async with auth, client(app) as http:
        down = await http.get("/readyz")
        directory.mkdir()  # the store can be opened now
        clock.advance(1.0)
        within_cooldown = await http.get("/readyz")  # not retried more than every 5 s
        clock.advance(5.0)
        ready = await http.get("/readyz")
        [key] = await auth.issuer.keys.describe()
    assert down.json()["checks"] == {"store": "failed", "keys": "failed"}
    assert within_cooldown.json()["checks"] == {"store": "ok", "keys": "failed"}
    assert (ready.status_code, ready.json()) == (200, READY_OK)
    assert key.state == "active"


async def test_a_check_that_raises_answers_503_with_nothing_of_its_text(
    sqlite_store_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth, app, _ = make_app(sqlite_store_url, cache_ttl=0)
    assert auth.issuer is not None

    async def broken() -> None:  # fault injection: a bug, with a URL in its text
        raise RuntimeError(f"postgresql://u:{PASSWORD}@db")

    caplog.set_level(logging.INFO)
    async with auth, client(app) as http:
        monkeypatch.setattr(auth.issuer.store, "ping", broken)
        answers = [await http.get("/readyz") for _ in range(3)]
        monkeypatch.undo()
        again = await http.get("/readyz")
    assert {a.status_code for a in answers} == {503}
    assert answers[0].json()["checks"] == {"store": "failed", "keys": "ok"}
    assert PASSWORD not in answers[0].text
    assert PASSWORD not in caplog.text
    lines = [r.getMessage() for r in caplog.records if "Readiness check" in r.getMessage()]
    assert lines == [  # once per change, not per probe
        "Readiness check store: failed (RuntimeError)",
        "Readiness check store: ok again",
    ]
    assert again.status_code == 200


# --- installation -----------------------------------------------------------------------------


async def test_an_app_without_an_issuer_is_ready_whenever_it_serves() -> None:
    auth = AuthBridge(providers=[PROVIDER])
    app = FastAPI(docs_url=None, redoc_url=None)
    install_health(app, auth, live="/live", ready="/ready")
    async with client(app) as http:
        ready = await http.get("/ready")
        live = await http.get("/live")
        default = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checks": {}})
    assert live.status_code == 200
    assert default.status_code == 404


def test_a_path_the_app_serves_or_without_a_slash_is_refused() -> None:
    auth = AuthBridge(providers=[PROVIDER])
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def mine() -> dict[str, str]:
        return {}

    with pytest.raises(ConfigurationError, match="already serves /healthz"):
        install_health(app, auth)
    with pytest.raises(ConfigurationError, match="start with '/'"):
        install_health(app, auth, live="up")
    install_health(app, auth, live=None)  # only readiness
    assert [getattr(r, "path", "") for r in app.routes].count("/readyz") == 1
