"""The scale section of ``docs/benchmarks.md``'s generated block (see ``bench/scale.py``)."""

from __future__ import annotations

from typing import Any

X = "\N{MULTIPLICATION SIGN}"

_REFRESH_LABELS = {
    "postgres_1": "1 instance, PostgreSQL",
    "postgres_3": "3 instances, PostgreSQL",
    "postgres_1_same_load": "1 instance, PostgreSQL, the 3-instance load",
    "redis_1": "1 instance, PostgreSQL + Redis",
    "redis_3": "3 instances, PostgreSQL + Redis",
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _met(results: dict[str, Any], key: str) -> str:
    check = results.get("targets", {}).get(key)
    if check is None:
        return "n/a"
    return "met" if check["met"] else "**missed**"


def headline_rows(results: dict[str, Any]) -> list[str]:
    if "scale" not in results:
        return []
    scale = results["scale"]
    lines = ["", "| Scale | Measured | Target | |", "| --- | ---: | --- | --- |"]
    if "refresh" in scale:
        redis = results.get("scale_refresh_ratio_3_vs_1_instances_redis")
        lines += [
            f"| `scale_refresh_ratio_3_vs_1_instances` "
            f"| {_fmt(results['scale_refresh_ratio_3_vs_1_instances'], 3)}{X} "
            f"| ≥ 1.3{X} | {_met(results, 'scale_refresh_ratio_3_vs_1_instances')} |",
            "| `scale_refresh_ratio_3_vs_1_instances_redis` | "
            + (f"{_fmt(redis, 3)}{X}" if redis is not None else "not measured")
            + " | none | with Redis for the ephemeral state |",
            f"| `refresh_p99_ratio_1m_vs_1k_families` "
            f"| {_fmt(results['refresh_p99_ratio_1m_vs_1k_families'], 3)}{X} "
            f"({_fmt(results['refresh_p99_ms_1m_families'])} ms against "
            f"{_fmt(results['refresh_p99_ms_1k_families'])} ms) "
            f"| ≤ 2{X} | {_met(results, 'refresh_p99_ratio_1m_vs_1k_families')} |",
        ]
    if "logins" in scale:
        logins = scale["logins"]["postgres"]
        lines.append(
            f"| `login_transactions_peak_rss_mib` "
            f"| {_fmt(results['login_transactions_peak_rss_mib'], 1)} MiB "
            f"(after warm-up {_fmt(logins['rss_mib']['after_warmup'], 1)} MiB) "
            f"| bounded | {logins['logins']:,} abandoned logins |"
        )
    if "delegation" in scale:
        lines.append(
            f"| `delegation_issue_us` | {_fmt(results['delegation_issue_us'], 0)} µs "
            "| none | `Delegations.create`, PostgreSQL |"
        )
    return lines


def section(results: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if scale is None:
        return []
    measured = scale.get("measured", {})
    load = measured.get("loadavg_at_end")
    lines = [
        "### Scale",
        "",
        f"`python -m bench.scale`, measured {measured.get('date', '?')} with "
        f"`{measured.get('command', '?')}` ({measured.get('seconds', '?')} s, commit "
        f"{measured.get('git_commit', '?')}"
        + (f", load average {' / '.join(f'{v:.2f}' for v in load)} at the end" if load else "")
        + ") on the same shared 2-core machine: the load generator, every instance, "
        "PostgreSQL and Redis share its two cores, with other people's work (the *other* "
        "column).",
        "",
    ]
    pg = scale.get("postgres", {})
    if pg:
        buffers = int(pg.get("shared_buffers", 0)) * 8 // 1024  # 8 kB pages
        lines += [
            f"PostgreSQL {pg.get('server_version', '?').split(' ')[0]}, "
            + (
                "a cluster of the benchmark's own"
                if pg.get("private_cluster")
                else "the local server"
            )
            + f": shared_buffers {buffers} MiB, fsync {pg.get('fsync')}, synchronous_commit "
            f"{pg.get('synchronous_commit')}, autovacuum {pg.get('autovacuum')}, "
            f"max_connections {pg.get('max_connections')}.",
            "",
        ]
    if "refresh" in scale:
        private = bool(pg.get("private_cluster"))
        lines += _refresh(scale["refresh"], private)
    if "logins" in scale:
        lines += _logins(scale["logins"])
    if "delegation" in scale:
        lines += _delegation(scale["delegation"])
    return lines


def _refresh(refresh: dict[str, Any], private: bool) -> list[str]:
    cfg, runs = refresh["config"], refresh["scenarios"]
    postgres = (
        "every process of the benchmark's own cluster, backends that ended meanwhile included"
        if private
        else "the backends of the run's database, the server's own processes and backends "
        "that ended meanwhile"
    )
    lines = [
        f"Refresh rotation: every wrk connection rotates a family of its own (fresh families, "
        f"created through the store, for each run), {cfg['connections_per_instance']} "
        "connections per instance; each scenario warmed up for "
        f"{cfg['warmup_s']} s, then {cfg['rounds']} rounds of {cfg['duration_s']} s with the "
        "order rotated. req/s, latencies and CPU are medians over the rounds; CPU in cores "
        f"(of 2): the instances, PostgreSQL ({postgres}), wrk, and everything else on the "
        f"machine (at most {refresh['max_other_cpu_cores']} of a core in this run"
        + (": disturbed)." if refresh["disturbed"] else ")."),
        "",
        "| Scenario | req/s | p50 ms | p99 ms | CPU: instances | PostgreSQL | wrk | other "
        "| instance CPU µs/request | PostgreSQL connections opened / 1,000 requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in _REFRESH_LABELS.items():
        found = runs.get(key)
        if found is None:
            continue
        cpu = found["cpu_cores"]
        lines.append(
            f"| {label} | {_fmt(found['rps'], 1)} | {_fmt(found.get('latency_p50_ms'))} "
            f"| {_fmt(found.get('latency_p99_ms'))} | {_fmt(cpu['instances'])} "
            f"| {_fmt(cpu['postgres'])} | {_fmt(cpu['wrk'])} | {_fmt(cpu['other'])} "
            f"| {_fmt(found['cpu_us_per_request']['instances'], 0)} "
            f"| {_fmt(found['postgres_sessions_per_1k_requests'], 1)} |"
        )
    lines += [
        "",
        "The most 3 instances could give on these 2 cores: both cores over the CPU that the "
        "instances, PostgreSQL and wrk spent per request in the 3-instance run, over the "
        f"1-instance req/s: {_fmt(refresh.get('ratio_3_vs_1_ceiling'), 2)}{X} on PostgreSQL"
        + (
            f", {_fmt(refresh['ratio_3_vs_1_redis_ceiling'], 2)}{X} with Redis"
            if refresh.get("ratio_3_vs_1_redis_ceiling") is not None
            else ""
        )
        + f" (measured: {_fmt(refresh.get('ratio_3_vs_1'), 2)}{X}"
        + (
            f" and {_fmt(refresh['ratio_3_vs_1_redis'], 2)}{X}"
            if refresh.get("ratio_3_vs_1_redis") is not None
            else ""
        )
        + ").",
    ]
    if refresh.get("redis_unavailable"):
        lines += ["", f"Redis rows not measured: {refresh['redis_unavailable']}."]
    loads = refresh["loads"]
    rows = refresh["rows_at_end"]
    lines += [
        "",
        "Refresh families: one instance on each database, the same load "
        f"({cfg['connections_per_instance']} connections, one family each):",
        "",
        "| Database | families loaded | load + ANALYZE s | size MiB | families / tokens at the end "
        "| req/s | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in ("families_1k", "families_1m"):
        found, loaded, counted = runs[key], loads[key], rows[key]
        lines.append(
            f"| {key.removeprefix('families_')} | {loaded['families']:,} "
            f"| {_fmt(loaded['load_and_analyze_s'])} | {_fmt(loaded['database_mib'], 0)} "
            f"| {counted['refresh_families']:,} / {counted['refresh_tokens']:,} "
            f"| {_fmt(found['rps'], 1)} | {_fmt(found.get('latency_p50_ms'))} "
            f"| {_fmt(found.get('latency_p99_ms'))} |"
        )
    lines += [
        "",
        "Plans of a rotation's statements on the 1,000,000-family database (`EXPLAIN (ANALYZE, "
        "BUFFERS)`, the statements as SQLAlchemy compiles them for the store, rolled back), "
        "their key lines:",
        "",
        "```text",
    ]
    for name, plan in refresh["plans_1m"]["key_lines"].items():
        lines.append(f"-- {name}")
        lines += plan
    lines += ["```", ""]
    return lines


def _store_count(found: dict[str, Any]) -> str:
    if "redis" in found:
        redis = found["redis"]
        return f"{redis['keys']:,} keys"
    return f"{found['one_time_login_rows']:,} + {found['rate_limit_rows']:,} rows"


def _logins(logins: dict[str, Any]) -> list[str]:
    lines = [
        f"Abandoned logins: `{logins['route']}` from a new client address each time "
        "(`X-Forwarded-For` behind a trusted proxy, so the per-address limit on login starts "
        f"refuses none), {logins['connections']} connections, after a warm-up of "
        f"{logins['warmup_logins']}; each stores a login transaction "
        f"({logins['transaction_ttl_s']:g} s) and a rate-limit window (60 s) and answers 303. "
        "Rows are login transactions + rate-limit windows in PostgreSQL; keys are Redis's. "
        "After expiry: PostgreSQL rows after "
        "`store.purge` as of the moment all have ended (each instance runs it every 10 "
        "minutes); Redis keys carry their own TTL (the value's life + 60 s) and need no purge.",
        "",
        "| Store | logins | logins/s | instance CPU µs/login | RSS MiB after warm-up "
        "| after the logins | peak | stored before | after the logins | after expiry |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("postgres", "PostgreSQL"), ("redis", "PostgreSQL + Redis")):
        found = logins.get(key)
        if found is None:
            continue
        rss = found["rss_mib"]
        expiry = found["store_after_expiry"]
        if "redis" in expiry:
            ttl = expiry["redis"].get("ttl_s_sample", {})
            after = (
                f"{expiry['redis']['keys']:,} keys, gone within {_fmt(ttl.get('max'), 0)} s"
                if ttl
                else "0 keys"
            )
        else:
            after = _store_count(expiry)
        lines.append(
            f"| {label} | {found['logins']:,} | {_fmt(found['load']['logins_per_s'], 0)} "
            f"| {_fmt(found['load']['instance_cpu_us_per_login'], 0)} "
            f"| {_fmt(rss['after_warmup'], 1)} | {_fmt(rss['after_logins'], 1)} "
            f"| {_fmt(rss['peak'], 1)} | {_store_count(found['store_before'])} "
            f"| {_store_count(found['store_after_logins'])} | {after} |"
        )
    if logins.get("redis_unavailable"):
        lines += ["", f"Redis row not measured: {logins['redis_unavailable']}."]
    for key, label in (("postgres", "PostgreSQL"), ("redis", "PostgreSQL + Redis")):
        trace = logins.get(key, {}).get("load", {}).get("rss_trace")
        if not trace:
            continue
        points = trace[:: max(1, len(trace) // 6)]
        end = logins[key]["rss_mib"]["after_logins"]
        lines += [
            "",
            f"The instance's RSS (`VmRSS`) along the run, {label}: "
            + ", ".join(f"{p['rss_mib']:.1f} MiB at {p['logins']:,.0f}" for p in points)
            + f" logins; {end:.1f} MiB at the end.",
        ]
    return [*lines, ""]


def _delegation(delegation: dict[str, Any]) -> list[str]:
    lines = [
        "Delegated tokens in-process (ES256; median of repeats of the mean per call): "
        "`Delegations.create` (checks, the robot client (kept in memory) and the account read, "
        "the user's active delegations counted, the record inserted, the robot's token minted), "
        "an RFC 8693 "
        "exchange of the user's token by the robot under that delegation (`runtime.token`: "
        "client authentication, the subject token verified with its revocation lookups, the "
        "delegation found, a token minted), and minting alone with and without `act`/`did`:",
        "",
        "| Store | create µs | exchange µs | mint with `act` µs | mint µs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("postgres", "PostgreSQL"), ("sqlite", "SQLite (file)")):
        found = delegation.get(key)
        if found is None:
            continue
        lines.append(
            f"| {label} | {_fmt(found['create']['us'], 0)} | {_fmt(found['exchange']['us'], 0)} "
            f"| {_fmt(found['mint_delegated']['us'], 1)} | {_fmt(found['mint']['us'], 1)} |"
        )
    return [*lines, ""]
