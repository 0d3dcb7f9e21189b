"""A private PostgreSQL server for the scale benchmarks, and databases on it.

Seven uvicorn instances, each with a connection pool of up to 20, do not fit beside other
people's work in a shared server's ``max_connections`` (100 by default): the scale benchmarks
run their own cluster, ``initdb`` in a temporary directory, on a free port, with PostgreSQL's
default settings (durability included: ``fsync`` and ``synchronous_commit`` on) except
``max_connections`` (300). Run as the ``postgres`` user through ``runuser`` when this is root.
Stopped by its postmaster's PID (fast shutdown) and removed afterwards.

Without the binaries (``/usr/lib/postgresql/*/bin`` or ``pg_config --bindir``), the local
server on 127.0.0.1:5432 is used instead, as the token benchmark does.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.httpbench import free_port
from bench.token_servers import POSTGRES_ADMIN_URL

MAX_CONNECTIONS = 300


@dataclass(frozen=True)
class Cluster:
    """Where databases are created: an admin URL (asyncpg form), and the postmaster's PID
    when the cluster is this benchmark's own."""

    admin_url: str
    postmaster: int | None
    settings: dict[str, str]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    config = shutil.which("pg_config")
    if config is None:
        return None
    bindir = subprocess.run([config, "--bindir"], capture_output=True, text=True, check=False)
    path = Path(bindir.stdout.strip())
    return path if (path / "initdb").exists() else None


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


async def _execute(admin_url: str, statement: str) -> None:
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _settings(admin_url: str) -> dict[str, str]:
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            [
                "server_version",
                "max_connections",
                "shared_buffers",
                "fsync",
                "synchronous_commit",
                "autovacuum",
            ],
        )
    finally:
        await connection.close()
    return {row["name"]: row["setting"] for row in rows}


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """This benchmark's own PostgreSQL cluster (or the local server, see the module)."""
    bindir = _bindir()
    usable = bindir is not None and (os.geteuid() != 0 or shutil.which("runuser") is not None)
    if not usable:
        yield Cluster(POSTGRES_ADMIN_URL, None, asyncio.run(_settings(POSTGRES_ADMIN_URL)))
        return
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="authbridge-bench-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(
            _as_postgres([
                str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-instructions",
            ]),
            check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        port = free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} "
            f"-c max_connections={MAX_CONNECTIONS}"
        )
        subprocess.run(
            _as_postgres([
                str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"),
                "-w", "-t", "60", "-o", options, "start",
            ]),
            check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        postmaster = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        try:
            yield Cluster(admin, postmaster, asyncio.run(_settings(admin)))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGINT)  # fast shutdown
            deadline = time.monotonic() + 30
            while (data / "postmaster.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def database(where: Cluster) -> Iterator[str]:
    """A fresh database in ``where`` (dropped on exit); yields its SQLAlchemy URL."""
    name = f"authbridge_bench_{secrets.token_hex(4)}"
    asyncio.run(_execute(where.admin_url, f'CREATE DATABASE "{name}"'))
    try:
        base = where.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        asyncio.run(_execute(where.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def process_cpu(postmaster: int) -> tuple[dict[int, float], float]:
    """CPU seconds of the postmaster and each of its live children, and of its exited ones."""
    from bench.scale_servers import cpu_seconds, reaped_cpu_seconds  # noqa: PLC0415

    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                parent = int(fh.read().rpartition(")")[2].split()[1])
        except OSError:
            continue
        if parent == postmaster:
            children.append(int(entry))
    return cpu_seconds([postmaster, *children]), reaped_cpu_seconds(postmaster)
