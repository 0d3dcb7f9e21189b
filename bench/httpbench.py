"""HTTP throughput: uvicorn serving ``bench.app`` in a subprocess, wrk in another.

One uvicorn worker, ``--no-access-log``; uvloop/httptools are used only if already
installed (what was used is recorded). wrk runs ``-t1 -c32`` on 127.0.0.1; every
scenario is warmed up before it is measured. The FakeIssuer's discovery + JWKS are served
over real HTTP on loopback (``FakeIssuer.serve``) from this process, so the server fetches
keys the way it would from a real provider.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import AUDIENCE, BENCH_DIR, OUT_DIR, PYTHON, REPO_ROOT, SCOPE, python_env

LUA_SCRIPT = BENCH_DIR / "distinct.lua"


@dataclass(frozen=True)
class WrkConfig:
    threads: int = 1
    connections: int = 32
    duration_s: int = 10
    warmup_s: int = 2


def server_flavour() -> dict[str, str]:
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {"loop": loop, "http": http}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(issuer: str, jwks_uri: str, log_path: Path) -> Iterator[dict[str, Any]]:
    """Start ``uvicorn bench.app:app`` as a subprocess; stop it (by PID) on exit."""
    port = free_port()
    flavour = server_flavour()
    argv = [
        PYTHON, "-m", "uvicorn", "bench.app:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--loop", flavour["loop"], "--http", flavour["http"],
    ]  # fmt: skip
    env = python_env()
    env.update(
        AUTHBRIDGE_BENCH_ISSUER=issuer,
        AUTHBRIDGE_BENCH_AUDIENCE=AUDIENCE,
        AUTHBRIDGE_BENCH_JWKS_URI=jwks_uri,
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/open", log_path)
        yield {"base_url": base, "pid": proc.pid, "argv": argv[1:], **flavour}
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"uvicorn exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    msg = f"uvicorn did not become ready within 60 s; see {log_path}"
    raise RuntimeError(msg)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([\d.]+\w+)", output):
        result["requests"] = int(m.group(1))
    if m := re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output):
        result["latency_avg_ms"] = _ms(m.group(1))
        result["latency_max_ms"] = _ms(m.group(3))
    for pct in ("50", "90", "99"):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.MULTILINE):
            result[f"latency_p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    if "rps" not in result:
        msg = f"could not parse wrk output:\n{output}"
        raise RuntimeError(msg)
    return result


def wrk(
    url: str,
    cfg: WrkConfig,
    duration_s: int,
    *,
    token: str | None = None,
    tokens_file: Path | None = None,
    start_index: int = 0,
) -> dict[str, Any]:
    argv = [
        "wrk", f"-t{cfg.threads}", f"-c{cfg.connections}", f"-d{duration_s}s",
        "--timeout", "10s", "--latency",
    ]  # fmt: skip
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if tokens_file is not None:
        argv += ["-s", str(LUA_SCRIPT), url, "--", str(tokens_file), str(start_index)]
    else:
        argv.append(url)
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    if proc.returncode != 0:
        msg = f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    return parse_wrk(proc.stdout)


def _scenario(
    name: str, url: str, cfg: WrkConfig, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    warm = wrk(url, cfg, cfg.warmup_s, **kwargs)
    if "tokens_file" in kwargs:  # continue where the warm-up stopped: no token is reused
        skip = warm["requests"] + 2 * cfg.connections
        kwargs["start_index"] = kwargs.get("start_index", 0) + skip
    measured = wrk(url, cfg, cfg.duration_s, **kwargs)
    measured["warmup_requests"] = warm["requests"]
    if measured["non_2xx"] or measured["socket_errors"]:
        msg = f"{name}: {measured['non_2xx']} non-2xx, {measured['socket_errors']} socket errors"
        raise RuntimeError(msg)
    print(
        f"  {name:<22} {measured['rps']:>9.1f} req/s"
        f"  p50 {measured.get('latency_p50_ms', float('nan')):.2f} ms"
        f"  p99 {measured.get('latency_p99_ms', float('nan')):.2f} ms",
        flush=True,
    )
    return measured, kwargs


def tokens_needed(warm_rps: float, cfg: WrkConfig) -> int:
    """Enough distinct tokens that the distinct run (never faster than the warm one) never
    wraps around: warm req/s x (warm-up + measured seconds) plus headroom."""
    budget = warm_rps * (cfg.warmup_s + cfg.duration_s) * 1.15 + 4 * cfg.connections
    return max(1_000, int(budget))


def mint_tokens(fake: Any, count: int, path: Path) -> float:
    started = time.perf_counter()
    with path.open("w", encoding="ascii") as fh:
        for i in range(count):
            fh.write(fake.token(subject=f"user-{i}", scopes=[SCOPE], expires_in=3600))
            fh.write("\n")
    return time.perf_counter() - started


def run(cfg: WrkConfig | None = None) -> dict[str, Any]:
    from authbridge.testing import FakeIssuer  # noqa: PLC0415

    cfg = cfg or WrkConfig()
    if shutil.which("wrk") is None:
        msg = "wrk not found: install it (apt-get install -y wrk) or use bench/run.sh"
        raise RuntimeError(msg)
    OUT_DIR.mkdir(exist_ok=True)
    tokens_file = OUT_DIR / "distinct_tokens.txt"
    results: dict[str, dict[str, Any]] = {}
    with FakeIssuer.serve(audience=AUDIENCE) as fake:
        discovery = httpx.get(f"{fake.issuer}/.well-known/openid-configuration").json()
        warm_token = fake.token(subject="warm", scopes=[SCOPE], expires_in=3600)
        with uvicorn_server(fake.issuer, discovery["jwks_uri"], OUT_DIR / "uvicorn.log") as server:
            base = server["base_url"]
            _check_routes(base, warm_token)
            results["unprotected"], _ = _scenario("unprotected", f"{base}/open", cfg)
            results["protected_warm"], _ = _scenario(
                "protected warm token", f"{base}/protected", cfg, token=warm_token
            )
            # Minted while the server idles, sized from the warm run so that no token repeats.
            count = tokens_needed(results["protected_warm"]["rps"], cfg)
            mint_s = mint_tokens(fake, count, tokens_file)
            print(f"  minted {count} distinct RS256 tokens in {mint_s:.1f} s", flush=True)
            results["protected_distinct"], used = _scenario(
                "protected distinct", f"{base}/protected", cfg, tokens_file=tokens_file
            )
            results["tutorial_pyjwt"], _ = _scenario(
                "tutorial (PyJWT)", f"{base}/tutorial", cfg, token=warm_token
            )
            results["unprotected_again"], _ = _scenario("unprotected (again)", f"{base}/open", cfg)

    distinct = results["protected_distinct"]
    distinct["tokens_in_file"] = count
    distinct["tokens_sent_incl_warmup"] = used["start_index"] + distinct["requests"]
    distinct["tokens_reused"] = distinct["tokens_sent_incl_warmup"] > count
    baseline = (results["unprotected"]["rps"] + results["unprotected_again"]["rps"]) / 2
    return {
        "server": {
            "command": "python " + " ".join(server["argv"]),
            "workers": 1,
            "loop": server["loop"],
            "http": server["http"],
        },
        "wrk": {
            "threads": cfg.threads,
            "connections": cfg.connections,
            "duration_s": cfg.duration_s,
            "warmup_s": cfg.warmup_s,
        },
        "distinct_token_mint_s": round(mint_s, 1),
        "baseline_rps": round(baseline, 1),
        "scenarios": results,
        "ratios": {
            "warm": round(results["protected_warm"]["rps"] / baseline, 3),
            "distinct": round(distinct["rps"] / baseline, 3),
            "tutorial": round(results["tutorial_pyjwt"]["rps"] / baseline, 3),
        },
    }


def _check_routes(base: str, token: str) -> None:
    """Fail fast if a route does not answer 200 with the token (or 401 without it)."""
    expected: Sequence[tuple[str, str | None, int]] = [
        ("/open", None, 200),
        ("/protected", token, 200),
        ("/protected", None, 401),
        ("/tutorial", token, 200),
        ("/tutorial", None, 401),
    ]
    for path, tok, status in expected:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        got = httpx.get(f"{base}{path}", headers=headers, timeout=10)
        if got.status_code != status:
            msg = f"GET {path} -> {got.status_code} (expected {status}): {got.text}"
            raise RuntimeError(msg)
