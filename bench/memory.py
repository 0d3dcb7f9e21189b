"""Peak RSS after validating many distinct tokens; run in a fresh process.

Usage: ``python -m bench.memory --count 1000000`` prints one JSON object on stdout.

Minting a million RSA-signed tokens would take minutes, so this uses an HS256 provider
(``hmac_secret``) and mints each token on the fly with ``hmac`` (a few µs per token); the
tokens are never stored, so the process's memory is the library's (mostly its verified-token
cache, which must stay bounded by ``cache_size``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench.common import (
    AUDIENCE,
    ISSUER,
    SCOPE,
    b64url_encode,
    current_rss_mib,
    hwm_rss_mib,
    maxrss_mib,
)

CHECKPOINTS = (0.01, 0.02, 0.1, 0.25, 0.5, 0.75, 1.0)  # of the token count: RSS samples
CACHE_SIZE = 10_000  # the library's default, spelled out so the result can name it
SECRET = b"bench-hmac-secret-0123456789abcdef0123456789abcdef"


def hs256_tokens(count: int, start: int = 0) -> Iterator[str]:
    header = b64url_encode(b'{"alg":"HS256","typ":"at+jwt"}')
    now = int(time.time())
    head = f'{{"iss":"{ISSUER}","aud":"{AUDIENCE}","scope":"{SCOPE}","iat":{now},"exp":{now + 3600}'
    for i in range(start, start + count):
        payload = f'{head},"sub":"user-{i}","jti":"jti-{i}"}}'.encode()
        signing_input = header + b"." + b64url_encode(payload)
        signature = hmac.new(SECRET, signing_input, hashlib.sha256).digest()
        yield (signing_input + b"." + b64url_encode(signature)).decode("ascii")


async def measure(count: int) -> dict[str, Any]:
    from authbridge import AuthBridge, OIDCProvider  # noqa: PLC0415

    provider = OIDCProvider(
        "bench-hs256", ISSUER, AUDIENCE, hmac_secret=SECRET, algorithms=("HS256",)
    )
    auth = AuthBridge(providers=[provider], cache_size=CACHE_SIZE)
    async with auth:
        for token in hs256_tokens(1_000, start=count):  # warm every code path once
            await auth.verify(token)
        baseline_peak = maxrss_mib()
        baseline_current = current_rss_mib()
        baseline_hwm = hwm_rss_mib()
        marks = {max(1, round(count * f)) for f in CHECKPOINTS}
        trace: list[dict[str, float]] = []
        verify = auth.verify
        started = time.perf_counter()
        for i, token in enumerate(hs256_tokens(count), start=1):
            principal = await verify(token)
            if i in marks:
                trace.append({"tokens": i, "rss_mib": round(current_rss_mib(), 1)})
        elapsed = time.perf_counter() - started
        if principal.subject != f"user-{count - 1}":
            msg = f"unexpected principal {principal!r}"
            raise RuntimeError(msg)
        server = getattr(auth, "resource_server", None)
        cached = getattr(server, "cached_tokens", None)
    peak = maxrss_mib()
    # ru_maxrss survives exec: a child starts with its parent's peak. The suite therefore runs
    # this first, while the parent is small; VmHWM (reset by exec) is recorded as a check.
    return {
        "tokens": count,
        "algorithm": "HS256 via an hmac_secret provider, tokens minted on the fly and never kept",
        "cache_size": CACHE_SIZE,
        "cached_tokens_at_end": cached,
        "baseline_peak_rss_mib": round(baseline_peak, 1),
        "baseline_current_rss_mib": round(baseline_current, 1),
        "baseline_vmhwm_mib": round(baseline_hwm, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_vmhwm_mib": round(hwm_rss_mib(), 1),
        "final_current_rss_mib": round(current_rss_mib(), 1),
        "growth_mib": round(peak - baseline_peak, 1),
        "rss_trace": trace,
        "seconds": round(elapsed, 1),
        "us_per_token_incl_minting": round(elapsed / count * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.count))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
