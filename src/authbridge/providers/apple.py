"""Sign in with Apple: ID tokens on routes and in exchange, and login with a signed client secret.

Apple's quirks: the callback is a ``form_post`` (with the ``name`` or
``email`` scope), there is no PKCE and no userinfo endpoint, the client
secret is a JWT the app signs with its team's ES256 key, ``email_verified``
may be the string ``"true"``, and the person's name arrives only once, in
the first login's ``user`` form field (never trusted for the email).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .._clock import Clock
from .._http import ClientSource
from ..client import ExternalIdentity, LoginEndpoints
from ..client._oidc import OIDCLogin
from ..errors import ConfigurationError, LoginError
from ..resource import Principal
from ._login import claims_identity, need_login, text, verified_flag
from .oidc import OIDCProvider

APPLE_ISSUER = "https://appleid.apple.com"
APPLE_AUTHORIZATION_ENDPOINT = "https://appleid.apple.com/auth/authorize"
APPLE_TOKEN_ENDPOINT = "https://appleid.apple.com/auth/token"
APPLE_JWKS_URI = "https://appleid.apple.com/auth/keys"
MAX_CLIENT_SECRET_TTL = 180 * 86400.0
"""Apple refuses client secrets that expire more than six months after they were made."""
MAX_USER_FIELD = 4096
"""Longest ``user`` form field read (a small JSON object)."""


class AppleProvider(OIDCProvider):
    """Sign in with Apple: login, Apple ID tokens on routes and in token exchange.

    ``client_id`` is the Services ID of your web login (or an app's bundle
    id); ``client_ids`` lists the other ids whose ID tokens you accept (your
    iOS apps' bundle ids), in token exchange too.

    Endpoints (fixed, no discovery): ``authorization_endpoint``,
    ``token_endpoint``, keys at ``jwks_uri``; issuer
    ``https://appleid.apple.com``. Login (enabled by ``team_id``, ``key_id``
    and ``private_key``): ``response_mode=form_post`` and a nonce; no PKCE
    (Apple does not support it). The client secret is an ES256 JWT signed
    with your key for every token request (``iss`` = team id, ``sub`` =
    client id, ``aud`` = ``https://appleid.apple.com``, ``exp`` after
    ``client_secret_ttl`` seconds, header ``kid`` = key id). Identities are
    keyed ``https://appleid.apple.com`` + ``sub`` (stable per team).
    ``email_verified`` may be ``true`` or the string ``"true"``; a relay
    address has ``is_private_email``. The name is sent only once, on the
    first login, in the ``user`` form field: its name is kept, its email
    never (it is not signed). Apple has no RP-initiated logout.

    Resource server and exchange: Apple ID tokens (Apple issues no access
    tokens for your API) whose ``aud`` is one of your ids.

    Args:
        client_id: Your Services ID (web) or bundle id.
        team_id: Your Apple developer team id (the client secret's ``iss``).
        key_id: The id of the Sign in with Apple key (the client secret's ``kid``).
        private_key: That key, the PKCS#8 PEM Apple gave you (``AuthKey_<key id>.p8``).
        name: Provider name in the [Principal][authbridge.Principal].
        client_ids: Other client ids (bundle ids) whose ID tokens are accepted.
        login_scopes: Scopes asked for at login.
        display_name: The name on the login chooser.
        authorization_endpoint: Apple's authorization endpoint (tests point it at a fake).
        token_endpoint: Apple's token endpoint.
        jwks_uri: Apple's key set.
        client_secret_ttl: Lifetime of each client secret, in seconds
            (short: a new one is signed per request; at most 180 days).
        leeway: Tolerated clock skew in seconds (at most 300).

    Raises:
        ConfigurationError: only some of ``team_id``, ``key_id``, ``private_key``;
            a key that is not a P-256 private key; a TTL out of range.
    """

    def __init__(
        self,
        client_id: str,
        *,
        team_id: str | None = None,
        key_id: str | None = None,
        private_key: str | bytes | None = None,
        name: str = "apple",
        client_ids: Sequence[str] = (),
        login_scopes: Sequence[str] = ("openid", "name", "email"),
        display_name: str = "Apple",
        authorization_endpoint: str = "https://appleid.apple.com/auth/authorize",
        token_endpoint: str = "https://appleid.apple.com/auth/token",
        jwks_uri: str = "https://appleid.apple.com/auth/keys",
        client_secret_ttl: float = 300.0,
        leeway: float = 30.0,
    ) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError("login_client_id_required", provider=name)
        super().__init__(
            name,
            APPLE_ISSUER,
            (client_id, *client_ids),
            jwks_uri=jwks_uri,
            algorithms=("RS256",),
            token_type="id_token",
            leeway=leeway,
            required_claims=("sub", "iat"),
            display_name=display_name,
            login_scopes=login_scopes,
        )
        given = [v is not None for v in (team_id, key_id, private_key)]
        if any(given) and not all(given):
            raise ConfigurationError(
                "apple_login_needs_team_key",
                provider=name,
                message="logging in with Apple needs team_id, key_id and private_key together",
            )
        if not 0 < client_secret_ttl <= MAX_CLIENT_SECRET_TTL:
            raise ConfigurationError(
                "invalid_client_secret_ttl",
                provider=name,
                message="client_secret_ttl is more than 0 and at most 180 days (15552000 s)",
            )
        if "openid" not in login_scopes:
            raise ConfigurationError("oidc_login_needs_openid_scope", provider=name)
        self.client_id = client_id
        self.client_ids = frozenset((client_id, *client_ids))
        self.team_id = team_id
        self.key_id = key_id
        self._key = _p256_key(private_key, name) if private_key is not None else None
        self.client_secret_ttl = float(client_secret_ttl)
        self.login_endpoints = LoginEndpoints(
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            issuer=APPLE_ISSUER,
        )

    def __repr__(self) -> str:
        return f"AppleProvider({self.name!r}, client_id={self.client_id!r})"

    @property
    def exchange_client_ids(self) -> frozenset[str]:
        """Your ids: ``client_id`` and ``client_ids``."""
        return self.client_ids

    @property
    def login_enabled(self) -> bool:
        """Whether login is configured (team id, key id and key)."""
        return self._key is not None

    def client_secret(self, now: float) -> str:
        """A fresh client secret: the ES256 JWT Apple's token endpoint expects.

        Raises:
            ConfigurationError: ``login_not_configured`` without the team's key.
        """
        need_login(self._key is not None, self.name)
        assert self._key is not None  # noqa: S101 - need_login checked it
        header = {"alg": "ES256", "kid": self.key_id, "typ": "JWT"}
        issued = int(now)
        claims = {
            "iss": self.team_id,
            "iat": issued,
            "exp": issued + int(self.client_secret_ttl),
            "aud": APPLE_ISSUER,
            "sub": self.client_id,
            "jti": secrets.token_urlsafe(16),
        }
        return es256_jwt(header, claims, self._key)

    def login_options(self) -> dict[str, Any]:
        """Apple's fixed endpoints and keys; the client secret is signed per request."""
        options = super().login_options()
        options.update(
            client_secret=None,
            endpoints=self.login_endpoints,
            jwks_uri=self.jwks_uri,
            algorithms=("RS256",),
            token_endpoint_auth="client_secret_post",
            provider=self,
        )
        return options

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> AppleLogin:
        """Create the login runtime for one app.

        Raises:
            ConfigurationError: ``login_not_configured`` without the team's key.
        """
        need_login(self.login_enabled, self.name)
        return AppleLogin(**self.login_options(), client=client, clock=clock, timeout=timeout)

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """Apple's ``email_verified`` may be the string ``"true"``."""
        claims = principal.claims
        return claims_identity(
            self.name,
            APPLE_ISSUER,
            claims,
            email_verified=verified_flag(claims.get("email_verified"), strings=True),
        )


class AppleLogin(OIDCLogin):
    """Sign in with Apple inside one app (see `AppleProvider`)."""

    uses_pkce = False
    response_mode = "form_post"
    fetch_userinfo = False
    callback_fields = ("user",)

    def __init__(self, *, provider: AppleProvider, **options: Any) -> None:
        super().__init__(**options)
        self.apple = provider
        self.supports_logout = False

    async def client_credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """``client_id`` and a client secret signed now, in the form."""
        secret = self.apple.client_secret(self._clock())
        return {"client_id": self.client_id, "client_secret": secret}, None

    def from_callback(
        self, identity: ExternalIdentity, fields: Mapping[str, str]
    ) -> ExternalIdentity:
        """The ID token's person, named from the ``user`` field when Apple sent it."""
        name = apple_user_name(fields.get("user"))
        if name is None or identity.name is not None:
            return identity
        return dataclasses.replace(identity, name=name)

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """Keyed ``https://appleid.apple.com`` + ``sub``; ``"true"`` counts as verified."""
        identity = claims_identity(
            self.name,
            APPLE_ISSUER,
            claims,
            email_verified=verified_flag(claims.get("email_verified"), strings=True),
            id_token=id_token,
        )
        if identity is None:
            raise LoginError("no_subject", provider=self.name)
        return identity


def apple_user_name(value: str | None) -> str | None:
    """The name in Apple's first-login ``user`` form field, or ``None``.

    ``{"name": {"firstName": "...", "lastName": "..."}, "email": "..."}``: only
    the name is read; the email in it is not signed and is never used.
    """
    if not value or len(value) > MAX_USER_FIELD:
        return None
    try:
        user = json.loads(value)
    except ValueError:
        return None
    name = user.get("name") if isinstance(user, dict) else None
    if not isinstance(name, dict):
        return None
    parts = [text(name.get("firstName")), text(name.get("lastName"))]
    return text(" ".join(p for p in parts if p)) or None


def es256_jwt(
    header: Mapping[str, Any], claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey
) -> str:
    """A compact JWS signed with ES256 (RFC 7518 §3.4: the raw 64-byte ``r || s``)."""
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}".encode("ascii")
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode('ascii')}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _p256_key(pem: str | bytes, name: str) -> ec.EllipticCurvePrivateKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            "apple_key_unreadable",
            provider=name,
            message="private_key is the PEM of the .p8 file Apple gave you",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(
            "apple_key_not_p256",
            provider=name,
            message="Sign in with Apple keys are P-256 (ES256) private keys",
        )
    return key
