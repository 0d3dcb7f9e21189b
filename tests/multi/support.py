"""The multi-instance tests' world: which store, its seed, and private servers to stop.

* `STORE_MODE`: ``postgres+redis`` (the default, what the suite runs) or ``postgres``
  (``AUTHBRIDGE_MULTI_STORE=postgres``: the SQL store's TTL tables hold the ephemeral
  state), and `require_services`, which skips (or, with ``AUTHBRIDGE_REQUIRE_POSTGRES=1``
  or ``AUTHBRIDGE_REQUIRE_REDIS=1``, fails) when a server is missing;
* `seed`: the schema and what the tests log in with (clients, a local user);
* `open_cluster`: a `Cluster` of the app on a fresh PostgreSQL database, its login client
  registered at the served `FakeIssuer`, instances started in parallel;
* `RedisServer` and `PostgresServer`: private servers on free ports, for the tests that
  stop and restart them (never the system ones).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from authbridge.issuer._kek import new_kek
from authbridge.issuer._passwords import hash_password
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, SQLStore, UserRecord
from authbridge.testing import ServedFakeIssuer
from store_support import REQUIRE_POSTGRES, fresh_postgres_database, run_async
from tcp_support import free_port

from .flows import (
    CLI,
    LOCAL_PASSWORD,
    LOCAL_USER,
    ROBOT,
    SPA,
    SPA_REDIRECT,
    UPSTREAM_PASSWORD,
    UPSTREAM_USER,
)
from .harness import Cluster, die_with_parent, sql, stop_process

STORE_MODE = os.environ.get("AUTHBRIDGE_MULTI_STORE", "postgres+redis")
"""``postgres+redis`` or ``postgres``: where the instances keep ephemeral state."""

REDIS_URL = os.environ.get("AUTHBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("AUTHBRIDGE_REQUIRE_REDIS") == "1" or REQUIRE_POSTGRES

ISSUER_OPTIONS: dict[str, Any] = {
    "access_token_ttl": 300.0,
    "refresh_reuse_interval": 2.0,
    # Instances reload their keys every jwks_max_age / 4 = 1 s.
    "jwks_max_age": 4.0,
    "password_failures_per_account": 5,
    "password_window": 120.0,
    # Every test client is 127.0.0.1: the per-address limit would count them all.
    "password_attempts_per_address": 100_000,
}
"""Short intervals, so that the tests can wait them out."""

RATE_LIMITED_USER = "dave"
RATE_LIMITED_PASSWORD = "dave-local-password-0123"  # a fixed test credential


def _fail_or_skip(message: str, required: bool) -> None:
    if required:
        pytest.fail(message)
    pytest.skip(message)


def require_redis_store() -> None:
    """Skip (or fail, when Redis is required) without authbridge's Redis store and redis-py."""
    for module in ("authbridge.store._composite", "redis"):
        if importlib.util.find_spec(module) is None:
            _fail_or_skip(f"{module} is not importable (the redis extra)", REQUIRE_REDIS)


def redis_problem(url: str = REDIS_URL) -> str | None:
    """``None`` when Redis answers PING at ``url``, else why not."""
    host, _, rest = url.removeprefix("redis://").partition(":")
    port = int(rest.partition("/")[0] or 6379)
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                return "no PONG"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_redis() -> None:
    require_redis_store()
    problem = redis_problem()
    if problem is not None:
        _fail_or_skip(
            f"Redis is not usable at {REDIS_URL} ({problem}); start it, e.g. with scripts/test, "
            "or run with AUTHBRIDGE_MULTI_STORE=postgres",
            REQUIRE_REDIS,
        )


def redis_config(url: str | None = None) -> dict[str, Any]:
    """The ``redis`` and ``redis_prefix`` settings: a prefix of this run only."""
    return {
        "redis": url or REDIS_URL,
        "redis_prefix": f"authbridge-multi:{os.getpid()}:{secrets.token_hex(4)}:",
    }


def store_config() -> dict[str, Any]:
    """The Redis settings of `STORE_MODE` (none for ``postgres``)."""
    if STORE_MODE == "postgres":
        return {}
    if STORE_MODE != "postgres+redis":
        raise ValueError(f"AUTHBRIDGE_MULTI_STORE is postgres or postgres+redis, not {STORE_MODE}")
    require_redis()
    return redis_config()


def pending_logins(cluster: Cluster) -> tuple[int, int]:
    """Login transactions kept now: (in PostgreSQL's one-time table, in Redis)."""
    in_sql = sql(
        cluster.store_url, "SELECT count(*) AS n FROM authbridge_one_time WHERE kind = 'login'"
    )[0]["n"]
    in_redis = 0
    if cluster.config.get("redis"):
        import redis  # noqa: PLC0415 - the redis extra

        client = redis.Redis.from_url(cluster.config["redis"])
        try:
            pattern = cluster.config["redis_prefix"] + "ot:login:*"
            in_redis = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
    return int(in_sql), in_redis


