"""Scale: refresh rotation on 3 instances against 1, with a million families against a
thousand, abandoned logins, and minting a delegated token; all in one run.

Every server is its own process on 127.0.0.1, every database a fresh one on the benchmark's
own PostgreSQL cluster (``bench/scale_pg.py``), Redis a private ``redis-server``; all are
stopped and removed afterwards:

* ``scale_refresh_ratio_3_vs_1_instances``: three uvicorn instances (one worker each) of one
  issuer (same issuer URL, same key-encryption key, one database) against one of them alone,
  10 connections per instance (the store's pool size), under one ``wrk`` whose threads each
  target an instance (``refresh_spread.lua``), with as many fresh refresh families as
  connections: every family has one request in flight at most and every request is a
  rotation (never the benign-race rule). Fresh families for every run (a run cut off by wrk
  loses the tokens in flight), created through the store: no password hashing anywhere. The
  ratio is the median of per-round ratios of req/s. ``postgres_1_same_load`` puts the
  3-instance load (30 connections) on the one instance. Measured on PostgreSQL alone and, when
  ``authbridge.store._composite`` exists, with Redis for the ephemeral aggregates too.
  ``ratio_3_vs_1_ceiling``: the same ratio on a machine doing nothing else, estimated from
  the CPU each run spent per request (`_quiet_rps`);
* ``refresh_p99_ratio_1m_vs_1k_families``: one instance on a database holding 1,000,000
  bulk-loaded refresh families (``bench/scale_db.py``) against one on a database holding
  1,000, the same load on each; p99 from wrk's latency distribution, the ratio the median of
  per-round ratios. The refresh statements' plans are recorded (``EXPLAIN (ANALYZE,
  BUFFERS)`` on the big database);
* ``login_transactions_peak_rss_mib``: see ``bench/scale_logins.py``;
* ``delegation_issue_us``: see ``bench/delegation.py``.

Every run records where the 2 cores went: the instances, PostgreSQL (every process of the
private cluster, backends that ended during the run included), wrk, this process, and
everything else on the machine ("other": other people's work, which makes a run *disturbed*
above 0.15 of a core), and how many connections the instances' pools opened.

``python -m bench.scale`` prints the JSON; ``python -m bench --only scale --merge`` records it
in ``bench/results.json`` and ``docs/benchmarks.md`` beside the other sections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import scale_db, scale_pg
from bench.common import BENCH_DIR, OUT_DIR, median
from bench.httpbench import _machine_cpu_s, _own_cpu_s, parse_wrk
from bench.scale_servers import (
    Instance,
    cpu_seconds,
    issuer_instances,
    parent_pid,
    reaped_cpu_seconds,
    redis_available,
    redis_server,
)
from bench.token_servers import PASSWORD_CLIENT_ID, basic

SPREAD_SCRIPT = BENCH_DIR / "refresh_spread.lua"
DISTURBED_CORES = 0.15


@dataclass(frozen=True)
class ScaleConfig:
    duration_s: int = 5
    warmup_s: int = 2
    rounds: int = 5  # seven scenarios, on a machine other people use meanwhile
    instances: int = 3
    connections_per_instance: int = 10  # the store's pool size: no connection churn
    small_families: int = 1_000
    large_families: int = 1_000_000
    logins: int = 100_000
    login_connections: int = 16
    delegation_iterations: int = 200
    delegation_repeats: int = 5


QUICK = ScaleConfig(
    duration_s=2,
    warmup_s=1,
    rounds=1,
    large_families=100_000,
    logins=5_000,
    delegation_iterations=50,
    delegation_repeats=3,
)


@dataclass
class Target:
    """A scenario: instances to load (one wrk thread each, round-robin) on one database."""

    instances: list[Instance]
    url: str
    threads: int
    connections: int
    secret: str
    postmaster: int | None = None  # the private cluster's: all of its processes are ours
    first_user: int = 0


# -- one wrk run, with the CPU split ---------------------------------------------------------


def _pg_cpu(target: Target, known: Sequence[int] = ()) -> dict[str, Any]:
    """CPU seconds of PostgreSQL's processes, of its exited backends (connections a pool
    closed took their CPU time with them, into the postmaster's reaped children's), and the
    database's counters. On the benchmark's own cluster every process is counted; on a
    shared server only this database's backends and the server's own processes are (and the
    reaped children of everyone's)."""
    found = asyncio.run(scale_db.snapshot(target.url))
    if target.postmaster is not None:
        cpu, reaped = scale_pg.process_cpu(target.postmaster)
    else:
        postmaster = parent_pid(found["server"][0])
        pids = [*found["backends"], *found["server"], postmaster, *known]
        cpu, reaped = cpu_seconds(pids), reaped_cpu_seconds(postmaster)
    return {"cpu": cpu, "reaped": reaped, "stats": found["stats"]}


def _chains(target: Target, workdir: Path, key: str) -> Path:
    """Fresh families, one per connection, split over the threads' files; the files' prefix."""
    tokens = asyncio.run(
        scale_db.chains(target.url, target.connections, first_user=target.first_user)
    )
    target.first_user += target.connections
    prefix = workdir / f"chains-{key}"
    for thread in range(target.threads):
        mine = tokens[thread :: target.threads]
        Path(f"{prefix}-{thread + 1}").write_text("\n".join(mine) + "\n", encoding="ascii")
    return prefix


def refresh_run(target: Target, duration_s: int, workdir: Path, key: str) -> dict[str, Any]:
    """One wrk run of rotation chains against ``target``, with where the CPU went."""
    prefix = _chains(target, workdir, key)
    first = target.instances[0]
    argv = [
        "wrk", f"-t{target.threads}", f"-c{target.connections}", f"-d{duration_s}s",
        "--timeout", "10s", "--latency", "-s", str(SPREAD_SCRIPT),
        f"{first.base_url}/oauth/token", "--", basic(PASSWORD_CLIENT_ID, target.secret),
    ]  # fmt: skip
    env = dict(os.environ)
    env["BENCH_PORTS"] = ",".join(str(i.port) for i in target.instances)
    env["BENCH_TOKENS"] = str(prefix)
    instance_pids = list(dict.fromkeys(i.pid for i in target.instances))
    pg0 = _pg_cpu(target)
    inst_before = cpu_seconds(instance_pids)
    busy0, steal0 = _machine_cpu_s()
    own0, wrk0 = _own_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration_s + 60, env=env
    )
    wall = time.perf_counter() - started
    busy1, steal1 = _machine_cpu_s()
    own1, wrk1 = _own_cpu_s()
    inst_after = cpu_seconds(instance_pids)
    pg1 = _pg_cpu(target, list(pg0["cpu"]))
    if proc.returncode != 0:
        msg = f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    result = parse_wrk(proc.stdout)
    if result["non_2xx"] or result["socket_errors"]:
        msg = (
            f"{key}: {result['non_2xx']} non-2xx responses, {result['socket_errors']} socket "
            f"errors (see {OUT_DIR}/scale-*.log); first refusals:\n{proc.stderr[-3000:]}"
        )
        raise RuntimeError(msg)
    inst = sum(inst_after[p] - inst_before.get(p, 0.0) for p in inst_after)
    # A backend that exited during the run is in the reaped total with its whole life
    # (warm-up included), and in neither dictionary: counted once, slightly over.
    pg = sum(cpu - pg0["cpu"].get(p, 0.0) for p, cpu in pg1["cpu"].items())
    pg += pg1["reaped"] - pg0["reaped"]
    wrk, own = wrk1 - wrk0, own1 - own0
    busy = busy1 - busy0
    result["cpu_cores"] = {
        "instances": round(inst / wall, 3),
        "postgres": round(pg / wall, 3),
        "wrk": round(wrk / wall, 3),
        "bench": round(own / wall, 3),
        "other": round(max(0.0, busy - inst - pg - wrk - own) / wall, 3),
        "machine_busy": round(busy / wall, 3),
        "steal": round((steal1 - steal0) / wall, 3),
    }
    requests = max(1, result["requests"])
    result["cpu_us_per_request"] = {
        "instances": round(inst / requests * 1e6, 1),
        "postgres": round(pg / requests * 1e6, 1),
        "wrk": round(wrk / requests * 1e6, 1),
    }
    # A backend that ends reports its counters at once: closed connections are all in,
    # the first snapshot's own among them.
    opened = pg1["stats"]["sessions"] - pg0["stats"]["sessions"] - 1
    result["postgres_sessions_opened"] = int(opened)
    result["per_instance_cpu_cores"] = [
        round((inst_after.get(p, 0.0) - inst_before.get(p, 0.0)) / wall, 3)
        for p in instance_pids
        if p in inst_after
    ]
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rps": round(median(r["rps"] for r in runs), 1),
        "requests": sum(r["requests"] for r in runs),
    }
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_avg_ms"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = round(median(values), 3)
    out["cpu_cores"] = {
        key: round(median(r["cpu_cores"][key] for r in runs), 3) for key in runs[0]["cpu_cores"]
    }
    out["cpu_us_per_request"] = {
        key: round(median(r["cpu_us_per_request"][key] for r in runs), 1)
        for key in runs[0]["cpu_us_per_request"]
    }
    sessions = sum(r["postgres_sessions_opened"] for r in runs)
    out["postgres_sessions_per_1k_requests"] = round(sessions / out["requests"] * 1000, 2)
    out["rounds"] = runs
    return out


