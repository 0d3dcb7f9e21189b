"""Helpers shared by the security tests: token crafting, clocks, transports, assertions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi import FastAPI, Security

from authbridge import AuthBridge, AuthBridgeError, InvalidToken, Principal
from authbridge.testing import FakeIssuer


class _Omit:
    """The type of OMIT."""

    def __repr__(self) -> str:
        return "OMIT"  # the same in every process: test ids show it (pytest-xdist compares them)


OMIT = _Omit()
"""Pass as a header or claim value to leave that member out (``None`` means JSON null)."""

T0 = 1_700_000_000
"""The injected clock's starting time (POSIX seconds)."""

GENERIC_401_BODY = {"detail": "Invalid or expired access token"}
INVALID_TOKEN_CHALLENGE = (
    'Bearer error="invalid_token", error_description="Invalid or expired access token"'
)

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


# -- encoding --------------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_int(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64(value.to_bytes(size, "big"))


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def segment(value: Any) -> str:
    """A header or payload segment: JSON-encode unless already bytes."""
    return b64(value if isinstance(value, bytes) else json_bytes(value))


def signing_input(header: Any, claims: Any) -> str:
    return f"{segment(header)}.{segment(claims)}"


# -- signing ---------------------------------------------------------------------------


def sign_bytes(alg: str, key: Any, data: bytes) -> bytes:
    """Sign ``data`` for JWS ``alg`` with ``key`` (RSA/EC private key or HMAC secret)."""
    family, bits = alg[:2], alg[2:]
    if family == "HS":
        return hmac.digest(key, data, getattr(hashlib, f"sha{bits}"))
    if family == "RS":
        return key.sign(data, padding.PKCS1v15(), _HASHES[bits]())
    if family == "PS":
        digest = _HASHES[bits]()
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return key.sign(data, pss, digest)
    if family == "ES":
        der = key.sign(data, ec.ECDSA(_HASHES[bits]()))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(alg)


def make_token(
    header: Any,
    claims: Any,
    key: Any = None,
    *,
    alg: str | None = None,
    signature: bytes | None = None,
) -> str:
    """Compact JWS with any header/claims (dicts, or raw JSON bytes).

    Signed with ``key`` under ``alg`` (default: the header's ``alg``), or carrying
    the given raw ``signature``.
    """
    data = signing_input(header, claims)
    if signature is None:
        use = alg or (header.get("alg") if isinstance(header, Mapping) else None)
        signature = sign_bytes(str(use), key, data.encode("ascii"))
    return f"{data}.{b64(signature)}"


def resign(token: str, key: Any, alg: str = "RS256") -> str:
    """Replace the signature of ``token`` by one over its own first two segments."""
    data = token.rsplit(".", 1)[0]
    return f"{data}.{b64(sign_bytes(alg, key, data.encode('ascii')))}"


def public_rsa_jwk(key: rsa.RSAPrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    jwk: dict[str, Any] = {"kty": "RSA", "n": b64_int(numbers.n), "e": b64_int(numbers.e)}
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


def public_ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
    jwk: dict[str, Any] = {
        "kty": "EC",
        "crv": crv,
        "x": b64_int(numbers.x, size),
        "y": b64_int(numbers.y, size),
    }
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


# -- time ------------------------------------------------------------------------------


class FakeClock:
    """An injectable clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def claims_at(fake: FakeIssuer, clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    """Valid access-token claims relative to ``clock`` (``OMIT`` removes a claim)."""
    now = int(clock.now)
    base = fake.claims(scopes=["items:read"])
    base.update({"iat": now, "exp": now + 300})
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not OMIT}


def token_at(
    fake: FakeIssuer,
    clock: FakeClock,
    *,
    header: Mapping[str, Any] | None = None,
    key: Any = None,
    **claims: Any,
) -> str:
    """A token signed by the issuer's current key (or ``key``) with claims relative to ``clock``."""
    jose: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": fake.kid}
    jose.update(header or {})
    jose = {k: v for k, v in jose.items() if v is not OMIT}
    return make_token(jose, claims_at(fake, clock, **claims), key or fake.key, alg="RS256")


# -- outbound HTTP ---------------------------------------------------------------------

Override = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response] | None]


