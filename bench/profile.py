"""Profile authbridge's validation paths with cProfile (a helper for performance work).

Usage::

    python -m bench.profile cold            # first-sight RS256 validations
    python -m bench.profile warm            # verified-token cache hits
    python -m bench.profile http-warm       # whole ASGI request, one cached token
    python -m bench.profile http-distinct   # whole ASGI request, a new token each time

Each mode also prints the plain per-call time measured without the profiler, which
inflates Python-heavy code far more than C calls such as the RSA verify.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter_ns
from typing import Any

from bench.common import AUDIENCE, SCOPE
from bench.micro import make_setup, mint

MODES = ("cold", "warm", "http-warm", "http-distinct")


async def _loop(call: Callable[[Any], Awaitable[object]], items: Sequence[Any]) -> float:
    start = perf_counter_ns()
    for item in items:
        await call(item)
    return (perf_counter_ns() - start) / len(items) / 1000


async def _profile(
    call: Callable[[Any], Awaitable[object]],
    timed: Sequence[Any],
    profiled: Sequence[Any],
    sort: str,
    limit: int,
) -> None:
    print(f"without profiler: {await _loop(call, timed):.2f} us per call")
    profiler = cProfile.Profile()
    profiler.enable()
    await _loop(call, profiled)
    profiler.disable()
    pstats.Stats(profiler).sort_stats(sort).print_stats(limit)


def _asgi_caller(app: Any, path: str) -> Callable[[str], Awaitable[int]]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call(token: str) -> int:
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 40000),
            "state": {},
        }
        await app(scope, receive, send)
        if status != [200]:
            msg = f"GET {path} answered {status}"
            raise RuntimeError(msg)
        return status[0]

    return call


async def _in_process(mode: str, count: int, sort: str, limit: int) -> None:
    setup = make_setup()
    async with setup.auth:
        for token in mint(setup.fake, 50, "warmup"):
            await setup.auth.verify(token)
        if mode == "cold":
            timed, profiled = mint(setup.fake, count, "t"), mint(setup.fake, count, "p")
        else:
            token = mint(setup.fake, 1, "warm")[0]
            await setup.auth.verify(token)
            timed = profiled = [token] * count
        await _profile(setup.auth.verify, timed, profiled, sort, limit)


async def _http(mode: str, count: int, sort: str, limit: int) -> None:
    from authbridge.testing import FakeIssuer  # noqa: PLC0415

    with FakeIssuer.serve(audience=AUDIENCE) as fake:
        os.environ.update(
            AUTHBRIDGE_BENCH_ISSUER=fake.issuer,
            AUTHBRIDGE_BENCH_AUDIENCE=AUDIENCE,
            AUTHBRIDGE_BENCH_JWKS_URI=fake.jwks_uri,
        )
        from bench.app import app, auth  # noqa: PLC0415

        call = _asgi_caller(app, "/protected")
        async with auth:
            if mode == "http-distinct":
                tokens = [
                    fake.token(subject=f"u{i}", scopes=[SCOPE], expires_in=3600)
                    for i in range(2 * count)
                ]
                timed, profiled = tokens[:count], tokens[count:]
            else:
                token = fake.token(subject="warm", scopes=[SCOPE], expires_in=3600)
                timed = profiled = [token] * count
            await call(timed[0])
            open_call = _asgi_caller(app, "/open")
            print(f"unprotected /open: {await _loop(open_call, timed):.2f} us per request")
            await _profile(call, timed, profiled, sort, limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args(argv)
    runner = _http if args.mode.startswith("http") else _in_process
    asyncio.run(runner(args.mode, args.count, args.sort, args.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
