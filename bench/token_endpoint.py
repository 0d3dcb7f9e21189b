"""The app's own token endpoint: authbridge against npm oidc-provider, refresh rotation,
the cost of minting, and a protected route during a password-login storm.

All side by side in one run on this machine, every server in its own process on 127.0.0.1:

* ``client_credentials`` under wrk (``-t1 -c32``, one uvicorn worker) against three servers:
  authbridge with ES256 keys (its default), authbridge with RS256 keys (each on its own
  SQLite store), and oidc-provider 9.13 (one Node process, in-memory adapter, a JWT access
  token for a resource indicator, RS256: its default). Each warmed up, then measured in rounds
  with the order rotated. ``token_cc_ratio_vs_oidc_provider`` = median over rounds of
  authbridge ES256 req/s over oidc-provider's; ``..._rs256``: authbridge RS256 over it;
* ``refresh_token`` under wrk: 32 connections, 32 distinct families freshly logged in
  (password grant) before each run, every request a rotation of the latest token of its family
  (``refresh_chain.lua``), on SQLite and on PostgreSQL; p99 from wrk's latency distribution;
* ``issue_ratio_vs_raw_sign`` (in-process): ``IssuerRuntime.mint_access_token`` (claims,
  JSON, base64url, sign) over the bare ``cryptography`` sign of the same signing inputs;
* ``password_storm_p99_ms``: closed-loop probes of ``GET /protected`` (the app's own JWT, no
  HTTP) while another process keeps 50 password logins in flight (real argon2id parameters).

``python -m bench.token_endpoint`` runs it alone and prints the JSON;
``python -m bench --only token`` records it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.common import BENCH_DIR, OUT_DIR, PYTHON, median, python_env, settle, split_jws
from bench.httpbench import _machine_cpu_s, _own_cpu_s, _process_cpu_s, parse_wrk
from bench.token_servers import (
    CC_CLIENT_ID,
    PASSWORD_CLIENT_ID,
    RESOURCE,
    SCOPE,
    USER_PASSWORD,
    Seeded,
    Server,
    authbridge_server,
    basic,
    check_token_endpoint,
    ensure_oidc_provider,
    new_kek,
    oidc_provider_server,
    postgres_available,
    postgres_database,
    seed,
)

POST_SCRIPT = BENCH_DIR / "token_post.lua"
REFRESH_SCRIPT = BENCH_DIR / "refresh_chain.lua"
DISTURBED_CORES = 0.15


@dataclass(frozen=True)
class TokenConfig:
    threads: int = 1
    connections: int = 32
    duration_s: int = 5
    rounds: int = 3
    warmup_s: int = 2
    families: int = 32
    storm_logins: int = 50
    storm_s: float = 5.0
    probes: int = 2
    issue_iterations: int = 2000
    issue_repeats: int = 7


QUICK = TokenConfig(
    duration_s=2, rounds=1, warmup_s=1, storm_s=2.0, issue_iterations=300, issue_repeats=3
)


# -- wrk -----------------------------------------------------------------------------------


def wrk_post(
    server: Server, cfg: TokenConfig, duration_s: int, script: Path, *args: str
) -> dict[str, Any]:
    """One wrk run against ``server``'s token endpoint, with CPU accounting (see httpbench)."""
    argv = [
        "wrk", f"-t{cfg.threads}", f"-c{cfg.connections}", f"-d{duration_s}s",
        "--timeout", "10s", "--latency", "-s", str(script),
        f"{server.base_url}{server.token_path}", "--", *args,
    ]  # fmt: skip
    busy0, steal0 = _machine_cpu_s()
    server0 = _process_cpu_s(server.pid)
    own0, wrk0 = _own_cpu_s()
    started = time.perf_counter()
    proc = subprocess_run(argv, duration_s)
    wall = time.perf_counter() - started
    busy1, steal1 = _machine_cpu_s()
    server_cpu = _process_cpu_s(server.pid) - server0
    own1, wrk1 = _own_cpu_s()
    result = parse_wrk(proc)
    other = (busy1 - busy0) - server_cpu - (wrk1 - wrk0) - (own1 - own0)
    result["server_cpu_cores"] = round(server_cpu / wall, 3)
    result["server_cpu_us_per_request"] = round(server_cpu / max(1, result["requests"]) * 1e6, 1)
    result["other_cpu_cores"] = round(max(0.0, other) / wall, 3)
    result["steal_cpu_cores"] = round((steal1 - steal0) / wall, 3)
    if result["non_2xx"] or result["socket_errors"]:
        msg = (
            f"{server.name}: {result['non_2xx']} non-2xx responses, "
            f"{result['socket_errors']} socket errors"
        )
        raise RuntimeError(msg)
    return result


