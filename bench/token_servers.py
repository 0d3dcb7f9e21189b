"""Servers for the token-endpoint benchmark, each in its own process, stopped by PID.

* `authbridge_server`: uvicorn (one worker) serving ``bench.token_app`` with an
  ``AppIssuer`` on a SQLite file or a PostgreSQL database;
* `oidc_provider_server`: npm ``oidc-provider`` (one Node process, in-memory adapter) issuing
  JWT access tokens for ``client_credentials``, installed once into the cache directory the
  interop tests use (``tests/interop/op``);
* `postgres_database`: a database of its own on the local PostgreSQL, dropped afterwards;
* `seed`: the clients and users the scenarios need, written into a store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import PYTHON, REPO_ROOT, python_env
from bench.httpbench import _wait_ready, free_port, server_flavour

NODE_SCRIPT = Path(__file__).with_name("oidc_provider_server.mjs")
RESOURCE = "https://api.bench.test"
SCOPE = "items:read items:write"
CC_CLIENT_ID = "bench-machine"
PASSWORD_CLIENT_ID = "bench-first-party"
USER_PASSWORD = "correct horse battery staple"  # a fixed benchmark credential
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def new_kek() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Server:
    """A started server: where it listens and its PID (for its CPU time)."""

    name: str
    base_url: str
    pid: int
    token_path: str
    issuer: str


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def authbridge_server(
    name: str, store_url: str, algorithm: str, log_path: Path
) -> Iterator[Server]:
    """``uvicorn --factory bench.token_app:create_app``, one worker, on a free port."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    flavour = server_flavour()
    argv = [
        PYTHON, "-m", "uvicorn", "--factory", "bench.token_app:create_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--loop", flavour["loop"], "--http", flavour["http"],
    ]  # fmt: skip
    env = python_env()
    env["AUTHBRIDGE_BENCH_TOKEN_APP"] = json.dumps(
        {
            "issuer": issuer,
            "store": store_url,
            "audience": RESOURCE,
            "algorithm": algorithm,
            "kek": new_kek(),
        }
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, f"{issuer}/open", log_path)
        yield Server(name, issuer, proc.pid, "/oauth/token", issuer)
    finally:
        _stop(proc)


def ensure_oidc_provider() -> tuple[Path, str]:
    """oidc-provider's install directory and version (the interop tests' installer)."""
    tests_dir = str(REPO_ROOT / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from interop.op import OIDC_PROVIDER_VERSION, ensure_oidc_provider_installed  # noqa: PLC0415

    return ensure_oidc_provider_installed(), OIDC_PROVIDER_VERSION


@contextlib.contextmanager
def oidc_provider_server(
    client_secret: str, workdir: Path, *, alg: str = "RS256"
) -> Iterator[Server]:
    """npm oidc-provider issuing RFC 9068 JWTs for client_credentials (NODE_ENV=production)."""
    install_dir, _ = ensure_oidc_provider()
    script = install_dir / f"bench-{NODE_SCRIPT.name}"
    script.write_bytes(NODE_SCRIPT.read_bytes())
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"oidc-provider-{alg}.ready.json"
    ready.unlink(missing_ok=True)
    config = workdir / f"oidc-provider-{alg}.json"
    config.write_text(
        json.dumps(
            {
                "port": 0,
                "readyFile": str(ready),
                "clientId": CC_CLIENT_ID,
                "clientSecret": client_secret,
                "resource": RESOURCE,
                "scope": SCOPE,
                "alg": alg,
                "accessTokenTTL": 600,
            }
        )
    )
    log_path = workdir / f"oidc-provider-{alg}.log"
    env = {**os.environ, "NODE_ENV": "production"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["node", str(script), str(config)],
            cwd=install_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        found: dict[str, Any] = {}
        while not found:
            if proc.poll() is not None:
                msg = f"oidc-provider exited ({proc.returncode}):\n{log_path.read_text()}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"oidc-provider not ready within 30 s:\n{log_path.read_text()}"
                raise RuntimeError(msg)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                found = json.loads(ready.read_text())
            time.sleep(0.05)
        yield Server(f"oidc-provider {alg}", found["issuer"], proc.pid, "/token", found["issuer"])
    finally:
        _stop(proc)


async def _postgres(statement: str) -> None:
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_available() -> str | None:
    """``None`` when the local PostgreSQL answers, else why not."""
    try:
        asyncio.run(_postgres("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on 127.0.0.1:5432 (dropped on exit); yields its SQLAlchemy URL."""
    name = f"authbridge_bench_{secrets.token_hex(4)}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class Seeded:
    cc_secret: str
    password_secret: str
    usernames: tuple[str, ...]


async def _seed(store_url: str, users: int, cc_secret: str, password_secret: str) -> None:
    from authbridge.issuer._passwords import hash_password  # noqa: PLC0415
    from authbridge.issuer._secrets import hash_secret  # noqa: PLC0415
    from authbridge.store import ClientRecord, UserRecord, open_store  # noqa: PLC0415

    scopes = frozenset(SCOPE.split())
    # Real argon2id parameters (the library's defaults); one hash for every account.
    password_hash = hash_password(USER_PASSWORD)
    store = open_store(store_url)
    await store.start()
    try:
        now = time.time()
        await store.clients.add(
            ClientRecord(
                client_id=CC_CLIENT_ID,
                name="benchmark machine client",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(cc_secret, "client_secret"),
                grant_types=frozenset({"client_credentials"}),
                scopes=scopes,
                created_at=now,
            )
        )
        await store.clients.add(
            ClientRecord(
                client_id=PASSWORD_CLIENT_ID,
                name="benchmark first-party app",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(password_secret, "client_secret"),
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=scopes,
                created_at=now,
            )
        )
        for i in range(users):
            await store.users.add(
                UserRecord(
                    id=f"user-{i:04d}",
                    username=f"user{i:04d}",
                    password_hash=password_hash,
                    scopes=scopes,
                    created_at=now,
                )
            )
    finally:
        await store.aclose()


def seed(store_url: str, *, users: int, cc_secret: str, password_secret: str) -> Seeded:
    """Migrate the store and add the machine client, the first-party client and ``users``."""
    asyncio.run(_seed(store_url, users, cc_secret, password_secret))
    return Seeded(cc_secret, password_secret, tuple(f"user{i:04d}" for i in range(users)))


def basic(client_id: str, secret: str) -> str:
    """An ``Authorization: Basic`` value (RFC 6749 §2.3.1: form-encoded id and secret)."""
    raw = f"{client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def check_token_endpoint(server: Server, authorization: str, body: str) -> dict[str, Any]:
    """One request as the load will send it: 200 with a JWT access token, or an error."""
    response = httpx.post(
        f"{server.base_url}{server.token_path}",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": authorization,
        },
        timeout=10,
    )
    if response.status_code != 200:
        msg = f"{server.name}: POST token -> {response.status_code}: {response.text[:500]}"
        raise RuntimeError(msg)
    answer: dict[str, Any] = response.json()
    if answer.get("access_token", "").count(".") != 2:
        msg = f"{server.name}: the access token is not a JWT"
        raise RuntimeError(msg)
    return answer
