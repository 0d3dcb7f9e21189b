"""The composite store, the issuer on it, health endpoints and login starts under attack
(SECURITY-CASES §8, §10, §11): where every replay key lands, a code whose take reply is
lost, revocations surviving a Redis that forgets, probe and login-start floods.

Settings and the demo are in test_ephemeral_review_config.py. Real servers: the shared
Redis under a per-test prefix (through the loopback proxy of test_ephemeral_review.py),
private redis-servers on free ports for the floods and the outage, SQLite files.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import importlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from tests.fastapi_login.support import Upstream, build

from authbridge import AppIssuer, AuthBridge
from authbridge.fastapi import install_health
from authbridge.fastapi._browser_login import LOGIN_STARTS_PER_ADDRESS
from authbridge.issuer import IssuerRuntime, OAuthError, TokenRequest
from authbridge.issuer._authorize import code_hash
from authbridge.issuer._code_grant import access_token_id
from authbridge.store import SQLStore
from authbridge.store._composite import DURABLE_REPLAY_PREFIXES, CompositeStore, SplitReplay
from authbridge.store._redis import RedisEphemeral
from issuer.code_support import BACKEND_SECRET, Clock, issue_code, start_runtime
from store._support import run_sql
from store_support import delete_redis_prefix

from .test_ephemeral_review import TAKE_SHA, Proxy, RedisServers, proxy, redis_prefix, servers

__all__ = ["proxy", "redis_prefix", "servers"]

SRC = Path(__file__).resolve().parents[2] / "src" / "authbridge"
ISSUER = "http://127.0.0.1:8000"
BACKEND_REDIRECT = "https://backend.example.test/cb"
REDIS_PASSWORD = "r3dis-Pa55word-of-the-review"


# --- every key written to store.replay lands where the split says ---------------------------

REVOCATION_PREFIXES = frozenset({"at:", "dg:"})
"""Replay prefixes that record a revocation: durable facts (SQL), never Redis."""

EPHEMERAL_PREFIXES = frozenset({"jti:", "code-issued:", "code-replayed:"})
"""Replay prefixes of short-lived markers (client-assertion ids, code markers): Redis."""


def _literal_prefix(node: ast.expr, module: Any) -> str | None:
    """The constant text a replay key starts with, up to its first ':' (None if unknown)."""
    text: str | None = None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            text = first.value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_prefix(node.left, module)
    elif isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
        text = value if isinstance(value, str) else None
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = getattr(module, node.func.id, None)
        if callable(function):
            text = str(function(*["x"] * len(node.args)))
    if text is None or ":" not in text:
        return None
    return text[: text.index(":") + 1]


def replay_keys_written() -> dict[str, set[str]]:
    """Each ``store.replay.first_use/seen`` call in src/authbridge: key prefix -> where."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if "store" in path.relative_to(SRC).parts[:1]:
            continue  # the stores themselves pass keys through
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_name = ".".join(("authbridge", *path.relative_to(SRC).with_suffix("").parts))
        module: Any = None
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("first_use", "seen")
                and "replay" in ast.unparse(node.func.value)
            ):
                continue
            assert node.args, f"{path.name}:{node.lineno}: the key is positional"
            if module is None:  # only modules that write replay keys are imported
                module = importlib.import_module(module_name.removesuffix(".__init__"))
            prefix = _literal_prefix(node.args[0], module)
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            assert prefix is not None, f"{where}: a replay key without a known prefix"
            found.setdefault(prefix, set()).add(where)
    return found