class Upstream:
    """A programmable upstream in front of one or more FakeIssuers.

    Every outbound request is recorded (full URL). ``on(path, handler)`` overrides a
    path (a handler returning ``None`` falls through); requests to hosts of no
    configured issuer get 404.
    """

    def __init__(self, *issuers: FakeIssuer) -> None:
        self.issuers = list(issuers)
        self.urls: list[str] = []
        self._overrides: dict[tuple[str | None, str], Override] = {}
        self.transport = httpx.MockTransport(self._handle)

    def on(self, path: str, handler: Override, *, host: str | None = None) -> None:
        self._overrides[(host, path)] = handler

    def clear(self) -> None:
        self._overrides.clear()

    def count(self, fragment: str) -> int:
        """How many requested URLs contain ``fragment``."""
        return sum(fragment in url for url in self.urls)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        path = request.url.path
        for key in ((request.url.host, path), (None, path)):
            override = self._overrides.get(key)
            if override is not None:
                result = override(request)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    return result
        for fake in self.issuers:
            if httpx.URL(fake.issuer).host == request.url.host:
                return await fake.transport.handle_async_request(request)
        return httpx.Response(404, json={"error": "unknown_host"})


# -- running the core ------------------------------------------------------------------


def outcomes(
    auth: AuthBridge, tokens: Iterable[str | Callable[[], object]], *, warm: bool = True
) -> list[Principal | AuthBridgeError]:
    """Verify each token in turn (inside one event loop); collect results or errors.

    Callables among ``tokens`` are called in sequence (e.g. to move the clock) and
    produce no result. With ``warm``, the bridge is entered first (keys loaded).
    """

    async def go() -> list[Principal | AuthBridgeError]:
        results: list[Principal | AuthBridgeError] = []
        for token in tokens:
            if callable(token):
                token()
                continue
            try:
                results.append(await auth.verify(token))
            except AuthBridgeError as exc:
                results.append(exc)
        return results

    async def main() -> list[Principal | AuthBridgeError]:
        if not warm:
            return await go()
        async with auth:
            return await go()

    return asyncio.run(main())


def outcome(auth: AuthBridge, token: str, *, warm: bool = True) -> Principal | AuthBridgeError:
    return outcomes(auth, [token], warm=warm)[0]


def rejected(auth: AuthBridge, token: str, *, warm: bool = True) -> InvalidToken:
    """Verify ``token``; it must be refused with :class:`InvalidToken`."""
    result = outcome(auth, token, warm=warm)
    assert isinstance(result, InvalidToken), f"expected InvalidToken, got {result!r}"
    return result


def accepted(auth: AuthBridge, token: str, *, warm: bool = True) -> Principal:
    result = outcome(auth, token, warm=warm)
    assert isinstance(result, Principal), f"expected a Principal, got {result!r}"
    return result


# -- HTTP ------------------------------------------------------------------------------


def make_app(auth: AuthBridge) -> FastAPI:
    """A small protected API."""
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"sub": user.subject}

    @app.get("/admin")
    async def admin(user: Principal = Security(auth.principal, scopes=["admin"])) -> dict:
        return {"sub": user.subject}

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {"sub": None if user is None else user.subject}

    return app


def assert_r401(response: httpx.Response) -> None:
    """401 with an ``invalid_token`` challenge and the generic body."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
    assert response.json() == GENERIC_401_BODY


def assert_bare_challenge(response: httpx.Response) -> None:
    """401 for absent credentials: bare ``Bearer`` challenge, no ``error``."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "error" not in response.headers["www-authenticate"]
    assert response.json() == {"detail": "Not authenticated"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
