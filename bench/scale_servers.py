"""Processes of the scale benchmarks, each started on a free port and stopped by its PID.

* `issuer_instances`: ``n`` uvicorn processes of ``bench.token_app`` (one worker each) that
  are instances of ONE issuer: the same issuer URL, the same key-encryption key (the signing
  keys live encrypted in the shared store), the same database, and Redis when given;
* `login_instance`: one uvicorn process of ``bench.login_app`` behind a trusted proxy
  (``--proxy-headers --forwarded-allow-ips 127.0.0.1``: the client address is the
  ``X-Forwarded-For`` the load generator sends);
* `redis_server`: a private ``redis-server`` (no persistence), never the system one;
* `cpu_seconds`: user + system CPU of a set of processes, from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import PYTHON, REPO_ROOT, python_env
from bench.httpbench import _TICK, _stop, _wait_ready, free_port, server_flavour
from bench.token_servers import RESOURCE, new_kek


@dataclass(frozen=True)
class Instance:
    """One started uvicorn process."""

    base_url: str
    port: int
    pid: int


def _uvicorn(factory: str, port: int, *extra: str) -> list[str]:
    flavour = server_flavour()
    return [
        PYTHON, "-m", "uvicorn", "--factory", factory,
        "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--loop", flavour["loop"], "--http", flavour["http"], *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def issuer_instances(
    count: int, store_url: str, log_dir: Path, *, redis: str | None = None, tag: str = "pg"
) -> Iterator[list[Instance]]:
    """``count`` instances of one issuer on ``store_url`` (and ``redis``)."""
    ports = [free_port() for _ in range(count)]
    config = {
        "issuer": f"http://127.0.0.1:{ports[0]}",
        "store": store_url,
        "audience": RESOURCE,
        "algorithm": "ES256",
        "kek": new_kek(),
        "redis": redis,
    }
    env = python_env()
    env["AUTHBRIDGE_BENCH_TOKEN_APP"] = json.dumps(config)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        instances: list[Instance] = []
        for i, port in enumerate(ports):
            log_path = log_dir / f"scale-{tag}-{i}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    _uvicorn("bench.token_app:create_app", port),
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            # One at a time: the first creates the signing key, the others load it.
            _wait_ready(proc, f"http://127.0.0.1:{port}/open", log_path)
            instances.append(Instance(f"http://127.0.0.1:{port}", port, proc.pid))
        yield instances
    finally:
        for proc in procs:
            _stop(proc)


@contextlib.contextmanager
def login_instance(
    store_url: str, log_path: Path, *, redis: str | None = None, transaction_ttl: float = 600.0
) -> Iterator[Instance]:
    """One instance of ``bench.login_app`` behind a trusted proxy on 127.0.0.1."""
    port = free_port()
    env = python_env()
    env["AUTHBRIDGE_BENCH_LOGIN_APP"] = json.dumps(
        {
            "issuer": f"http://127.0.0.1:{port}",
            "store": store_url,
            "redis": redis,
            "kek": new_kek(),
            "transaction_ttl": transaction_ttl,
        }
    )
    argv = _uvicorn(
        "bench.login_app:create_app", port, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/open", log_path)
        yield Instance(f"http://127.0.0.1:{port}", port, proc.pid)
    finally:
        _stop(proc)


def redis_available() -> str | None:
    """``None`` when a private Redis can be started, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not found"
    try:
        import redis  # noqa: F401, PLC0415

        from authbridge.store._composite import open_store  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"ImportError: {exc}"
    return None


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A private ``redis-server`` on a free port (no RDB/AOF); its URL and PID."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes",
    ]  # fmt: skip
    log_path = workdir / f"redis-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        import redis  # noqa: PLC0415

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                msg = f"redis-server exited ({proc.returncode}):\n{log_path.read_text()}"
                raise RuntimeError(msg)
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                msg = f"redis-server not ready within 20 s:\n{log_path.read_text()}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        _stop(proc)


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each PID still running (gone ones left out)."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return found


def reaped_cpu_seconds(pid: int) -> float:
    """CPU seconds of the exited, reaped children of a process (``cutime`` + ``cstime``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / _TICK


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return int(fh.read().rpartition(")")[2].split()[1])


def rss_mib(pid: int) -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of a process, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return found
