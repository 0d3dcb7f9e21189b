"""The fake issuer behind [`authbridge.testing`][authbridge.testing]."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..providers.oidc import OIDCProvider
from ._fakeapi import _LoopbackServer
from ._issuer_login import _IssuerClient, _IssuerHTTP, _IssuerUser
from ._jwt import _b64, _public_jwk, sign_jwt

__all__ = ["BadTokens", "FakeIssuer", "ServedFakeIssuer", "sign_jwt"]


class FakeIssuer:
    """An in-process OpenID Provider for tests: RSA keys, discovery, JWKS, token minting.

    Args:
        issuer: The issuer URL it claims (any URL; nothing listens there unless
            you use `serve()`).
        audience: Default ``aud`` of minted tokens.
        key: An RSA private key to sign with (a 2048-bit key is generated if
            omitted; pass one to share it between tests and save time).
        kid: The key id.
        client_id: The login client registered from the start (see `add_client`).
        client_secret: Its secret (random if omitted).
        redirect_uris: Its redirect URIs (exact match); ``None`` accepts any
            http(s) URL.
        code_ttl: Seconds an authorization code stays redeemable.

    Logging in (OpenID Connect code flow): ``GET /authorize`` answers a login
    form (username and password of the users added with `add_user`;
    `approve_as` skips it) and redirects to ``redirect_uri`` with ``code``,
    ``state`` and ``iss``; ``POST /token`` (``authorization_code``,
    ``client_secret_basic`` or ``client_secret_post``, PKCE S256 checked when
    a challenge was sent, each code once) answers an access token (as
    `token()` mints) and, with ``openid``, an ID token (``nonce``,
    ``at_hash``); ``/userinfo``; ``/logout`` (the ``end_session_endpoint``)
    redirects to a registered ``post_logout_redirect_uri`` with ``state``.
    Discovery advertises them all and
    ``authorization_response_iss_parameter_supported``.

    Attributes:
        transport: An `httpx.MockTransport` answering this issuer's requests
            (discovery, JWKS, login); pass it as ``AuthBridge(transport=...)``.
        requests: Paths requested through ``transport`` or the served port.
        http: The HTTP side, a [`FakeAPI`][authbridge.testing.FakeAPI]: its
            ``requests`` are [`RecordedRequest`][authbridge.testing.RecordedRequest]s
            (credentials redacted), and its failure injection (``fail_next``,
            ``slow_next``...) applies to every endpoint.
        bad: Factory of deliberately invalid tokens ([`BadTokens`][authbridge.testing.BadTokens]).
    """

    def __init__(
        self,
        issuer: str = "https://issuer.example.test",
        audience: str = "https://api.example.test",
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str = "test-key-1",
        client_id: str = "test-client",
        client_secret: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        code_ttl: float = 600.0,
    ) -> None:
        self._clock = time.time
        self._issuer = issuer
        self.audience = audience
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        self._extra_keys: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.http = _IssuerHTTP(self, code_ttl)
        self.transport: httpx.MockTransport = self.http.transport
        self.bad = BadTokens(self)
        self.client_id = client_id
        self.client_secret = self.add_client(client_id, client_secret, redirect_uris=redirect_uris)

    @property
    def issuer(self) -> str:
        """The issuer identifier (``http://127.0.0.1:PORT`` when served)."""
        return self._issuer

    @issuer.setter
    def issuer(self, value: str) -> None:
        self._issuer = value
        self.http._base_url = value.rstrip("/")

    # -- logging in ------------------------------------------------------------------

    @property
    def authorization_endpoint(self) -> str:
        """``{issuer}/authorize``."""
        return f"{self.issuer.rstrip('/')}/authorize"

    @property
    def token_endpoint(self) -> str:
        """``{issuer}/token``."""
        return f"{self.issuer.rstrip('/')}/token"

    @property
    def userinfo_endpoint(self) -> str:
        """``{issuer}/userinfo``."""
        return f"{self.issuer.rstrip('/')}/userinfo"

    @property
    def end_session_endpoint(self) -> str:
        """``{issuer}/logout``."""
        return f"{self.issuer.rstrip('/')}/logout"

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        redirect_uris: Sequence[str] | None = None,
        post_logout_redirect_uris: Sequence[str] | None = None,
    ) -> str:
        """Register a confidential login client and return its secret.

        Args:
            client_id: The client id.
            client_secret: Its secret (random if omitted).
            redirect_uris: Exact redirect URIs; ``None`` accepts any http(s) URL.
            post_logout_redirect_uris: Where logout may return; ``None``
                accepts any http(s) URL.
        """
        secret = client_secret or secrets.token_urlsafe(24)
        self.http.flow.clients[client_id] = _IssuerClient(
            client_id,
            secret,
            None if redirect_uris is None else tuple(redirect_uris),
            None if post_logout_redirect_uris is None else tuple(post_logout_redirect_uris),
        )
        return secret

    def add_user(
        self,
        username: str = "alice",
        password: str | None = None,
        *,
        subject: str | None = None,
        email: str | None = None,
        email_verified: bool = True,
        name: str | None = None,
        scopes: Sequence[str] | None = None,
        **claims: Any,
    ) -> str:
        """Add a user who can log in, and return their ``sub``.

        Args:
            username: The login form's username.
            password: Its password (``None``: only `approve_as` logs them in).
            subject: ``sub`` (the username if omitted).
            email: ``email`` (with the ``email`` scope).
            email_verified: ``email_verified``.
            name: ``name`` (with the ``profile`` scope).
            scopes: API scopes the user may be granted (``None``: any requested).
            **claims: More ID token and userinfo claims.
        """
        user = _IssuerUser(
            username,
            password,
            subject or username,
            email,
            email_verified,
            name,
            None if scopes is None else tuple(scopes),
            dict(claims),
        )
        self.http.flow.add(username, user)
        return user.subject

    def approve_as(self, username: str, **callback: str | None) -> None:
        """Make the next authorize request redirect at once, logged in as ``username``.

        Keyword arguments override the callback's parameters (``iss=``,
        ``state=``...; ``None`` removes one).

        Raises:
            KeyError: No user ``username`` was added.
        """
        self.http.flow.approve_as(username, callback)

    def tamper_next_id_token(self, header: Mapping[str, Any] | None = None, **claims: Any) -> None:
        """Change the next ID token: header members and claims (``None`` removes one).

        ``header={"alg": "none"}`` leaves it unsigned.
        """
        self.http.flow.tamper.append((dict(header or {}), dict(claims)))

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
            "userinfo_endpoint": f"{base}/userinfo",
            "end_session_endpoint": f"{base}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": [
                "openid",
                "profile",
                "email",
                "items:read",
                "items:write",
                "admin",
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "preferred_username",
            ],
            "authorization_response_iss_parameter_supported": True,
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
        """Serve every endpoint over HTTP on ``host:port`` (a free port by default).

        The issuer is ``http://host:port``: discovery and JWKS (with
        ``Cache-Control: max-age=300``) and the login endpoints, usable by a
        browser. The server stops when the block exits.
        """
        issuer = ServedFakeIssuer(audience=audience, key=key)
        server = _LoopbackServer((host, port), issuer.http._request_handler())
        issuer.issuer = f"http://{host}:{server.server_address[1]}"
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-issuer",
            daemon=True,
        )
        thread.start()
        issuer.http._serving = True  # caching headers, as a real issuer sends
        try:
            yield issuer
        finally:
            issuer.http._serving = False
            issuer.http._closing.set()
            server.shutdown()
            server.server_close()
            thread.join()


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
