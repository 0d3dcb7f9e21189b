"""Introspection: concurrent first sight of one opaque token, and cached validation.

N concurrent requests carrying the same new opaque token must cause exactly one
introspection call (they share it); afterwards the token is served from the
verification cache, measured in microseconds per validation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from time import perf_counter_ns
from typing import Any

import httpx

from authbridge import AuthBridge, Introspection, OIDCProvider

ISSUER = "https://op.bench.test"
AUDIENCE = "https://api.bench.test"
ENDPOINT = f"{ISSUER}/token/introspection"


def _bridge(calls: list[str], latency_s: float) -> AuthBridge:
    async def introspect(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        await asyncio.sleep(latency_s)  # a realistic round trip, so requests overlap
        body = {
            "active": True,
            "sub": "alice",
            "client_id": "bench-client",
            "scope": "items:read",
            "aud": AUDIENCE,
            "iss": ISSUER,
            "exp": 4_102_444_800,
            "token_type": "Bearer",
        }
        return httpx.Response(
            200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    provider = OIDCProvider(
        "op",
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_uri=f"{ISSUER}/jwks",
        introspection=Introspection(
            client_id="bench-rs", client_secret="bench-secret", endpoint=ENDPOINT
        ),
    )
    return AuthBridge([provider], transport=httpx.MockTransport(introspect))


async def _measure(concurrency: int, iterations: int, latency_s: float) -> dict[str, Any]:
    calls: list[str] = []
    auth = _bridge(calls, latency_s)
    token = secrets.token_urlsafe(32)
    await auth.resource_server.start(warm_up=False)
    try:
        principals = await asyncio.gather(*(auth.verify(token) for _ in range(concurrency)))
        assert all(p is principals[0] for p in principals)
        concurrent_calls = len(calls)
        samples = []
        for _ in range(5):
            started = perf_counter_ns()
            for _ in range(iterations):
                await auth.verify(token)
            samples.append((perf_counter_ns() - started) / iterations / 1000)
        samples.sort()
    finally:
        await auth.resource_server.aclose()
    return {
        "concurrency": concurrency,
        "introspection_calls": concurrent_calls,
        "cached_us": round(samples[len(samples) // 2], 3),
        "endpoint_latency_ms": latency_s * 1000,
    }


def run(
    concurrency: int = 200, iterations: int = 50_000, latency_s: float = 0.02
) -> dict[str, Any]:
    """Run both measurements and return their results."""
    return asyncio.run(_measure(concurrency, iterations, latency_s))


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