def subprocess_run(argv: list[str], duration_s: int) -> str:
    import subprocess  # noqa: PLC0415

    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    if proc.returncode != 0:
        msg = f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    return proc.stdout


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rps": round(median(r["rps"] for r in runs), 1),
        "requests": sum(r["requests"] for r in runs),
    }
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_avg_ms"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = round(median(values), 3)
    for key in ("server_cpu_cores", "server_cpu_us_per_request", "other_cpu_cores"):
        out[key] = round(median(r[key] for r in runs), 3)
    out["rounds"] = runs
    return out


# -- client_credentials: authbridge against oidc-provider ----------------------------------


def _cc_body() -> str:
    return urlencode(
        {"grant_type": "client_credentials", "scope": "items:read", "resource": RESOURCE}
    )


def client_credentials(servers: dict[str, Server], secret: str, cfg: TokenConfig) -> dict[str, Any]:
    body = _cc_body()
    authorization = basic(CC_CLIENT_ID, secret)
    for server in servers.values():
        answer = check_token_endpoint(server, authorization, body)
        print(
            f"  {server.name}: {answer['token_type']} JWT, {len(answer['access_token'])} chars",
            flush=True,
        )
    for server in servers.values():
        wrk_post(server, cfg, cfg.warmup_s, POST_SCRIPT, body, authorization)
    keys = list(servers)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for r in range(cfg.rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            settle()
            runs[key].append(
                wrk_post(servers[key], cfg, cfg.duration_s, POST_SCRIPT, body, authorization)
            )
        print(
            "  round "
            + f"{r + 1}/{cfg.rounds}: "
            + ", ".join(f"{servers[k].name} {runs[k][-1]['rps']:.0f}" for k in keys)
            + " req/s",
            flush=True,
        )

    def ratio(key: str) -> float:
        pairs = zip(runs[key], runs["oidc_provider"], strict=True)
        return round(median(a["rps"] / b["rps"] for a, b in pairs), 3)

    return {
        "scenarios": {key: {"server": servers[key].name, **_summary(v)} for key, v in runs.items()},
        "ratio_vs_oidc_provider": ratio("authbridge_es256"),
        "ratio_vs_oidc_provider_rs256": ratio("authbridge_rs256"),
        "request": "POST grant_type=client_credentials&scope=items:read&resource=<api>, "
        "client_secret_basic",
    }


# -- refresh_token rotation chains ---------------------------------------------------------


async def _login(
    http: httpx.AsyncClient, server: Server, authorization: str, username: str
) -> dict[str, Any]:
    response = await http.post(
        f"{server.base_url}{server.token_path}",
        data={
            "grant_type": "password",
            "username": username,
            "password": USER_PASSWORD,
            "scope": "items:read",
        },
        headers={"Authorization": authorization},
    )
    if response.status_code != 200:
        msg = f"{server.name}: password login -> {response.status_code}: {response.text[:300]}"
        raise RuntimeError(msg)
    answer: dict[str, Any] = response.json()
    return answer


async def _families(server: Server, seeded: Seeded, count: int) -> list[str]:
    authorization = basic(PASSWORD_CLIENT_ID, seeded.password_secret)
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(username: str) -> str:
            async with limit:
                answer = await _login(http, server, authorization, username)
            token: str = answer["refresh_token"]
            return token

        return list(await asyncio.gather(*(one(u) for u in seeded.usernames[:count])))


def refresh_rotation(
    servers: dict[str, tuple[Server, Seeded]], cfg: TokenConfig, workdir: Path
) -> dict[str, Any]:
    """Each run starts from ``families`` fresh logins (a run cut off by wrk loses the tokens in
    flight, so chains are not carried over from one run to the next)."""
    if cfg.families < cfg.connections:
        msg = "refresh chains need at least one family per connection"
        raise ValueError(msg)

    def run(key: str, duration_s: int) -> dict[str, Any]:
        server, seeded = servers[key]
        tokens = asyncio.run(_families(server, seeded, cfg.families))
        path = workdir / f"refresh-{key}.txt"
        path.write_text("\n".join(tokens) + "\n", encoding="ascii")
        settle()
        authorization = basic(PASSWORD_CLIENT_ID, seeded.password_secret)
        return wrk_post(server, cfg, duration_s, REFRESH_SCRIPT, str(path), authorization)

    keys = list(servers)
    for key in keys:
        run(key, cfg.warmup_s)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for r in range(cfg.rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for key in order:
            runs[key].append(run(key, cfg.duration_s))
        print(
            "  round "
            + f"{r + 1}/{cfg.rounds}: "
            + ", ".join(
                f"{k} {runs[k][-1]['rps']:.0f} req/s p99 "
                f"{runs[k][-1].get('latency_p99_ms', math.nan):.1f} ms"
                for k in keys
            ),
            flush=True,
        )
    return {
        "families": cfg.families,
        "scenarios": {key: _summary(v) for key, v in runs.items()},
    }


# -- minting in-process ----------------------------------------------------------------------


def _raw_signer(alg: str) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa  # noqa: PLC0415

    if alg == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda data: ec_key.sign(data, ecdsa)
    if alg == "RS256":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda data: rsa_key.sign(data, pkcs1, sha256)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return ed_key.sign


async def _issue(alg: str, iterations: int, repeats: int, workdir: Path) -> dict[str, Any]:
    from authbridge.issuer import AppIssuer, IssuerRuntime  # noqa: PLC0415

    store = f"sqlite+aiosqlite:///{workdir / f'issue-{alg}.db'}"
    config = AppIssuer(
        "https://issuer.bench.test",
        store=store,
        scopes=SCOPE.split(),
        signing_algorithm=alg,
        key_encryption_key=new_kek(),
    )  # type: ignore[arg-type]
    runtime = IssuerRuntime(config, time.time)
    await runtime.start()
    try:
        scopes = frozenset({"items:read"})
        audiences = (config.audience,)

        def mint() -> str:
            token, _ = runtime.mint_access_token(
                subject="user-0001", client_id=CC_CLIENT_ID, scopes=scopes, audiences=audiences
            )
            return token

        sign = _raw_signer(alg)
        for _ in range(200):
            mint()
        inputs = [split_jws(mint())[0] for _ in range(iterations)]
        mint_ns: list[float] = []
        sign_ns: list[float] = []
        for r in range(repeats):
            for what in ("mint", "sign") if r % 2 == 0 else ("sign", "mint"):
                settle()
                if what == "mint":
                    start = perf_counter_ns()
                    for _ in range(iterations):
                        mint()
                    mint_ns.append((perf_counter_ns() - start) / iterations)
                else:
                    start = perf_counter_ns()
                    for data in inputs:
                        sign(data)
                    sign_ns.append((perf_counter_ns() - start) / iterations)
        token = mint()
        header = json.loads(_b64(token.split(".")[0]))
        return {
            "alg": header.get("alg"),
            "mint_us": round(median(mint_ns) / 1000, 3),
            "raw_sign_us": round(median(sign_ns) / 1000, 3),
            "ratio_vs_raw_sign": round(median(mint_ns) / median(sign_ns), 3),
            "token_bytes": len(token),
            "iterations_per_repeat": iterations,
            "repeats": repeats,
        }
    finally:
        await runtime.aclose()


def _b64(segment: str) -> bytes:
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def issue(cfg: TokenConfig, workdir: Path) -> dict[str, Any]:
    found = {
        # RSA signing is some 30 times slower: a tenth of the iterations is as long a sample.
        alg: asyncio.run(_issue(alg, iterations, cfg.issue_repeats, workdir))
        for alg, iterations in (
            ("ES256", cfg.issue_iterations),
            ("RS256", max(100, cfg.issue_iterations // 10)),
            ("EdDSA", cfg.issue_iterations),
        )
    }
    return {
        "by_alg": found,
        "ratio_vs_raw_sign": found["ES256"]["ratio_vs_raw_sign"],
        "statistic": "median of repeats of mean-per-call; raw sign: cryptography's sign() of the "
        "same signing inputs with a key of the same type",
    }


# -- the password storm ----------------------------------------------------------------------


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def _probe_until(
    url: str, token: str, stop: asyncio.Event, probes: int
) -> list[tuple[float, float, int]]:
    """Closed-loop probes: (sent at, latency ms, status) for each request until ``stop``."""
    samples: list[tuple[float, float, int]] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as http:

        async def probe() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                response = await http.get(url, headers=headers)
                samples.append((sent, (time.monotonic() - sent) * 1000, response.status_code))

        await http.get(url, headers=headers)  # connections up before measuring
        await asyncio.gather(*(probe() for _ in range(probes)))
    return samples


async def _storm_round(
    server: Server, seeded: Seeded, token: str, cfg: TokenConfig
) -> dict[str, Any]:
    url = f"{server.base_url}/protected"
    stop = asyncio.Event()
    baseline_task = asyncio.create_task(_probe_until(url, token, stop, cfg.probes))
    await asyncio.sleep(cfg.storm_s)
    stop.set()
    baseline = await baseline_task

    argv = [
        PYTHON, "-m", "bench.token_endpoint", "storm", f"{server.base_url}{server.token_path}",
        "--secret", seeded.password_secret, "--concurrency", str(cfg.storm_logins),
        "--seconds", str(cfg.storm_s), "--users", ",".join(seeded.usernames[: cfg.storm_logins]),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, env=python_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    go = await proc.stdout.readline()  # the storm's logins are all in flight
    if not go.startswith(b"go"):
        msg = f"storm did not start: {go!r} {(await proc.stderr.read()).decode()[:2000]}"  # type: ignore[union-attr]
        raise RuntimeError(msg)
    stop = asyncio.Event()
    probes_task = asyncio.create_task(_probe_until(url, token, stop, cfg.probes))
    out, err = await proc.communicate()
    stop.set()
    during = await probes_task
    if proc.returncode != 0:
        msg = f"storm failed ({proc.returncode}): {err.decode()[:2000]}"
        raise RuntimeError(msg)
    storm = json.loads(out.decode().strip().splitlines()[-1])
    end = storm["ended_monotonic"]
    latencies = [ms for sent, ms, _ in during if sent <= end]
    statuses = [status for sent, _, status in during if sent <= end]
    return {
        "probe_p99_ms": round(_percentile(latencies, 99), 3),
        "probe_p50_ms": round(_percentile(latencies, 50), 3),
        "probe_max_ms": round(max(latencies, default=math.nan), 3),
        "probes": len(latencies),
        "probe_success_rate": round(sum(s == 200 for s in statuses) / max(1, len(statuses)), 4),
        "baseline_probe_p99_ms": round(_percentile([ms for _, ms, _ in baseline], 99), 3),
        "baseline_probe_p50_ms": round(_percentile([ms for _, ms, _ in baseline], 50), 3),
        "storm": storm,
    }


def password_storm(server: Server, seeded: Seeded, cfg: TokenConfig) -> dict[str, Any]:
    answer = check_token_endpoint(
        server,
        basic(CC_CLIENT_ID, seeded.cc_secret),
        urlencode({"grant_type": "client_credentials"}),
    )
    rounds = [
        asyncio.run(_storm_round(server, seeded, answer["access_token"], cfg))
        for _ in range(cfg.rounds)
    ]
    for r in rounds:
        storm = r["storm"]
        print(
            f"  probe p99 {r['probe_p99_ms']:.1f} ms (no storm {r['baseline_probe_p99_ms']:.1f}"
            f" ms), {storm['logins_per_s']:.1f} logins/s, statuses {storm['statuses']}",
            flush=True,
        )
    return {
        "p99_ms": round(median(r["probe_p99_ms"] for r in rounds), 3),
        "baseline_p99_ms": round(median(r["baseline_probe_p99_ms"] for r in rounds), 3),
        "concurrent_logins": cfg.storm_logins,
        "probes": cfg.probes,
        "seconds": cfg.storm_s,
        "rounds": rounds,
    }


async def _storm_main(
    url: str, secret: str, usernames: list[str], concurrency: int, seconds: float
) -> dict[str, Any]:
    authorization = basic(PASSWORD_CLIENT_ID, secret)
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        deadline = time.monotonic() + seconds
        started = asyncio.Event()
        in_flight = 0

        async def login(username: str) -> None:
            nonlocal in_flight
            while True:
                sent = time.monotonic()
                in_flight += 1
                if in_flight == concurrency:
                    started.set()
                response = await http.post(
                    url,
                    data={
                        "grant_type": "password",
                        "username": username,
                        "password": USER_PASSWORD,
                    },
                    headers={"Authorization": authorization},
                )
                in_flight -= 1
                latencies.append((time.monotonic() - sent) * 1000)
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                if time.monotonic() >= deadline:
                    return

        tasks = [
            asyncio.create_task(login(usernames[i % len(usernames)])) for i in range(concurrency)
        ]
        await started.wait()
        began = time.monotonic()
        sys.stdout.write("go\n")
        sys.stdout.flush()
        await asyncio.gather(*tasks)
        ended = time.monotonic()
    return {
        "logins": len(latencies),
        "logins_per_s": round(len(latencies) / max(1e-9, ended - began), 1),
        "login_p50_ms": round(_percentile(latencies, 50), 1),
        "login_p99_ms": round(_percentile(latencies, 99), 1),
        "statuses": statuses,
        "ended_monotonic": ended,
    }


# -- the whole run ---------------------------------------------------------------------------


def run(cfg: TokenConfig | None = None) -> dict[str, Any]:
    cfg = cfg or TokenConfig()
    if shutil.which("wrk") is None:
        msg = "wrk not found: install it (apt-get install -y wrk) or use bench/run.sh"
        raise RuntimeError(msg)
    if shutil.which("node") is None:
        msg = "node not found: install Node.js (apt-get install -y nodejs npm) or use bench/run.sh"
        raise RuntimeError(msg)
    _, op_version = ensure_oidc_provider()
    OUT_DIR.mkdir(exist_ok=True)
    results: dict[str, Any] = {"config": asdict(cfg), "oidc_provider_version": op_version}
    with tempfile.TemporaryDirectory(prefix="authbridge-bench-") as tmp:
        workdir = Path(tmp)
        print("  minting in-process (ES256, RS256, EdDSA)", flush=True)
        results["issue"] = issue(cfg, workdir)
        for alg, found in results["issue"]["by_alg"].items():
            print(
                f"  {alg}: mint {found['mint_us']} us, raw sign {found['raw_sign_us']} us, "
                f"{found['ratio_vs_raw_sign']}x",
                flush=True,
            )

        cc_secret, password_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        users = max(cfg.storm_logins, cfg.families)
        why_no_postgres = postgres_available()
        with contextlib.ExitStack() as stack:
            stores: dict[str, str] = {
                "sqlite_es256": f"sqlite+aiosqlite:///{workdir / 'es256.db'}",
                "sqlite_rs256": f"sqlite+aiosqlite:///{workdir / 'rs256.db'}",
            }
            if why_no_postgres is None:
                stores["postgres_es256"] = stack.enter_context(postgres_database())
            seeded = {
                key: seed(url, users=users, cc_secret=cc_secret, password_secret=password_secret)
                for key, url in stores.items()
            }
            servers: dict[str, Server] = {}
            for key, url in stores.items():
                alg = "RS256" if key.endswith("rs256") else "ES256"
                log = OUT_DIR / f"token-{key}.log"
                servers[key] = stack.enter_context(
                    authbridge_server(f"authbridge {alg} ({key.split('_')[0]})", url, alg, log)
                )
            op = stack.enter_context(oidc_provider_server(cc_secret, OUT_DIR / "oidc-provider"))

            print(
                "  client_credentials: authbridge ES256, authbridge RS256, oidc-provider RS256",
                flush=True,
            )
            results["client_credentials"] = client_credentials(
                {
                    "authbridge_es256": servers["sqlite_es256"],
                    "authbridge_rs256": servers["sqlite_rs256"],
                    "oidc_provider": op,
                },
                cc_secret,
                cfg,
            )
            print(f"  {cfg.families} refresh chains, every request a rotation", flush=True)
            chains = {"sqlite": (servers["sqlite_es256"], seeded["sqlite_es256"])}
            if "postgres_es256" in servers:
                chains["postgres"] = (servers["postgres_es256"], seeded["postgres_es256"])
            else:
                print(f"  PostgreSQL unavailable, its rows skipped: {why_no_postgres}", flush=True)
            results["refresh"] = refresh_rotation(chains, cfg, workdir)
            results["refresh"]["postgres_unavailable"] = why_no_postgres

            print(
                f"  password storm: {cfg.storm_logins} logins in flight, probes of a JWT route",
                flush=True,
            )
            results["password_storm"] = password_storm(
                servers["sqlite_es256"], seeded["sqlite_es256"], cfg
            )

    other = max(
        r["other_cpu_cores"]
        for section in (results["client_credentials"], results["refresh"])
        for s in section["scenarios"].values()
        for r in s["rounds"]
    )
    results["max_other_cpu_cores"] = other
    results["disturbed"] = other > DISTURBED_CORES
    results["wrk"] = {
        "threads": cfg.threads,
        "connections": cfg.connections,
        "duration_s": cfg.duration_s,
        "rounds": cfg.rounds,
        "warmup_s": cfg.warmup_s,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.token_endpoint")
    sub = parser.add_subparsers(dest="command")
    storm = sub.add_parser("storm", help="(internal) keep password logins in flight")
    storm.add_argument("url")
    storm.add_argument("--secret", required=True)
    storm.add_argument("--users", required=True)
    storm.add_argument("--concurrency", type=int, default=50)
    storm.add_argument("--seconds", type=float, default=5.0)
    sub.add_parser("run", help="run the token benchmarks and print the JSON")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    if args.command == "storm":
        found = asyncio.run(
            _storm_main(
                args.url, args.secret, args.users.split(","), args.concurrency, args.seconds
            )
        )
        print(json.dumps(found))
        return 0
    text = json.dumps(run(QUICK if args.quick else None), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
