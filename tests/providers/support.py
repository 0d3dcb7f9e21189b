"""Plain httpx.MockTransport fakes of providers' documented answers, and token signing."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authbridge._http import HttpClientHolder
from authbridge.client import AuthorizationRequest, ProviderLogin, code_challenge

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "k1"
VERIFIER = "v" * 43 + "erifier-high-entropy-enough"
NONCE = "nonce-0123456789abcdef"
REDIRECT = "https://app.example.com/oauth/callback"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwks() -> dict[str, Any]:
    numbers = KEY.public_key().public_numbers()
    return {
        "keys": [
            {
                "kty": "RSA",
                "kid": KID,
                "use": "sig",
                "alg": "RS256",
                "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": b64(numbers.e.to_bytes(3, "big")),
            }
        ]
    }


def sign(claims: Mapping[str, Any], *, header: Mapping[str, Any] | None = None) -> str:
    head = {"alg": "RS256", "kid": KID, "typ": "JWT", **(header or {})}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(dict(claims)).encode())}"
    signature = KEY.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def at_hash(access_token: str) -> str:
    return b64(hashlib.sha256(access_token.encode()).digest()[:16])


def id_claims(issuer: str, client_id: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": "user-1",
        "aud": client_id,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def claims_of(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = jwt.split(".")
    return json.loads(unb64(head)), json.loads(unb64(body))


Reply = Callable[[httpx.Request], httpx.Response]


@dataclass
class Fake:
    """Answers by URL (scheme, host and path); remembers every request."""

    routes: dict[str, Reply | dict[str, Any] | list[Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url.copy_with(query=None))
        reply = self.routes.get(url)
        if reply is None:
            return httpx.Response(404, json={"error": "not_found"})
        if callable(reply):
            return reply(request)
        return httpx.Response(200, json=reply)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def holder(self) -> HttpClientHolder:
        return HttpClientHolder(self.transport, trust_env=False)

    def urls(self) -> list[str]:
        return [str(r.url.copy_with(query=None)) for r in self.requests]

    def last(self, url: str) -> httpx.Request:
        return [r for r in self.requests if str(r.url.copy_with(query=None)) == url][-1]


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def auth_request(login: ProviderLogin, state: str = "state-123") -> AuthorizationRequest:
    return AuthorizationRequest(
        redirect_uri=REDIRECT,
        state=state,
        code_challenge=code_challenge(VERIFIER) if login.uses_pkce else None,
        nonce=NONCE if login.uses_nonce else None,
        scopes=login.scopes,
    )


def token_reply(**body: Any) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3600, **body})

    return reply


def clock() -> float:
    return time.time()


async def run_login(
    provider: Any, fake: Fake, *, code: str = "code-1", callback: dict[str, str] | None = None
) -> tuple[ProviderLogin, str, Any]:
    """Bind the provider's login, build the authorize URL, redeem a code, read the identity
    (completed with the ``callback`` fields the provider declares, as the login client does)."""
    login = provider.bind_login(fake.holder().session, clock, timeout=5.0)
    url = await login.authorization_url(auth_request(login))
    tokens = await login.redeem(
        code, code_verifier=VERIFIER if login.uses_pkce else None, redirect_uri=REDIRECT
    )
    identity = await login.identity(tokens, nonce=NONCE if login.uses_nonce else None)
    if callback is not None and login.callback_fields:
        fields = {k: v for k, v in callback.items() if k in login.callback_fields}
        identity = login.from_callback(identity, fields)
    return login, url, identity


def oidc_fake(
    issuer: str, client_id: str, *, userinfo: dict[str, Any] | None = None, **id_extra: Any
) -> Fake:
    """A discovery-based OpenID Provider at ``issuer`` answering one code."""
    base = issuer.rstrip("/")
    doc: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "end_session_endpoint": f"{base}/logout",
    }
    if userinfo is not None:
        doc["userinfo_endpoint"] = f"{base}/userinfo"
    access = "at-" + "x" * 20
    fake = Fake(
        {
            f"{base}/.well-known/openid-configuration": doc,
            f"{base}/jwks": jwks(),
            f"{base}/token": token_reply(
                access_token=access,
                id_token=sign(id_claims(issuer, client_id, at_hash=at_hash(access), **id_extra)),
            ),
        }
    )
    if userinfo is not None:
        fake.routes[f"{base}/userinfo"] = userinfo
    return fake
