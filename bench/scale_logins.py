"""Abandoned logins: the memory of one instance after 100,000 login starts never completed.

One uvicorn instance of ``bench.login_app`` (browser login at GitHub, one worker) on a fresh
database of the benchmark's PostgreSQL cluster, and, when ``authbridge.store._composite``
exists, a second one with Redis for the ephemeral aggregates (a private ``redis-server``).
``wrk -t1`` sends
``GET /auth/login/github`` (``login_start.lua``), each request from an address of its own in
``X-Forwarded-For`` (the instance trusts 127.0.0.1 as its proxy), so the per-address limit on
login starts refuses none: every request stores a login transaction and a rate-limit window
and is answered 303 to github.com, and none is ever completed. Recorded:

* the instance's RSS (``VmRSS``) after start-up and a warm-up of 500 logins, after the run,
  and its peak (``VmHWM``): ``login_transactions_peak_rss_mib`` is that peak, PostgreSQL;
* the store's rows (PostgreSQL) or keys (Redis) before and after the run, and after expiry:
  for PostgreSQL, ``store.purge`` run as of the moment every transaction and window has ended
  (the instances run it every 10 minutes); for Redis, the keys' remaining TTL (Redis drops
  them itself, ``gc_grace`` after their logical end, without a purge).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import scale_db, scale_pg
from bench.common import BENCH_DIR, OUT_DIR
from bench.httpbench import parse_wrk
from bench.scale_servers import (
    Instance,
    cpu_seconds,
    login_instance,
    redis_available,
    redis_server,
    rss_mib,
)

LOGIN_SCRIPT = BENCH_DIR / "login_start.lua"
WARMUP_LOGINS = 500
TRANSACTION_TTL = 600.0  # LoginSettings' default
WINDOW = 60.0  # LOGIN_STARTS_WINDOW
TRACE_INTERVAL = 10.0  # seconds between two samples of the instance's RSS


def send_logins(
    instance: Instance, count: int, connections: int, workdir: Path, *, offset: int = 0
) -> dict[str, Any]:
    """``count`` abandoned logins through wrk; its figures and the instance's CPU."""
    done = workdir / f"logins-done-{offset}"
    done.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(BENCH_LOGINS=str(count), BENCH_ADDRESS_OFFSET=str(offset), BENCH_DONE=str(done))
    argv = [
        "wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", "10s", "--latency",
        "-s", str(LOGIN_SCRIPT), f"{instance.base_url}/auth/login/github",
    ]  # fmt: skip
    cpu0 = cpu_seconds([instance.pid])[instance.pid]
    started = time.perf_counter()
    trace: list[dict[str, float]] = []
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # wrk waits out its -d duration even once the script has stopped its thread.
        next_sample = started
        while not done.exists() and proc.poll() is None:
            now = time.perf_counter()
            if now >= next_sample:
                next_sample = now + TRACE_INTERVAL
                trace.append(
                    {"s": round(now - started, 1), "rss_mib": rss_mib(instance.pid)["VmRSS"]}
                )
            time.sleep(0.2)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - started
    text = out.decode()
    if not done.exists():
        msg = f"wrk ended before {count} logins ({proc.returncode}):\n{text}\n{err.decode()}"
        raise RuntimeError(msg)
    result = parse_wrk(text)
    if result["non_2xx"] or result["socket_errors"]:
        msg = f"logins: {result['non_2xx']} answers not 303, {result['socket_errors']} errors"
        raise RuntimeError(msg)
    cpu = cpu_seconds([instance.pid])[instance.pid] - cpu0
    result["seconds"] = round(wall, 1)
    result["logins_per_s"] = round(result["requests"] / wall, 1)
    result["instance_cpu_us_per_login"] = round(cpu / max(1, result["requests"]) * 1e6, 1)
    # Logins answered by each sample, at the run's mean rate (wrk reports no progress).
    rate = result["requests"] / wall
    result["rss_trace"] = [
        {"logins": round(point["s"] * rate, -2), "rss_mib": point["rss_mib"]} for point in trace
    ]
    return result