def test_every_replay_key_the_code_writes_lands_where_the_decision_says() -> None:
    # Attack: a revocation written under a prefix the split sends to Redis (lost at a
    # restart: a revoked token valid again), or a hot marker sent to SQL. Every caller in
    # src/ is found by its syntax; a new prefix must be classified here.
    found = replay_keys_written()
    assert set(found) >= {"at:", "dg:", "jti:", "code-issued:", "code-replayed:"}, found
    unknown = set(found) - REVOCATION_PREFIXES - EPHEMERAL_PREFIXES
    assert not unknown, {prefix: found[prefix] for prefix in unknown}
    assert frozenset(DURABLE_REPLAY_PREFIXES) == REVOCATION_PREFIXES
    durable, ephemeral = object(), object()
    split = SplitReplay(durable, ephemeral)  # type: ignore[arg-type]
    for prefix in found:
        expected = durable if prefix in REVOCATION_PREFIXES else ephemeral
        assert split._for(prefix + "x") is expected, prefix


# --- the issuer on CompositeStore: a lost reply, a Redis that forgets -------------------------


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
async def composite_runtime(
    tmp_path: Path, proxy: Proxy, redis_prefix: str
) -> AsyncIterator[IssuerRuntime]:
    """An issuer on SQLite + the shared Redis (through `proxy`, scripts loaded)."""
    ephemeral = RedisEphemeral(proxy.url, prefix=redis_prefix)
    store = CompositeStore(SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}"), ephemeral)
    runtime = await start_runtime(store, Clock(time.time()))  # type: ignore[arg-type]
    await ephemeral.one_time.take("warm", "none", now=0.0)
    try:
        yield runtime
    finally:
        await runtime.aclose()


def code_grant(code: str, verifier: str) -> TokenRequest:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": BACKEND_REDIRECT,
    }
    return TokenRequest(form, authorization=basic("backend", BACKEND_SECRET))


async def _families(tmp_path: Path) -> int:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}"
    (rows,) = await run_sql(url, "SELECT count(*) FROM authbridge_refresh_families")
    return int(rows[0][0])


async def test_a_code_whose_take_reply_is_lost_issues_nothing_ever(
    composite_runtime: IssuerRuntime, proxy: Proxy, tmp_path: Path
) -> None:
    # Attack: cut the link between the token endpoint and Redis just after the code's take,
    # then redeem again, hoping for a second issue (or a first one nobody saw).
    runtime = composite_runtime
    code, verifier, _ = await issue_code(
        runtime, client_id="backend", redirect_uri=BACKEND_REDIRECT
    )
    proxy.lose_reply_to(TAKE_SHA)
    with pytest.raises(OAuthError) as lost:
        await runtime.token(code_grant(code, verifier))
    assert (lost.value.status, lost.value.error) == (503, "temporarily_unavailable")
    with pytest.raises(OAuthError) as again:
        await runtime.token(code_grant(code, verifier))
    assert (again.value.error, again.value.reason) == ("invalid_grant", "unknown_or_used_code")
    assert await _families(tmp_path) == 0  # no refresh token was ever made for it