def rotate(targets: dict[str, Target], cfg: ScaleConfig, workdir: Path) -> dict[str, Any]:
    """Warm every target up, then ``rounds`` rounds of all of them, the order rotated."""
    keys = list(targets)
    for key in keys:
        refresh_run(targets[key], cfg.warmup_s, workdir, key)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for r in range(cfg.rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            runs[key].append(refresh_run(targets[key], cfg.duration_s, workdir, key))
        print(
            f"  round {r + 1}/{cfg.rounds}: "
            + ", ".join(
                f"{k} {runs[k][-1]['rps']:.0f} req/s p99 {runs[k][-1]['latency_p99_ms']:.1f} ms"
                for k in keys
            ),
            flush=True,
        )
    return {key: _summary(found) for key, found in runs.items()}


def _ratio(
    runs: dict[str, dict[str, Any]], top: str, bottom: str, field: str = "rps"
) -> float | None:
    if top not in runs or bottom not in runs:
        return None
    pairs = zip(runs[top]["rounds"], runs[bottom]["rounds"], strict=True)
    return round(median(a[field] / b[field] for a, b in pairs), 3)


def _quiet_rps(run: dict[str, Any], instances: int) -> float:
    """What a run's processes could answer per second with both cores to themselves: every
    instance is one thread (at most one core each), and all of them, PostgreSQL and wrk
    share 2 cores (CPU spent per request, as measured in the run)."""
    per = run["cpu_us_per_request"]
    total = per["instances"] + per["postgres"] + per["wrk"]
    return min(instances * 1e6 / per["instances"], 2e6 / total)


def _ceiling(runs: dict[str, dict[str, Any]], top: str, bottom: str) -> float | None:
    """``top`` over ``bottom`` on a machine doing nothing else, from the CPU each spent per
    request (median of per-round figures): `_quiet_rps` of each."""
    if top not in runs or bottom not in runs:
        return None
    ratios = [
        _quiet_rps(a, len(a["per_instance_cpu_cores"]))
        / _quiet_rps(b, len(b["per_instance_cpu_cores"]))
        for a, b in zip(runs[top]["rounds"], runs[bottom]["rounds"], strict=True)
    ]
    return round(median(ratios), 3)


# -- the whole run ---------------------------------------------------------------------------


def _plans(url: str) -> dict[str, Any]:
    token = asyncio.run(scale_db.chains(url, 1, first_user=999))[0]
    plans = asyncio.run(scale_db.explain(url, token))
    return {
        "plans": plans,
        "key_lines": {name: scale_db.key_lines(lines) for name, lines in plans.items()},
    }


def refresh_section(cfg: ScaleConfig, workdir: Path, pg: scale_pg.Cluster) -> dict[str, Any]:
    why_no_redis = redis_available()
    secret = secrets.token_urlsafe(32)
    results: dict[str, Any] = {"config": asdict(cfg), "redis_unavailable": why_no_redis}
    with contextlib.ExitStack() as stack:
        dbs = {
            name: stack.enter_context(scale_pg.database(pg))
            for name in ("instances", "families_1k", "families_1m")
            + (("instances_redis",) if why_no_redis is None else ())
        }
        loads: dict[str, Any] = {}
        for name, url in dbs.items():
            count = cfg.large_families if name == "families_1m" else cfg.small_families
            print(f"  {name}: migrate, seed, bulk-load {count:,} families", flush=True)
            loads[name] = asyncio.run(scale_db.prepare(url, families=count, client_secret=secret))
            print(f"    {loads[name]['load_s']} s ({loads[name]['database_mib']} MiB)", flush=True)
        results["loads"] = loads
        results["plans_1m"] = _plans(dbs["families_1m"])
        for name, lines in results["plans_1m"]["key_lines"].items():
            print(f"  plan {name}: " + " | ".join(lines), flush=True)

        three = stack.enter_context(
            issuer_instances(cfg.instances, dbs["instances"], OUT_DIR, tag="pg")
        )
        small = stack.enter_context(issuer_instances(1, dbs["families_1k"], OUT_DIR, tag="1k"))
        large = stack.enter_context(issuer_instances(1, dbs["families_1m"], OUT_DIR, tag="1m"))

        per = cfg.connections_per_instance

        def target(instances: list[Instance], url: str, connections: int) -> Target:
            threads = len(instances) if connections > per else 1
            return Target(instances, url, threads, connections, secret, pg.postmaster)

        every = per * cfg.instances
        targets = {
            "postgres_1": target(three[:1], dbs["instances"], per),
            "postgres_3": target(three, dbs["instances"], every),
            "postgres_1_same_load": target(three[:1] * cfg.instances, dbs["instances"], every),
            "families_1k": target(small, dbs["families_1k"], per),
            "families_1m": target(large, dbs["families_1m"], per),
        }
        if why_no_redis is None:
            redis_url, redis_pid = stack.enter_context(redis_server(workdir / "redis"))
            results["redis_pid"] = redis_pid
            rd = stack.enter_context(
                issuer_instances(
                    cfg.instances, dbs["instances_redis"], OUT_DIR, redis=redis_url, tag="redis"
                )
            )
            targets["redis_1"] = target(rd[:1], dbs["instances_redis"], per)
            targets["redis_3"] = target(rd, dbs["instances_redis"], every)
        else:
            print(f"  Redis rows skipped: {why_no_redis}", flush=True)
        # Distinct subjects per target (the accounts are shared by every database's seed).
        for i, target in enumerate(targets.values()):
            target.first_user = i * 100
        print(
            f"  refresh chains: {per} connections per instance (one family each), "
            f"{every} on one instance for the same load",
            flush=True,
        )
        runs = rotate(targets, cfg, workdir)
        results["scenarios"] = runs
        results["rows_at_end"] = {
            name: asyncio.run(scale_db.row_counts(url)) for name, url in dbs.items()
        }
        results["database_stats"] = {
            name: asyncio.run(scale_db.snapshot(url))["stats"] for name, url in dbs.items()
        }
    results["ratio_3_vs_1"] = _ratio(runs, "postgres_3", "postgres_1")
    results["ratio_3_vs_1_ceiling"] = _ceiling(runs, "postgres_3", "postgres_1")
    results["ratio_3_vs_1_redis_ceiling"] = _ceiling(runs, "redis_3", "redis_1")
    results["ratio_3_vs_1_redis"] = _ratio(runs, "redis_3", "redis_1")
    results["p99_ratio_1m_vs_1k"] = _ratio(runs, "families_1m", "families_1k", "latency_p99_ms")
    other = max(r["cpu_cores"]["other"] for s in runs.values() for r in s["rounds"])
    results["max_other_cpu_cores"] = other
    results["disturbed"] = other > DISTURBED_CORES
    return results


def run(cfg: ScaleConfig | None = None, *, parts: Sequence[str] = ("refresh",)) -> dict[str, Any]:
    cfg = cfg or ScaleConfig()
    if shutil.which("wrk") is None:
        msg = "wrk not found: install it (apt-get install -y wrk) or use bench/run.sh"
        raise RuntimeError(msg)
    OUT_DIR.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="authbridge-scale-") as tmp,
        scale_pg.cluster() as pg,
    ):
        workdir = Path(tmp)
        results["postgres"] = {"private_cluster": pg.postmaster is not None, **pg.settings}
        if "refresh" in parts:
            results["refresh"] = refresh_section(cfg, workdir, pg)
        if "logins" in parts:
            from bench import scale_logins  # noqa: PLC0415

            results["logins"] = scale_logins.run(cfg, workdir, pg)
        if "delegation" in parts:
            from bench import delegation  # noqa: PLC0415

            results["delegation"] = delegation.run(
                cfg.delegation_iterations, cfg.delegation_repeats, workdir, pg
            )
    return results


