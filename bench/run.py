"""Run the whole benchmark suite and record the results.

``bash bench/run.sh`` is the documented entry point (it installs wrk and the bench extra
first); it runs ``python -m bench``. Writes ``bench/results.json`` and the results block of
``docs/benchmarks.md``. ``--quick`` does a short smoke run that writes
``bench/out/results-quick.json`` only. ``--only SECTIONS --merge`` runs some sections and
records them into the existing ``bench/results.json`` (the other sections kept as they were
measured), then renders the docs again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, OUT_DIR, PYTHON, REPO_ROOT, machine, python_env, versions

RESULTS_PATH = BENCH_DIR / "results.json"
DOCS_PATH = REPO_ROOT / "docs" / "benchmarks.md"
SECTIONS = ("micro", "http", "memory", "introspection", "flood", "token", "scale")

# (key, comparison, bound): the project's performance targets.
TARGETS: dict[str, tuple[str, float]] = {
    "cold_ratio_vs_raw_verify": ("<=", 2.0),
    "warm_validation_us": ("<=", 10.0),
    "http_ratio_warm": (">=", 0.85),
    "http_ratio_distinct": (">=", 0.6),
    "introspection_calls_for_concurrent_same_token": ("<=", 1),
    "flood_jwt_p99_ms": ("<=", 50.0),
    "flood_genuine_success_rate": (">=", 1.0),
    "token_cc_ratio_vs_oidc_provider": (">=", 1.5),
    "token_refresh_p99_ms_postgres": ("<=", 20.0),
    "issue_ratio_vs_raw_sign": ("<=", 1.5),
    "password_storm_p99_ms": ("<=", 50.0),
    "scale_refresh_ratio_3_vs_1_instances": (">=", 1.3),
    "refresh_p99_ratio_1m_vs_1k_families": ("<=", 2.0),
}


def _ensure_importable() -> None:
    if importlib.util.find_spec("authbridge") is None:
        sys.path.insert(0, str(REPO_ROOT / "src"))


def run_memory(count: int) -> dict[str, Any]:
    proc = subprocess.run(
        [PYTHON, "-m", "bench.memory", "--count", str(count)],
        cwd=REPO_ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = f"memory benchmark failed:\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if micro := results.get("micro"):
        ratios = micro["cold"]["ratio_vs_raw_verify"]
        out["cold_ratio_vs_raw_verify"] = ratios["authbridge"]
        out["cold_ratio_vs_raw_verify_all"] = ratios
        out["cold_us"] = micro["cold"]["us_per_token"]
        out["warm_validation_us"] = micro["warm"]["us_per_token"]
    if http := results.get("http"):
        out["http_ratio_warm"] = http["ratios"]["warm"]
        out["http_ratio_distinct"] = http["ratios"]["distinct"]
        out["http_ratio_tutorial"] = http["ratios"]["tutorial"]
        out["http_ratio_noop_dependency"] = http["ratios"]["noop_dependency"]
        out["http_rps"] = {name: s["rps"] for name, s in http["scenarios"].items()}
        out["http_disturbed"] = http["disturbed"]
    if introspection := results.get("introspection"):
        out["introspection_calls_for_concurrent_same_token"] = introspection["introspection_calls"]
        out["introspection_cached_us"] = introspection["cached_us"]
    if flood := results.get("flood"):
        scenarios = flood["scenarios"]
        out["flood_jwt_p99_ms"] = scenarios["burst"]["jwt_p99_ms"]
        out["flood_genuine_success_rate"] = scenarios["burst"]["genuine_success_rate"]
        out["flood_floor_jwt_p99_ms"] = scenarios["burst_locally_refused"]["jwt_p99_ms"]
        out["flood_stream_jwt_p99_ms"] = scenarios["stream"]["jwt_p99_ms"]
        out["flood_stream_genuine_success_rate"] = scenarios["stream"]["genuine_success_rate"]
        out["flood_max_concurrent_provider_calls"] = max(
            s["max_concurrent_provider_calls"] for s in scenarios.values()
        )
    if token := results.get("token"):
        out.update(token_headline(token))
    if scale := results.get("scale"):
        from bench.scale import headline as scale_headline  # noqa: PLC0415

        out.update(scale_headline(scale))
    if memory := results.get("memory"):
        out["peak_rss_mib_1m_tokens"] = memory["peak_rss_mib"]
        out["baseline_rss_mib"] = memory["baseline_peak_rss_mib"]
        out["memory_tokens"] = memory["tokens"]
    return out


def token_headline(token: dict[str, Any]) -> dict[str, Any]:
    """The headline keys of the token-endpoint section (see bench/token_endpoint.py)."""
    cc = token["client_credentials"]
    refresh = token["refresh"]["scenarios"]
    out: dict[str, Any] = {
        "token_cc_ratio_vs_oidc_provider": cc["ratio_vs_oidc_provider"],
        "token_cc_ratio_vs_oidc_provider_rs256": cc["ratio_vs_oidc_provider_rs256"],
        "token_cc_rps": {name: s["rps"] for name, s in cc["scenarios"].items()},
        "token_refresh_rps_sqlite": refresh["sqlite"]["rps"],
        "token_refresh_p99_ms_sqlite": refresh["sqlite"].get("latency_p99_ms"),
    }
    if "postgres" in refresh:
        out["token_refresh_rps_postgres"] = refresh["postgres"]["rps"]
        out["token_refresh_p99_ms_postgres"] = refresh["postgres"].get("latency_p99_ms")
    out["issue_ratio_vs_raw_sign"] = token["issue"]["ratio_vs_raw_sign"]
    out["issue_ratio_vs_raw_sign_all"] = {
        alg: found["ratio_vs_raw_sign"] for alg, found in token["issue"]["by_alg"].items()
    }
    out["password_storm_p99_ms"] = token["password_storm"]["p99_ms"]
    out["password_storm_baseline_p99_ms"] = token["password_storm"]["baseline_p99_ms"]
    out["token_disturbed"] = token["disturbed"]
    return out


def merged(path: Path, fresh: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    """The results in ``path`` with ``sections`` replaced by the ``fresh`` ones.

    The run-wide fields (date, command, machine, versions) stay those of the recorded run;
    a merged section carries its own (``scale`` does: ``measured``).
    """
    old = json.loads(path.read_text(encoding="utf-8"))
    base = {
        key: old[key] for key in ("date", "command", "quick", "machine", "versions") if key in old
    }
    for name in SECTIONS:
        if name in sections:
            base[name] = fresh[name]
        elif name in old:
            base[name] = old[name]
    if "total_seconds" in old:
        base["total_seconds_of_recorded_run"] = old.get(
            "total_seconds_of_recorded_run", old["total_seconds"]
        )
    return base


def check_targets(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checked: dict[str, dict[str, Any]] = {}
    for key, (op, bound) in TARGETS.items():
        if key not in values:
            continue
        value = values[key]
        met = value <= bound if op == "<=" else value >= bound
        checked[key] = {"value": value, "target": f"{op} {bound:g}", "met": met}
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run; docs untouched")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections not run from the existing results file, and render the docs",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    if args.merge and args.quick:
        parser.error("--merge records full runs only")

    _ensure_importable()

    OUT_DIR.mkdir(exist_ok=True)
    output = args.output or (OUT_DIR / "results-quick.json" if args.quick else RESULTS_PATH)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bash bench/run.sh" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
    }

    if "memory" in sections:
        count = 50_000 if args.quick else 1_000_000
        # First, while this process is still small: a child's ru_maxrss starts at its
        # parent's peak (the kernel keeps it across exec).
        print(f"[1/3] peak RSS after {count} distinct tokens (fresh process)", flush=True)
        results["memory"] = run_memory(count)
        mem = results["memory"]
        print(
            f"  baseline {mem['baseline_peak_rss_mib']} MiB -> peak {mem['peak_rss_mib']} MiB"
            f" (cache_size={mem['cache_size']})",
            flush=True,
        )

    if "micro" in sections:
        from bench import micro  # noqa: PLC0415

        print("[2/3] cold + warm validation (in-process)", flush=True)
        if args.quick:
            results["micro"] = micro.run(300, 3, 2000, 3)
        else:
            results["micro"] = micro.run()
        cold, warm = results["micro"]["cold"], results["micro"]["warm"]
        for name, us in cold["us_per_token"].items():
            ratio = cold["ratio_vs_raw_verify"][name]
            print(f"  cold {name:<12} {us:8.2f} us  {ratio:5.2f}x raw verify", flush=True)
        print(f"  warm authbridge   {warm['us_per_token']:8.2f} us", flush=True)

    if "http" in sections:
        from bench import httpbench  # noqa: PLC0415

        print("[3/3] HTTP throughput (uvicorn + wrk)", flush=True)
        if args.quick:
            cfg = httpbench.WrkConfig(duration_s=2, rounds=2, warmup_s=1)
            results["http"] = httpbench.run(cfg)
        else:
            results["http"] = httpbench.run()
        http = results["http"]
        print(f"  ratios vs unprotected: {http['ratios']}", flush=True)
        if http["disturbed"]:
            print(
                f"  WARNING: other processes used up to {http['max_other_cpu_cores']} of a core"
                " during the HTTP runs; the numbers are disturbed",
                flush=True,
            )

    if "introspection" in sections:
        from bench import introspection  # noqa: PLC0415

        print("[+] introspection: concurrent first sight, cached validation", flush=True)
        results["introspection"] = introspection.run(iterations=5_000 if args.quick else 50_000)
        found = results["introspection"]
        print(
            f"  {found['concurrency']} concurrent requests, one new opaque token: "
            f"{found['introspection_calls']} introspection call(s); "
            f"cached validation {found['cached_us']} us",
            flush=True,
        )

    if "flood" in sections:
        from bench import flood  # noqa: PLC0415

        print(
            "[+] flood: 2,000 made-up opaque tokens at once, genuine requests meanwhile", flush=True
        )
        results["flood"] = flood.run(flood.FloodConfig(rounds=1 if args.quick else 3))
        for key, found in results["flood"]["scenarios"].items():
            print(
                f"  {key}: JWT p99 {found['jwt_p99_ms']} ms, genuine success "
                f"{found['genuine_success_rate']}, provider calls in flight at most "
                f"{found['max_concurrent_provider_calls']}",
                flush=True,
            )

    if "token" in sections:
        from bench import token_endpoint  # noqa: PLC0415

        print(
            "[+] token endpoint: client_credentials vs oidc-provider, refresh rotation, "
            "minting, password storm",
            flush=True,
        )
        results["token"] = token_endpoint.run(token_endpoint.QUICK if args.quick else None)
        found = token_headline(results["token"])
        print(
            f"  client_credentials {found['token_cc_rps']} req/s; refresh "
            f"{found['token_refresh_rps_sqlite']} req/s (SQLite), "
            f"{found.get('token_refresh_rps_postgres')} req/s (PostgreSQL)",
            flush=True,
        )
        if results["token"]["disturbed"]:
            print(
                f"  WARNING: other processes used up to {results['token']['max_other_cpu_cores']}"
                " of a core during the token runs; the numbers are disturbed",
                flush=True,
            )

    if "scale" in sections:
        from bench import scale  # noqa: PLC0415

        print(
            "[+] scale: refresh on 3 instances vs 1, 1M families vs 1k, abandoned logins, "
            "delegated tokens",
            flush=True,
        )
        scale_started = time.monotonic()
        found = scale.run(scale.QUICK if args.quick else None, parts=scale.PARTS)
        found["measured"] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["bash bench/run.sh", *(sys.argv[1:] if argv is None else argv)]),
            "seconds": round(time.monotonic() - scale_started, 1),
            "git_commit": results["versions"]["git_commit"],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        }
        results["scale"] = found
        for key, value in scale.headline(found).items():
            print(f"  {key}: {value}", flush=True)

    with contextlib.suppress(OSError):
        results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.merge:
        results = merged(output, results, sections)
    summary = headline(results)
    summary["targets"] = check_targets(summary)
    summary["total_seconds"] = results.pop(
        "total_seconds_of_recorded_run", round(time.monotonic() - started, 1)
    )
    final = {**summary, **results}
    output.write_text(json.dumps(final, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output.relative_to(REPO_ROOT) if output.is_relative_to(REPO_ROOT) else output}")

    recorded = [name for name in SECTIONS if name in final]
    if not args.quick and not args.no_docs and recorded == list(SECTIONS):
        from bench.report import update_docs  # noqa: PLC0415

        update_docs(final, DOCS_PATH)
        print(f"updated {DOCS_PATH.relative_to(REPO_ROOT)}")
    for key, check in summary["targets"].items():
        verdict = "ok" if check["met"] else "MISSED"
        print(f"  {key}: {check['value']} (target {check['target']}) {verdict}")
    return 0
