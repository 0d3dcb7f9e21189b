"""HTTP throughput: uvicorn serving ``bench.app`` in a subprocess, wrk in another.

One uvicorn worker, ``--no-access-log``; uvloop/httptools are used only if already
installed (what was used is recorded). wrk runs ``-t1 -c32`` on 127.0.0.1. Every scenario
is warmed up, then measured in a few rounds, round-robin, so that a disturbance (another
process taking CPU) hits all scenarios alike rather than one; ratios are the median of the
per-round ratios. CPU used by other processes during each run is recorded.

The FakeIssuer's discovery + JWKS are served over real HTTP on loopback
(``FakeIssuer.serve``) from this process, so the server fetches keys the way it would from a
real provider.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import statistics
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
    duration_s: int = 5
    rounds: int = 3
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
        yield {"base_url": base, "pid": proc.pid, "port": port, "argv": argv[1:], **flavour}
    finally:
        _stop(proc)


def _wait_ready(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, *, status: int = 200
) -> None:
    """Wait until ``url`` answers with ``status`` (the server is up and configured)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"uvicorn exited with {proc.returncode}; see {log_path}:\n{log_path.read_text()}"
            raise RuntimeError(msg)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == status:
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


_TICK = os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def _process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _own_cpu_s() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children (each wrk run)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    path: str
    token: str | None = None
    distinct: bool = False


class Load:
    """Runs wrk against one server; walks the distinct-token file without ever going back."""

    def __init__(self, base_url: str, server_pid: int, cfg: WrkConfig, tokens_file: Path) -> None:
        self.base_url = base_url
        self.server_pid = server_pid
        self.cfg = cfg
        self.tokens_file = tokens_file
        self.next_token = 0

    def run(self, scenario: Scenario, duration_s: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"token": scenario.token}
        if scenario.distinct:
            kwargs = {"tokens_file": self.tokens_file, "start_index": self.next_token}
        busy0, steal0 = _machine_cpu_s()
        server0 = _process_cpu_s(self.server_pid)
        own0, wrk0 = _own_cpu_s()
        started = time.perf_counter()
        result = wrk(f"{self.base_url}{scenario.path}", self.cfg, duration_s, **kwargs)
        wall = time.perf_counter() - started
        busy1, steal1 = _machine_cpu_s()
        server = _process_cpu_s(self.server_pid) - server0
        own1, wrk1 = _own_cpu_s()
        other = (busy1 - busy0) - server - (wrk1 - wrk0) - (own1 - own0)
        result["server_cpu_cores"] = round(server / wall, 3)
        result["server_cpu_us_per_request"] = round(server / max(1, result["requests"]) * 1e6, 1)
        result["other_cpu_cores"] = round(max(0.0, other) / wall, 3)
        result["steal_cpu_cores"] = round((steal1 - steal0) / wall, 3)
        if scenario.distinct:
            # wrk may have sent up to one request per connection past its count.
            result["first_token_index"] = self.next_token
            self.next_token += result["requests"] + 2 * self.cfg.connections
        if result["non_2xx"] or result["socket_errors"]:
            msg = (
                f"{scenario.key}: {result['non_2xx']} non-2xx responses, "
                f"{result['socket_errors']} socket errors"
            )
            raise RuntimeError(msg)
        return result


def tokens_needed(rps: float, seconds: float, cfg: WrkConfig) -> int:
    """Tokens for ``seconds`` of load at ``rps``, with headroom for a faster moment."""
    return max(500, int(rps * seconds * 1.25) + 4 * cfg.connections)


def mint_tokens(fake: Any, count: int, path: Path, *, first: int = 0) -> float:
    """Append ``count`` distinct tokens to ``path``; return the seconds it took."""
    started = time.perf_counter()
    with path.open("a", encoding="ascii") as fh:
        for i in range(first, first + count):
            fh.write(fake.token(subject=f"user-{i}", scopes=[SCOPE], expires_in=3600))
            fh.write("\n")
    return time.perf_counter() - started


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "rps": round(_median([r["rps"] for r in runs]), 1),
        "requests": sum(r["requests"] for r in runs),
    }
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_avg_ms"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = round(_median(values), 3)
    for key in (
        "server_cpu_cores",
        "server_cpu_us_per_request",
        "other_cpu_cores",
        "steal_cpu_cores",
    ):
        summary[key] = round(_median([r[key] for r in runs]), 3)
    summary["rounds"] = runs
    return summary