async def _redis_keys(url: str) -> dict[str, Any]:
    import redis.asyncio as aioredis  # noqa: PLC0415

    client = aioredis.Redis.from_url(url)
    try:
        total = int(await client.dbsize())
        kinds: dict[str, int] = {}
        ttls: list[int] = []
        async for key in client.scan_iter(count=1000):
            name = key.decode("utf-8", "replace")
            kind = ":".join(name.split(":")[:3])
            kinds[kind] = kinds.get(kind, 0) + 1
            if len(ttls) < 200:
                ttls.append(int(await client.pttl(key)))
        info = await client.info("memory")
    finally:
        await client.aclose()
    found: dict[str, Any] = {"keys": total, "by_prefix": kinds}
    if ttls:
        found["ttl_s_sample"] = {"min": min(ttls) / 1000, "max": max(ttls) / 1000}
    found["used_memory_mib"] = round(int(info["used_memory"]) / 2**20, 1)
    return found


async def _purge(url: str, redis: str | None, at: float) -> int:
    from authbridge.store import open_store  # noqa: PLC0415

    if redis is not None:
        from authbridge.store._composite import open_store as open_composite  # noqa: PLC0415

        store = open_composite(url, redis=redis, migrate=False)
    else:
        store = open_store(url, migrate=False)
    await store.start()
    try:
        return int(await store.purge(at))
    finally:
        await store.aclose()


def one_variant(
    count: int,
    connections: int,
    workdir: Path,
    pg: scale_pg.Cluster,
    *,
    redis: str | None,
    tag: str,
) -> dict[str, Any]:
    with scale_pg.database(pg) as url:
        asyncio.run(_migrate(url))
        with login_instance(url, OUT_DIR / f"logins-{tag}.log", redis=redis) as instance:
            send_logins(instance, WARMUP_LOGINS, connections, workdir, offset=10_000_000)
            baseline = rss_mib(instance.pid)
            before = asyncio.run(_counts(url, redis))
            print(
                f"  {tag}: {count:,} abandoned logins (RSS after warm-up {baseline['VmRSS']} MiB)",
                flush=True,
            )
            load = send_logins(instance, count, connections, workdir)
            after_run = rss_mib(instance.pid)
            after = asyncio.run(_counts(url, redis))
            purged = asyncio.run(_purge(url, redis, time.time() + TRANSACTION_TTL + WINDOW + 1))
            after_purge = asyncio.run(_counts(url, redis))
            final = rss_mib(instance.pid)
    print(
        f"    {load['logins_per_s']} logins/s, RSS {after_run['VmRSS']} MiB "
        f"(peak {after_run['VmHWM']} MiB); store {after} -> purged {purged}",
        flush=True,
    )
    return {
        "logins": load["requests"],
        "load": load,
        "rss_mib": {
            "after_warmup": baseline["VmRSS"],
            "after_logins": after_run["VmRSS"],
            "peak": after_run["VmHWM"],
            "after_purge": final["VmRSS"],
        },
        "store_before": before,
        "store_after_logins": after,
        "purged_rows": purged,
        "store_after_expiry": after_purge,
    }


async def _migrate(url: str) -> None:
    from authbridge.store import open_store  # noqa: PLC0415

    store = open_store(url)
    await store.start()
    await store.aclose()


async def _counts(url: str, redis: str | None) -> dict[str, Any]:
    rows = await scale_db.row_counts(url)
    found: dict[str, Any] = {
        "one_time_login_rows": rows.get("one_time:login", 0),
        "rate_limit_rows": rows["rate_limits"],
    }
    if redis is not None:
        found["redis"] = await _redis_keys(redis)
    return found


def run(cfg: Any, workdir: Path, pg: scale_pg.Cluster) -> dict[str, Any]:
    """The PostgreSQL variant, then the Redis one when it can run."""
    results: dict[str, Any] = {
        "transaction_ttl_s": TRANSACTION_TTL,
        "connections": cfg.login_connections,
        "warmup_logins": WARMUP_LOGINS,
        "route": "GET /auth/login/github",
    }
    results["postgres"] = one_variant(
        cfg.logins, cfg.login_connections, workdir, pg, redis=None, tag="postgres"
    )
    why_no_redis = redis_available()
    results["redis_unavailable"] = why_no_redis
    if why_no_redis is None:
        with redis_server(workdir / "redis-logins") as (redis_url, _):
            results["redis"] = one_variant(
                cfg.logins, cfg.login_connections, workdir, pg, redis=redis_url, tag="redis"
            )
    return results
