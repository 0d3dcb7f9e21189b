"""In-process micro benchmarks: first-sight (cold) and cached (warm) token validation.

Cold: every token is verified exactly once by authbridge (a fresh, pre-minted token per
iteration), so the verified-token cache never hits. The same tokens are fed to

* the floor: ``cryptography`` RSA PKCS#1 v1.5 / SHA-256 verify of the signing input and
  the already-decoded signature (nothing else: no parsing, no claims),
* PyJWT ``jwt.decode`` with the key, audience, issuer and required exp/iss/aud,
* joserfc ``jwt.decode`` followed by ``JWTClaimsRegistry.validate`` (exp/iss/aud essential),

and each is reported as a ratio to the floor. ``auth.verify`` is awaited in a loop inside a
single coroutine; the cost of awaiting a coroutine is billed to authbridge on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import httpx
import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey

from bench.common import AUDIENCE, ISSUER, SCOPE, median, settle, split_jws


@dataclass(frozen=True)
class Setup:
    """Everything the cold and warm loops need, built once."""

    auth: Any
    fake: Any
    jwk: dict[str, Any]


def fetch_jwk(fake: Any) -> dict[str, Any]:
    """Read the issuer's signing JWK the way any client would: discovery, then JWKS."""
    with httpx.Client(transport=fake.transport) as client:
        discovery = client.get(f"{ISSUER}/.well-known/openid-configuration").json()
        jwks = client.get(discovery["jwks_uri"]).json()
    keys = [k for k in jwks["keys"] if k.get("kty") == "RSA" and k.get("use", "sig") == "sig"]
    return dict(keys[0])


def make_setup() -> Setup:
    from authbridge import AuthBridge  # noqa: PLC0415
    from authbridge.testing import FakeIssuer  # noqa: PLC0415

    fake = FakeIssuer(issuer=ISSUER, audience=AUDIENCE)
    auth = AuthBridge(providers=[fake.provider(name="bench")], transport=fake.transport)
    return Setup(auth=auth, fake=fake, jwk=fetch_jwk(fake))


def mint(fake: Any, count: int, prefix: str) -> list[str]:
    return [
        fake.token(subject=f"{prefix}-{i}", scopes=[SCOPE], expires_in=3600) for i in range(count)
    ]


def _baselines(jwk: dict[str, Any]) -> dict[str, Callable[[Any], object]]:
    public_key = pyjwt.PyJWK(jwk).key
    pkcs1 = padding.PKCS1v15()
    sha256 = hashes.SHA256()
    jose_key = RSAKey.import_key(jwk)
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )
    pyjwt_options: Any = {"require": ["exp", "iss", "aud"]}

    def raw_verify(item: tuple[bytes, bytes]) -> None:
        signing_input, signature = item
        public_key.verify(signature, signing_input, pkcs1, sha256)

    def pyjwt_decode(token: str) -> object:
        return pyjwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options=pyjwt_options,
        )

    def joserfc_decode(token: str) -> object:
        decoded = jose_jwt.decode(token, jose_key, algorithms=["RS256"])
        registry.validate(decoded.claims)
        return decoded

    return {"raw_verify": raw_verify, "pyjwt": pyjwt_decode, "joserfc": joserfc_decode}


def _time_sync(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    start = perf_counter_ns()
    for item in items:
        fn(item)
    return (perf_counter_ns() - start) / len(items)


async def _time_verify(auth: Any, tokens: Sequence[str]) -> float:
    verify = auth.verify
    start = perf_counter_ns()
    for token in tokens:
        await verify(token)
    return (perf_counter_ns() - start) / len(tokens)


async def _noop(token: str) -> str:
    return token


async def _time_noop(tokens: Sequence[str]) -> float:
    start = perf_counter_ns()
    for token in tokens:
        await _noop(token)
    return (perf_counter_ns() - start) / len(tokens)


async def _cold(setup: Setup, iterations: int, repeats: int) -> dict[str, Any]:
    fake, auth = setup.fake, setup.auth
    # Warm-up: the first verify fetches discovery + JWKS; keep that out of the numbers.
    for token in mint(fake, 200, "warmup"):
        await auth.verify(token)
    batches = [mint(fake, iterations, f"cold{r}") for r in range(repeats)]
    sample = await auth.verify(mint(fake, 1, "check")[0])
    if getattr(sample, "subject", None) != "check-0":
        msg = f"unexpected principal from auth.verify: {sample!r}"
        raise RuntimeError(msg)

    baselines = _baselines(setup.jwk)
    names = ["raw_verify", "authbridge", "pyjwt", "joserfc"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r, tokens in enumerate(batches):
        split = [split_jws(t) for t in tokens]
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate to spread bias
        for name in order:
            settle()
            if name == "authbridge":
                ns = await _time_verify(auth, tokens)
            elif name == "raw_verify":
                ns = _time_sync(baselines[name], split)
            else:
                ns = _time_sync(baselines[name], tokens)
            samples[name].append(ns)

    us = {name: round(median(v) / 1000, 3) for name, v in samples.items()}
    floor = median(samples["raw_verify"])
    ratios = {name: round(median(samples[name]) / floor, 3) for name in names}
    return {
        "iterations_per_repeat": iterations,
        "repeats": repeats,
        "statistic": "median of repeats of mean-per-call",
        "cache_bypass": (
            "each authbridge iteration verifies a fresh pre-minted token (FakeIssuer.token, "
            "RS256, unique jti) that this AuthBridge instance has never seen; "
            "default cache_size"
        ),
        "us_per_token": us,
        "ratio_vs_raw_verify": ratios,
        "samples_us": {k: [round(x / 1000, 3) for x in v] for k, v in samples.items()},
    }


async def _warm(setup: Setup, iterations: int, repeats: int) -> dict[str, Any]:
    auth = setup.auth
    token = mint(setup.fake, 1, "warm")[0]
    await auth.verify(token)  # populate the verified-token cache
    tokens = [token] * iterations
    samples: list[float] = []
    noop: list[float] = []
    for _ in range(repeats):
        settle()
        samples.append(await _time_verify(auth, tokens))
        noop.append(await _time_noop(tokens))
    return {
        "iterations_per_repeat": iterations,
        "repeats": repeats,
        "us_per_token": round(median(samples) / 1000, 3),
        "await_noop_coroutine_us": round(median(noop) / 1000, 3),
        "samples_us": [round(x / 1000, 3) for x in samples],
    }


async def _main(
    cold_iterations: int, cold_repeats: int, warm_iterations: int, warm_repeats: int
) -> dict[str, Any]:
    setup = make_setup()
    async with setup.auth:
        cold = await _cold(setup, cold_iterations, cold_repeats)
        warm = await _warm(setup, warm_iterations, warm_repeats)
    return {"cold": cold, "warm": warm}


def run(
    cold_iterations: int = 2000,
    cold_repeats: int = 7,
    warm_iterations: int = 20000,
    warm_repeats: int = 7,
) -> dict[str, Any]:
    return asyncio.run(_main(cold_iterations, cold_repeats, warm_iterations, warm_repeats))