def run(cfg: WrkConfig | None = None) -> dict[str, Any]:
    from authbridge.testing import FakeIssuer  # noqa: PLC0415

    cfg = cfg or WrkConfig()
    if shutil.which("wrk") is None:
        msg = "wrk not found: install it (apt-get install -y wrk) or use bench/run.sh"
        raise RuntimeError(msg)
    OUT_DIR.mkdir(exist_ok=True)
    tokens_file = OUT_DIR / "distinct_tokens.txt"
    with FakeIssuer.serve(audience=AUDIENCE) as fake:
        discovery = httpx.get(f"{fake.issuer}/.well-known/openid-configuration").json()
        warm_token = fake.token(subject="warm", scopes=[SCOPE], expires_in=3600)
        scenarios = [
            Scenario("unprotected", "unprotected", "/open"),
            Scenario("protected_warm", "protected, warm token", "/protected", warm_token),
            Scenario("protected_distinct", "protected, distinct", "/protected", distinct=True),
            Scenario("tutorial_pyjwt", "tutorial (PyJWT)", "/tutorial", warm_token),
            Scenario("noop_dependency", "no-op dependency", "/noop", warm_token),
        ]
        with uvicorn_server(fake.issuer, discovery["jwks_uri"], OUT_DIR / "uvicorn.log") as server:
            _check_routes(server["base_url"], warm_token)
            load = Load(server["base_url"], server["pid"], cfg, tokens_file)
            load.run(scenarios[0], cfg.warmup_s)
            warm_up = load.run(scenarios[1], cfg.warmup_s)
            # Minted while the server idles, in two steps: enough for the distinct warm-up
            # (sized from the warm run: distinct is never faster), then enough for the
            # measured rounds at the rate the warm-up showed. No token is ever sent twice.
            tokens_file.unlink(missing_ok=True)
            count = tokens_needed(warm_up["rps"], cfg.warmup_s, cfg)
            mint_s = mint_tokens(fake, count, tokens_file)
            distinct_warm_up = load.run(scenarios[2], cfg.warmup_s)
            more = tokens_needed(distinct_warm_up["rps"], cfg.rounds * cfg.duration_s, cfg)
            mint_s += mint_tokens(fake, more, tokens_file, first=count)
            count += more
            print(f"  minted {count} distinct RS256 tokens in {mint_s:.1f} s", flush=True)
            load.run(scenarios[3], cfg.warmup_s)
            load.run(scenarios[4], cfg.warmup_s)
            runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in scenarios}
            for r in range(cfg.rounds):
                order = scenarios[r % len(scenarios) :] + scenarios[: r % len(scenarios)]
                for scenario in order:
                    runs[scenario.key].append(load.run(scenario, cfg.duration_s))
                print(
                    f"  round {r + 1}/{cfg.rounds}: "
                    + ", ".join(f"{s.label} {runs[s.key][-1]['rps']:.0f}" for s in scenarios)
                    + " req/s",
                    flush=True,
                )

    results = {key: _summarise(value) for key, value in runs.items()}
    base = runs["unprotected"]
    ratios = {
        name: round(_median([x["rps"] / b["rps"] for x, b in zip(runs[key], base, strict=True)]), 3)
        for name, key in (
            ("warm", "protected_warm"),
            ("distinct", "protected_distinct"),
            ("tutorial", "tutorial_pyjwt"),
            ("noop_dependency", "noop_dependency"),
        )
    }
    distinct = results["protected_distinct"]
    distinct["tokens_in_file"] = count
    distinct["tokens_sent_incl_warmup"] = load.next_token
    distinct["tokens_reused"] = load.next_token > count
    other = max(r["other_cpu_cores"] for rs in runs.values() for r in rs)
    return {
        "server": {
            "command": "python "
            + " ".join(server["argv"]).replace(f"--port {server['port']}", "--port <free port>"),
            "workers": 1,
            "loop": server["loop"],
            "http": server["http"],
        },
        "wrk": {
            "threads": cfg.threads,
            "connections": cfg.connections,
            "duration_s": cfg.duration_s,
            "rounds": cfg.rounds,
            "warmup_s": cfg.warmup_s,
        },
        "method": (
            "each scenario warmed up once, then measured in rounds (scenario order rotated "
            "each round); req/s = median over rounds; ratio = median over rounds of the "
            "scenario's req/s over the unprotected req/s of the same round"
        ),
        "distinct_token_mint_s": round(mint_s, 1),
        "baseline_rps": results["unprotected"]["rps"],
        "max_other_cpu_cores": other,
        "disturbed": other > DISTURBED_CORES,
        "scenarios": results,
        "ratios": ratios,
    }


DISTURBED_CORES = 0.15
"""Other processes using more than this share of a core during a measured run."""


def _check_routes(base: str, token: str) -> None:
    """Fail fast if a route does not answer 200 with the token (or 401 without it)."""
    expected: Sequence[tuple[str, str | None, int]] = [
        ("/open", None, 200),
        ("/protected", token, 200),
        ("/protected", None, 401),
        ("/tutorial", token, 200),
        ("/tutorial", None, 401),
        ("/noop", token, 200),
    ]
    for path, tok, status in expected:
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        got = httpx.get(f"{base}{path}", headers=headers, timeout=10)
        if got.status_code != status:
            msg = f"GET {path} -> {got.status_code} (expected {status}): {got.text}"
            raise RuntimeError(msg)
