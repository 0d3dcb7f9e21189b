"""Fake Sign in with Apple: the REST API of ``appleid.apple.com``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ._fakeapi import FakeAPI
from ._jwt import _es256_sign, _es256_verify, _half_hash, _Signer
from ._login import (
    _Flow,
    error_page,
    form_post_page,
    random_code,
    redirect,
    redirect_allowed,
    split_scopes,
)
from ._wire import _LOGIN_CREDENTIALS, _Grant, _Incoming, _json_reply, _Reply

__all__ = ["FakeApple"]

APPLE_ISSUER = "https://appleid.apple.com"
_MAX_SECRET_LIFETIME = 15_777_000  # six months, Apple's limit
_JSON = "application/json;charset=UTF-8"
_NO_STORE = (("cache-control", "no-store"), ("pragma", "no-cache"))


@dataclass(slots=True)
class _AppleUser:
    email: str
    sub: str
    email_verified: bool
    is_private_email: bool
    first_name: str | None
    last_name: str | None
    real_user_status: int


@dataclass(kw_only=True, slots=True)
class _AppleGrant(_Grant):
    sub: str


class _AppleFlow(_Flow["_AppleUser"]):
    title = "Sign in with Apple"
    login_error = "Your Apple ID or password was incorrect."

    def __init__(self, fake: FakeApple, code_ttl: float) -> None:
        super().__init__(fake.clock, code_ttl)
        self.fake = fake
        self.authorized: set[tuple[str, str]] = set()

    def check(self, params: Mapping[str, str]) -> _Reply | None:
        fake = self.fake
        if params.get("client_id") != fake.client_id:
            return error_page("invalid_client", "Invalid client id or web redirect url.")
        if not redirect_allowed(fake.redirect_uris, params.get("redirect_uri")):
            return error_page("invalid_request", "Invalid web redirect url.")
        response_type = params.get("response_type")
        if response_type not in ("code", "code id_token"):
            return error_page("unsupported_response_type", "Invalid response_type.")
        if params.get("scope") and params.get("response_mode") != "form_post":
            return error_page(
                "invalid_request",
                "response_mode must be form_post when name or email scope is requested.",
            )
        return None

    def respond(self, params: Mapping[str, str], fields: Mapping[str, str | None]) -> _Reply:
        if params.get("response_mode") == "form_post":
            kept = {k: v for k, v in fields.items() if v is not None}
            return form_post_page(params["redirect_uri"], kept)
        return redirect(params["redirect_uri"], fields)

    def deny(self, params: Mapping[str, str]) -> _Reply:
        return self.respond(
            params, {"error": "user_cancelled_authorize", "state": params.get("state")}
        )

    def issue(self, params: Mapping[str, str], user: str) -> str:
        record = self.code_record(params, user, scopes=split_scopes(params.get("scope")))
        code = f"c{secrets.token_hex(16)}.0.{random_code(16)}"
        return self.desk.issue(code, record)

    def callback_fields(
        self, params: Mapping[str, str], code: str, user: str
    ) -> dict[str, str | None]:
        person = self.users[user]
        fields: dict[str, str | None] = {"state": params.get("state"), "code": code}
        if "id_token" in params.get("response_type", ""):
            scopes = split_scopes(params.get("scope"))
            fields["id_token"] = self.fake._id_token(person, scopes, params.get("nonce"), None)
        first = (person.sub, self.fake.client_id) not in self.authorized
        self.authorized.add((person.sub, self.fake.client_id))
        scopes = split_scopes(params.get("scope"))
        if first and ("name" in scopes or "email" in scopes):
            described: dict[str, Any] = {}
            if "name" in scopes:
                described["name"] = {"firstName": person.first_name, "lastName": person.last_name}
            if "email" in scopes:
                described["email"] = person.email
            fields["user"] = json.dumps(described)
        return fields


class FakeApple(FakeAPI[_AppleGrant]):
    """Sign in with Apple's REST API: ``/auth/authorize``, ``/auth/token``, ``/auth/keys``.

    ``GET /auth/authorize`` answers a sign-in page (the users added with
    `add_user`; `approve_as` skips it). With ``response_mode=form_post``
    (required when the ``name`` or ``email`` scope is asked) the callback is
    an HTML page whose form POSTs ``code``, ``state`` and, on the user's first
    authorization of this client only, ``user`` (JSON with ``name`` and
    ``email``) to ``redirect_uri`` (a submit button, no script); otherwise a
    302 with the query. ``POST /auth/token`` needs ``client_secret``: an
    ES256 JWT signed with a registered team key (``kid``), ``iss`` the team
    id, ``sub`` the client id, ``aud`` ``https://appleid.apple.com``,
    ``exp`` in the future and at most six months after ``iat``. It answers
    ``access_token``, ``refresh_token`` and an ID token (RS256, keys at
    ``/auth/keys``) with ``nonce``, ``at_hash``, ``email`` and
    ``email_verified``/``is_private_email`` as the *strings* ``"true"`` or
    ``"false"``. Errors are ``{"error": "invalid_client"}``,
    ``invalid_grant`` (bad, used or expired code, other ``redirect_uri``),
    ``invalid_request``, ``unsupported_grant_type``. Apple documents no PKCE:
    ``code_challenge`` is ignored. No CORS headers.

    Args:
        team_id: The Apple Developer team id (the client secret's ``iss``).
        client_id: The Services ID (``sub`` and the ID token's ``aud``).
        key_id: Id of the team's Sign in with Apple key.
        private_key: That key (P-256; generated if omitted: see `private_key_pem`).
        redirect_uris: Registered return URLs (exact match); ``None`` accepts
            any http(s) URL.
        base_url: Apple's root.
        clock: Time source.
        id_token_key: RSA key signing ID tokens (made on first use if omitted).
        code_ttl: Seconds an authorization code stays redeemable (Apple: five minutes).
    """

    _credential_params = frozenset({"access_token", "id_token"}) | _LOGIN_CREDENTIALS

    def __init__(
        self,
        team_id: str = "TEAM123456",
        client_id: str = "com.example.app.web",
        key_id: str = "KEY1234567",
        *,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        redirect_uris: Sequence[str] | None = None,
        base_url: str = "https://appleid.apple.com",
        clock: Callable[[], float] | None = None,
        id_token_key: rsa.RSAPrivateKey | None = None,
        code_ttl: float = 300.0,
    ) -> None:
        super().__init__(base_url, clock=clock)
        self.team_id = team_id
        self.client_id = client_id
        self.key_id = key_id
        self.private_key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.redirect_uris = None if redirect_uris is None else tuple(redirect_uris)
        self.issuer = APPLE_ISSUER
        self._team_keys: dict[str, ec.EllipticCurvePublicKey] = {
            key_id: self.private_key.public_key()
        }
        self._signer = _Signer(id_token_key, "fake-apple-1")
        self._login = _AppleFlow(self, code_ttl)

    # -- configuration ---------------------------------------------------------------

    @property
    def private_key_pem(self) -> str:
        """The team key as the ``.p8`` file Apple hands out (PKCS #8 PEM)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    @property
    def authorization_endpoint(self) -> str:
        """``{base_url}/auth/authorize``."""
        return f"{self.base_url}/auth/authorize"

    @property
    def token_endpoint(self) -> str:
        """``{base_url}/auth/token``."""
        return f"{self.base_url}/auth/token"

    @property
    def jwks_uri(self) -> str:
        """``{base_url}/auth/keys``."""
        return f"{self.base_url}/auth/keys"

    def register_key(self, key_id: str, public_key: ec.EllipticCurvePublicKey) -> None:
        """Accept client secrets signed by another team key."""
        self._team_keys[key_id] = public_key

    def client_secret(
        self,
        *,
        expires_in: float = 3600,
        key: ec.EllipticCurvePrivateKey | None = None,
        header: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A client secret JWT as Apple documents it (``claims`` override; ``None`` removes)."""
        now = int(self.clock())
        body = {
            "iss": self.team_id,
            "iat": now,
            "exp": int(now + expires_in),
            "aud": APPLE_ISSUER,
            "sub": self.client_id,
            **claims,
        }
        head = {"alg": "ES256", "kid": self.key_id, **(header or {})}
        return _es256_sign(
            key or self.private_key,
            {k: v for k, v in head.items() if v is not None},
            {k: v for k, v in body.items() if v is not None},
        )

    def add_user(
        self,
        email: str = "alice@example.test",
        sub: str | None = None,
        *,
        email_verified: bool = True,
        is_private_email: bool = False,
        first_name: str | None = None,
        last_name: str | None = None,
        real_user_status: int = 2,
    ) -> str:
        """Add an Apple ID to the sign-in page (keyed by ``email``) and return its ``sub``."""
        if sub is None:
            serial = f"{secrets.randbelow(1000):06d}.{secrets.token_hex(16)}"
            sub = f"{serial}.{secrets.randbelow(10000):04d}"
        user = _AppleUser(
            email, sub, email_verified, is_private_email, first_name, last_name, real_user_status
        )
        self._login.add(email, user)
        return sub

    def approve_as(self, email: str, **callback: str | None) -> None:
        """Make the next authorize request answer at once, approved by ``email``.

        Keyword arguments override the callback's fields (``None`` removes one).

        Raises:
            KeyError: No user ``email`` was added.
        """
        self._login.approve_as(email, callback)

    def tamper_next_id_token(self, header: Mapping[str, Any] | None = None, **claims: Any) -> None:
        """Change the next ID token: header members and claims (``None`` removes one)."""
        self._signer.tamper_next(header, claims)

    # -- answers -------------------------------------------------------------------------

    def _id_token(
        self, user: _AppleUser, scopes: Sequence[str], nonce: str | None, access: str | None
    ) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": APPLE_ISSUER,
            "aud": self.client_id,
            "exp": now + 600,
            "iat": now,
            "sub": user.sub,
            "at_hash": None if access is None else _half_hash(access),
            "auth_time": now,
            "nonce_supported": True,
            "nonce": nonce,
            "real_user_status": user.real_user_status,
        }
        if "email" in scopes:
            claims["email"] = user.email
            claims["email_verified"] = "true" if user.email_verified else "false"
            claims["is_private_email"] = "true" if user.is_private_email else "false"
        return self._signer.id_token(claims)

    @staticmethod
    def _error(status: int, error: str) -> _Reply:
        return _json_reply(status, {"error": error}, _NO_STORE, _JSON)

    def _not_found(self, request: _Incoming) -> _Reply:
        return _Reply(404, b"", (("content-type", "text/html"),))

    def _server_error(self, status: int) -> _Reply:
        return _Reply(status, b"", (("content-type", "text/html"),))

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = () if retry_after is None else (("retry-after", str(retry_after)),)
        return _Reply(429, b"", headers)

    def _route(self, request: _Incoming) -> _Reply:
        if request.path == "/auth/authorize":
            return self._login.authorize(request, self.authorization_endpoint)
        if request.path == "/auth/token" and request.method == "POST":
            return self._token(request)
        if request.path == "/auth/keys" and request.method in ("GET", "HEAD"):
            return _json_reply(200, self._signer.jwks(), (), _JSON)
        if request.path == "/.well-known/openid-configuration":
            return _json_reply(200, self._discovery(), (), _JSON)
        return self._not_found(request)

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": APPLE_ISSUER,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "name"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def _secret_valid(self, client_id: str | None, secret: str | None) -> bool:
        if not secret or client_id != self.client_id:
            return False
        for kid, key in self._team_keys.items():
            verified = _es256_verify(secret, key)
            if verified is None or verified[0].get("kid") != kid:
                continue
            claims, now = verified[1], self.clock()
            exp, iat = claims.get("exp"), claims.get("iat")
            if not isinstance(exp, int | float) or not isinstance(iat, int | float):
                return False
            return (
                claims.get("iss") == self.team_id
                and claims.get("sub") == client_id
                and claims.get("aud") == APPLE_ISSUER
                and iat <= now + 60
                and now < exp
                and exp - iat <= _MAX_SECRET_LIFETIME
            )
        return False

    def _token(self, request: _Incoming) -> _Reply:
        params = request.form
        if request.authorization() is not None and "client_secret" in params:
            return self._error(400, "invalid_request")
        if not self._secret_valid(params.get("client_id"), params.get("client_secret")):
            return self._error(400, "invalid_client")
        grant_type = params.get("grant_type")
        if grant_type != "authorization_code":
            return self._error(400, "unsupported_grant_type" if grant_type else "invalid_request")
        state, record = self._login.desk.take(params.get("code", ""))
        if state != "active" or record is None or record.client_id != self.client_id:
            return self._error(400, "invalid_grant")
        if record.redirect_uri != params.get("redirect_uri"):
            return self._error(400, "invalid_grant")
        user = self._login.users[record.user]
        access = f"a{secrets.token_hex(16)}.0.{random_code(16)}"
        self._issue(
            access,
            _AppleGrant(issued_at=self.clock(), expires_at=self.clock() + 3600, sub=user.sub),
        )
        answer = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": f"r{secrets.token_hex(16)}.0.{random_code(16)}",
            "id_token": self._id_token(user, record.scopes, record.nonce, access),
        }
        return _json_reply(200, answer, _NO_STORE, _JSON)