PARTS = ("refresh", "logins", "delegation")


def headline(scale: dict[str, Any]) -> dict[str, Any]:
    """The headline keys of the scale section (``bench/results.json``'s top level)."""
    out: dict[str, Any] = {}
    if refresh := scale.get("refresh"):
        runs = refresh["scenarios"]
        out["scale_refresh_ratio_3_vs_1_instances"] = refresh["ratio_3_vs_1"]
        out["scale_refresh_ratio_3_vs_1_ceiling_2_cores"] = refresh["ratio_3_vs_1_ceiling"]
        if refresh.get("ratio_3_vs_1_redis") is not None:
            out["scale_refresh_ratio_3_vs_1_instances_redis"] = refresh["ratio_3_vs_1_redis"]
        out["scale_refresh_rps"] = {key: found["rps"] for key, found in runs.items()}
        out["refresh_p99_ratio_1m_vs_1k_families"] = refresh["p99_ratio_1m_vs_1k"]
        out["refresh_p99_ms_1m_families"] = runs["families_1m"]["latency_p99_ms"]
        out["refresh_p99_ms_1k_families"] = runs["families_1k"]["latency_p99_ms"]
        out["scale_disturbed"] = refresh["disturbed"]
    if logins := scale.get("logins"):
        out["login_transactions_peak_rss_mib"] = logins["postgres"]["rss_mib"]["peak"]
        out["login_transactions_rss_mib_after_warmup"] = logins["postgres"]["rss_mib"][
            "after_warmup"
        ]
        if "redis" in logins:
            out["login_transactions_peak_rss_mib_redis"] = logins["redis"]["rss_mib"]["peak"]
    if delegation := scale.get("delegation"):
        out["delegation_issue_us"] = delegation["issue_us"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {PARTS}")
    parser.add_argument("--logins", type=int, help="abandoned logins (default 100,000)")
    parser.add_argument("--output", type=Path, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else ScaleConfig()
    if args.logins:
        cfg = replace(cfg, logins=args.logins)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    text = json.dumps(run(cfg, parts=parts), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