async def test_a_replayed_codes_revocation_outlives_a_redis_that_forgets(
    composite_runtime: IssuerRuntime, redis_prefix: str
) -> None:
    # Attack: replay a code (which revokes what its first redemption got), then wait for
    # a Redis restart without persistence, hoping the revocation was in Redis.
    runtime = composite_runtime
    code, verifier, _ = await issue_code(
        runtime, client_id="backend", redirect_uri=BACKEND_REDIRECT
    )
    first = await runtime.token(code_grant(code, verifier))
    with pytest.raises(OAuthError):
        await runtime.token(code_grant(code, verifier))
    delete_redis_prefix(redis_prefix)  # what a restart without persistence loses
    store = runtime.store
    assert isinstance(store, CompositeStore)
    now = time.time()
    assert await store.durable.replay.seen("at:" + access_token_id(code_hash(code)), now=now)
    answer = await runtime.introspect(
        TokenRequest(
            {"token": first["access_token"]}, authorization=basic("backend", BACKEND_SECRET)
        )
    )
    assert answer == {"active": False}
    with pytest.raises(OAuthError) as refused:
        await runtime.token(
            TokenRequest(
                {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                authorization=basic("backend", BACKEND_SECRET),
            )
        )
    assert refused.value.error == "invalid_grant"


# --- readiness probes: bounded, and saying nothing ---------------------------------------------


def _pings(port: int) -> int:
    client = redis.Redis(port=port, password=REDIS_PASSWORD, socket_timeout=2)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    # The readiness probe is a write that stores nothing (DEL), a PING before that.
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_ping", "cmdstat_del"))


async def test_a_probe_flood_pings_redis_once_per_period_and_an_outage_says_nothing(
    tmp_path: Path, servers: RedisServers, caplog: pytest.LogCaptureFixture
) -> None:
    # Attack: unauthenticated /readyz floods (each a database and a Redis ping?), and reading
    # the deployment's addresses and passwords from a failing probe's answer or log.
    port = servers.start("--requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    store = CompositeStore(
        SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}"), RedisEphemeral(url, prefix="h:")
    )
    auth = AuthBridge(
        providers=[], issuer=AppIssuer(ISSUER, store=store, development=True), health=False
    )
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)
    auth.install(app)
    install_health(app, auth, timeout=0.5, cache_ttl=0.5)
    caplog.set_level(logging.DEBUG)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            before = _pings(port)
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(300)))
            assert {a.status_code for a in answers} == {200}
            assert answers[0].json() == {
                "status": "ok",
                "checks": {"store": "ok", "redis": "ok", "keys": "ok"},
            }
            assert 1 <= _pings(port) - before <= 2  # one round, maybe a second: never 300
            servers.kill(port)
            await asyncio.sleep(0.6)
            started = time.monotonic()
            down = await asyncio.gather(*(client.get("/readyz") for _ in range(300)))
            assert time.monotonic() - started < 3.0
            heads = await client.head("/readyz")
    assert {a.status_code for a in down} == {503}
    assert down[0].json() == {
        "status": "unavailable",
        "checks": {"store": "ok", "redis": "failed", "keys": "ok"},
    }
    assert heads.status_code == 503
    assert heads.content == b""
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("authbridge"))
    shown = "".join(a.text for a in down[:5]) + logged + str(dict(down[0].headers))
    for secret in (REDIS_PASSWORD, str(port), "127.0.0.1", "redis://"):
        assert secret not in shown, secret
    assert logged.count("Readiness check redis: failed") == 1  # the operator is told, once


# --- unauthenticated login starts: bounded in Redis keys and connections ----------------------

LOGIN_FLOOD = LOGIN_STARTS_PER_ADDRESS + 40


async def test_a_login_start_flood_is_bounded_in_keys_and_connections(
    tmp_path: Path, servers: RedisServers
) -> None:
    # Attack: many concurrent unauthenticated login starts from one address, each storing
    # a transaction in Redis, to fill its memory or exhaust its connections (a Redis whose
    # maxclients is reached refuses everyone: every instance's logins).
    port = servers.start("--maxclients", "6")
    ephemeral = RedisEphemeral(f"redis://127.0.0.1:{port}/0", prefix="f:", max_connections=4)
    store = CompositeStore(SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'ab.db'}"), ephemeral)
    app, _ = build(store, Upstream())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            answers = await asyncio.gather(
                *(client.get("/auth/login/stub") for _ in range(LOGIN_FLOOD))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303] * LOGIN_STARTS_PER_ADDRESS + [429] * (
        LOGIN_FLOOD - LOGIN_STARTS_PER_ADDRESS
    )
    inspect = redis.Redis(port=port, socket_timeout=2)
    try:
        one_time = list(inspect.scan_iter(match="f:ot:*", count=1000))
        counters = list(inspect.scan_iter(match="f:rl:*", count=1000))
        assert int(inspect.info("stats")["rejected_connections"]) == 0
    finally:
        inspect.close()
    assert len(one_time) == LOGIN_STARTS_PER_ADDRESS  # one transaction per admitted start
    assert len(counters) == 1