# --- the store's content ------------------------------------------------------------------


async def _seed(url: str) -> str:
    store = SQLStore(url)
    await store.start()  # the schema, before any instance starts
    robot_secret = new_secret(CLIENT_SECRET_PREFIX)
    try:
        for client in (
            ClientRecord(
                SPA,
                name="The SPA",
                auth_method="none",
                grant_types=frozenset({"authorization_code", "refresh_token"}),
                scopes=frozenset({"items:read", "items:write"}),
                redirect_uris=(SPA_REDIRECT,),
            ),
            ClientRecord(
                CLI,
                name="The command line",
                auth_method="none",
                grant_types=frozenset({"password", "refresh_token"}),
                scopes=frozenset({"items:read", "items:write"}),
            ),
            ClientRecord(
                ROBOT,
                name="A machine",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(robot_secret, "client_secret"),
                grant_types=frozenset({"client_credentials"}),
                scopes=frozenset({"items:read"}),
            ),
        ):
            await store.clients.add(client)
        for username, password in (
            (LOCAL_USER, LOCAL_PASSWORD),
            (RATE_LIMITED_USER, RATE_LIMITED_PASSWORD),
        ):
            await store.users.add(
                UserRecord(
                    id=f"user-{username}",
                    username=username,
                    password_hash=hash_password(password),
                    scopes=frozenset({"items:read", "items:write"}),
                )
            )
    finally:
        await store.aclose()
    return robot_secret


def seed(url: str) -> str:
    """Create the schema, the clients and the local users; the robot's client secret."""
    return run_async(lambda: _seed(url))


def upstream(fake: ServedFakeIssuer) -> ServedFakeIssuer:
    """The package's fake provider, with the user who logs in there."""
    if UPSTREAM_USER not in fake.http.flow.users:
        fake.add_user(UPSTREAM_USER, UPSTREAM_PASSWORD, email="carol@example.test", name="Carol")
    return fake


@contextlib.contextmanager
def open_cluster(
    fake: ServedFakeIssuer,
    log_dir: Path,
    names: Sequence[str],
    *,
    store_url: str | None = None,
    ephemeral: dict[str, Any] | None = None,
    **options: Any,
) -> Iterator[Cluster]:
    """The app as ``names`` on a fresh database (or ``store_url``), started in parallel.

    ``ephemeral``: the Redis settings (`store_config` by default); ``options`` go into
    the configuration (``control=``, ``issuer_options=``...).
    """
    with contextlib.ExitStack() as stack:
        url = store_url or stack.enter_context(fresh_postgres_database("authbridge_multi"))
        robot_secret = seed(url)
        config: dict[str, Any] = {
            "store": url,
            "kek": new_kek(),
            "issuer_options": ISSUER_OPTIONS,
            **(store_config() if ephemeral is None else ephemeral),
            **options,
        }
        cluster = Cluster(config, log_dir, robot_secret=robot_secret)
        stack.callback(cluster.close)
        client_id = f"multi-{secrets.token_hex(4)}"
        secret = upstream(fake).add_client(
            client_id, redirect_uris=[f"{cluster.origin}/oauth/callback"]
        )
        cluster.config["provider"] = {
            "issuer": fake.issuer,
            "audience": fake.audience,
            "client_id": client_id,
            "client_secret": secret,
        }
        cluster.launch(names)
        yield cluster


# --- private servers ----------------------------------------------------------------------


def _answers(port: int, probe: bytes, *expected: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(probe)
            return sock.recv(64).startswith(expected)
    except OSError:
        return False


class RedisServer:
    """``redis-server`` of this test alone, on a free port, without persistence."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, on the same port); return once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            _fail_or_skip("redis-server is not installed", REQUIRE_REDIS)
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads depend on it
            )
        deadline = time.monotonic() + timeout
        while not _answers(self.port, b"PING\r\n", b"+PONG", b"-NOAUTH"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis-server did not start on {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


class PostgresServer:
    """A PostgreSQL cluster of this test alone (initdb in a temporary directory, run as
    the ``postgres`` user), on a free port; stopped and started by its postmaster's PID."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found or shutil.which("runuser") is None or os.geteuid() != 0:
            _fail_or_skip(
                "a private PostgreSQL needs /usr/lib/postgresql/*/bin, runuser and root",
                REQUIRE_POSTGRES,
            )
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="authbridge-multi-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        """Start (again, on the same port and data); return once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
            "-w", "-t", "30", "-o", options, "start",
        )  # fmt: skip

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT to the postmaster, by its PID): every connection is cut."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 2)
        deadline = time.monotonic() + timeout
        # The postmaster removes its PID file last (it is not our child: no reaping here).
        while (self.data / "postmaster.pid").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the private PostgreSQL did not stop")
            time.sleep(0.02)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
