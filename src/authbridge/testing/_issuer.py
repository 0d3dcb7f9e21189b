"""The fake issuer behind [`authbridge.testing`][authbridge.testing]."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..providers.oidc import OIDCProvider

__all__ = ["BadTokens", "FakeIssuer", "ServedFakeIssuer", "sign_jwt"]

_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def sign_jwt(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: rsa.RSAPrivateKey | bytes | None,
) -> str:
    """Sign a compact JWS with an RSA key (RS256), an HMAC secret (HS256) or nothing.

    The header is used as given, so tests can craft any ``alg``/``typ``/``kid``.
    """
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    if key is None:
        signature = b""
    elif isinstance(key, bytes):
        signature = hmac.digest(key, signing_input.encode("ascii"), hashlib.sha256)
    else:
        signature = key.sign(signing_input.encode("ascii"), _PKCS1, _SHA256)
    return f"{signing_input}.{_b64(signature)}"


def _public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _int_b64(numbers.n),
        "e": _int_b64(numbers.e),
    }


class FakeIssuer:
    """An in-process OpenID Provider for tests: RSA keys, discovery, JWKS, token minting.

    Args:
        issuer: The issuer URL it claims (any URL; nothing listens there unless
            you use `serve()`).
        audience: Default ``aud`` of minted tokens.
        key: An RSA private key to sign with (a 2048-bit key is generated if
            omitted; pass one to share it between tests and save time).
        kid: The key id.

    Attributes:
        transport: An `httpx.MockTransport` answering discovery and JWKS
            requests for this issuer; pass it as ``AuthBridge(transport=...)``.
        requests: Paths requested through ``transport`` or the served port.
        bad: Factory of deliberately invalid tokens ([`BadTokens`][authbridge.testing.BadTokens]).
    """

    def __init__(
        self,
        issuer: str = "https://issuer.example.test",
        audience: str = "https://api.example.test",
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str = "test-key-1",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        self._extra_keys: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.transport = httpx.MockTransport(self._handle)
        self.bad = BadTokens(self)

    # -- what the issuer publishes -------------------------------------------------

    @property
    def jwks_uri(self) -> str:
        """Where the JWKS is served."""
        return f"{self.issuer.rstrip('/')}/jwks"

    def jwks(self) -> dict[str, Any]:
        """The published JWKS (public members only)."""
        return {"keys": [_public_jwk(self.key, self.kid), *self._extra_keys]}

    def discovery_document(self) -> dict[str, Any]:
        """The OpenID Connect discovery document."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "items:read", "items:write", "admin"],
        }

    def rotate_key(self, *, keep_old: bool = False) -> None:
        """Sign with a fresh key (and a new ``kid``) from now on.

        A resource server using `provider()` fetches the new key on the first
        token that carries it. Without
        ``keep_old``, the old key is no longer published: its tokens stop
        validating once the key set is fetched again.
        """
        if keep_old:
            self._extra_keys.append(_public_jwk(self.key, self.kid))
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"test-key-{secrets.token_hex(4)}"

    def add_jwk(self, jwk: Mapping[str, Any]) -> None:
        """Publish an extra (possibly odd or weak) JWK alongside the signing key."""
        self._extra_keys.append(dict(jwk))

    def _respond(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        base_path = httpx.URL(self.issuer).path.rstrip("/")
        if path == f"{base_path}/.well-known/openid-configuration":
            return 200, _json(self.discovery_document())
        if path == httpx.URL(self.jwks_uri).path:
            return 200, _json(self.jwks())
        return 404, b'{"error":"not_found"}'

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != httpx.URL(self.issuer).host:
            return httpx.Response(404, json={"error": "unknown_host"})
        status, body = self._respond(request.url.path)
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    # -- configuration helpers -------------------------------------------------------

    def provider(self, name: str = "fake", **kwargs: Any) -> OIDCProvider:
        """An [OIDCProvider][authbridge.OIDCProvider] that trusts this issuer.

        Keyword arguments pass through to ``OIDCProvider``. Two defaults differ:
        ``audience`` is this issuer's default audience, and ``jwks_cooldown``
        is ``0.0``, so that after `rotate_key()` a token with the new ``kid``
        validates at once (the refetch is not held back by the cooldown that
        protects production from unknown-``kid`` storms). Pass
        ``jwks_cooldown=30.0`` to test with the production default.
        """
        kwargs.setdefault("audience", self.audience)
        kwargs.setdefault("jwks_cooldown", 0.0)
        return OIDCProvider(name, issuer=self.issuer, **kwargs)

    # -- minting -----------------------------------------------------------------------

    def claims(
        self,
        *,
        subject: str | None = "alice",
        scopes: Sequence[str] = (),
        expires_in: float = 300,
        audience: str | Sequence[str] | None = None,
        client_id: str = "test-client",
        **extra: Any,
    ) -> dict[str, Any]:
        """The claims `token()` would sign (``extra`` overrides; ``None`` removes)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience if audience is None else audience,
            "exp": int(now + expires_in),
            "iat": now,
            "jti": secrets.token_urlsafe(12),
            "client_id": client_id,
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        subject: str | None = "alice",
        scopes: Sequence[str] = (),
        *,
        expires_in: float = 300,
        audience: str | Sequence[str] | None = None,
        header: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """Mint a valid RFC 9068 access token (RS256, ``typ: at+jwt``).

        Args:
            subject: ``sub`` (``None`` omits it).
            scopes: Granted scopes, joined into the ``scope`` claim.
            expires_in: Seconds until ``exp`` (negative for an expired token).
            audience: ``aud``; the issuer's default audience if omitted.
            header: Header members to add or override.
            **extra: Additional claims (``None`` values remove a claim).
        """
        claims = self.claims(
            subject=subject, scopes=scopes, expires_in=expires_in, audience=audience, **extra
        )
        jose_header: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": self.kid}
        jose_header.update(header or {})
        return sign_jwt(jose_header, claims, self.key)

    # -- serving on a real port --------------------------------------------------------

    @classmethod
    @contextmanager
    def serve(
        cls,
        audience: str = "https://api.example.test",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key: rsa.RSAPrivateKey | None = None,
    ) -> Iterator[ServedFakeIssuer]:
        """Serve discovery and JWKS over HTTP on ``host:port`` (a free port by default).

        The issuer is ``http://host:port``. The server stops when the block exits.
        """
        issuer = ServedFakeIssuer(audience=audience, key=key)
        server = ThreadingHTTPServer((host, port), issuer._request_handler())
        issuer.issuer = f"http://{host}:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, name="fake-issuer", daemon=True)
        thread.start()
        try:
            yield issuer
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake._respond(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=300")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet: tests read ``fake.requests`` instead."""

        return Handler


class ServedFakeIssuer(FakeIssuer):
    """A [`FakeIssuer`][authbridge.testing.FakeIssuer] also reachable over HTTP.

    See [`FakeIssuer.serve()`][authbridge.testing.FakeIssuer.serve].
    """


class BadTokens:
    """Deliberately invalid tokens for negative tests; each must be rejected."""

    def __init__(self, issuer: FakeIssuer) -> None:
        self._issuer = issuer

    def expired(self) -> str:
        """Expired ten minutes ago (beyond any allowed leeway)."""
        return self._issuer.token(expires_in=-600)

    def not_yet_valid(self) -> str:
        """``nbf`` ten minutes in the future."""
        return self._issuer.token(nbf=int(time.time()) + 600)

    def wrong_audience(self) -> str:
        """Minted for another API."""
        return self._issuer.token(audience="https://another-api.example.test")

    def wrong_issuer(self) -> str:
        """Claims an issuer nobody configured (signed with the real key)."""
        return self._issuer.token(iss="https://evil.example.test")

    def alg_none(self) -> str:
        """Unsigned, ``alg: none``."""
        issuer = self._issuer
        return sign_jwt({"alg": "none", "typ": "at+jwt"}, issuer.claims(), None)

    def hmac_confusion(self) -> str:
        """HS256 signed with the issuer's *public* key (PEM) as the secret."""
        issuer = self._issuer
        pem = issuer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "at+jwt", "kid": issuer.kid}
        return sign_jwt(header, issuer.claims(), pem)

    def unknown_kid(self) -> str:
        """Signed by a key the issuer never published."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        header = {"alg": "RS256", "typ": "at+jwt", "kid": f"unknown-{secrets.token_hex(4)}"}
        return sign_jwt(header, self._issuer.claims(), other)

    def bad_signature(self) -> str:
        """A valid token with its signature altered."""
        head, payload, signature = self._issuer.token().split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[len(raw) // 2] ^= 0x01
        return f"{head}.{payload}.{_b64(bytes(raw))}"

    def wrong_type(self) -> str:
        """``typ`` of another kind of JWT (a DPoP proof)."""
        return self._issuer.token(header={"typ": "dpop+jwt"})

    def all(self) -> dict[str, str]:
        """Every bad token above, by name."""
        names = (
            "expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "alg_none",
            "hmac_confusion", "unknown_kid", "bad_signature", "wrong_type",
        )  # fmt: skip
        return {name: getattr(self, name)() for name in names}
