"""Signing keys reload on a timer in the app's lifespan, with no token traffic.

Two instances share one SQLite store; one schedules a new key, and the other
publishes it in its JWKS before it signs, although nobody asked it for a token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI

from authbridge import AppIssuer, AuthBridge


def _instance(store: str) -> tuple[FastAPI, AuthBridge]:
    issuer = AppIssuer(
        "http://127.0.0.1:8000",
        store=store,
        scopes=["items:read"],
        development=True,
        jwks_max_age=4.0,  # keys reload every second
        key_rotation_interval=0.0,
    )
    auth = AuthBridge(providers=[], issuer=issuer)
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)
    auth.install(app, docs_url=None)
    return app, auth


async def _kids(app: FastAPI) -> set[str]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        return {key["kid"] for key in (await c.get("/oauth/jwks")).json()["keys"]}


async def test_a_key_scheduled_elsewhere_is_loaded_by_the_timer(tmp_path: Path) -> None:
    store = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    app_a, auth_a = _instance(store)
    _app_b, auth_b = _instance(store)
    async with auth_a, auth_b:
        assert auth_a.issuer is not None
        assert auth_b.issuer is not None
        keys_a = auth_a.issuer.keys
        before = {key.kid for key in keys_a.keyset.keys}
        scheduled = await auth_b.issuer.keys.rotate()  # a next key, published ahead
        assert scheduled.kid not in before
        for _ in range(60):  # the timer reloads within about a second
            if any(key.kid == scheduled.kid for key in keys_a.keyset.keys):
                break
            await asyncio.sleep(0.1)
        assert any(key.kid == scheduled.kid for key in keys_a.keyset.keys)
        assert scheduled.kid in await _kids(app_a)
        assert keys_a.signer_kid != scheduled.kid  # published, not yet signing


async def test_the_timer_stops_with_the_app(tmp_path: Path) -> None:
    _app, auth = _instance(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    async with auth:
        await asyncio.sleep(0)
    tasks = [t for t in asyncio.all_tasks() if "_key_timer" in repr(t.get_coro())]
    assert tasks == []


async def test_expired_rows_are_purged_without_a_manual_call(tmp_path: Path) -> None:
    _app, auth = _instance(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    async with auth:
        assert auth.issuer is not None
        store, clock = auth.issuer.store, auth.issuer.clock
        await store.replay.first_use("gone", expires_at=clock() - 1.0, now=clock() - 10.0)
        assert await store.replay.seen("gone", now=clock() - 5.0)
        await store.replay.first_use("kept", expires_at=clock() + 3600.0, now=clock())
        for _ in range(60):  # the first purge runs at the timer's first tick
            # Seen "before it expired": true for as long as the row exists.
            if not await store.replay.seen("gone", now=clock() - 5.0):
                break
            await asyncio.sleep(0.1)
        assert not await store.replay.seen("gone", now=clock() - 5.0)
        assert await store.replay.seen("kept", now=clock())
