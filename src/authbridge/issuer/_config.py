"""``AppIssuer``: the app as an OAuth 2.0 authorization server (configuration only)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .._clock import Clock
from .._http import ClientSource
from ..errors import ConfigurationError
from ..metadata import check_issuer_url
from ..store import Store, UserDirectory

if TYPE_CHECKING:
    from ._delegation import DelegationPolicy
    from ._source import OwnTokenSource

SigningAlgorithm = Literal["ES256", "RS256", "EdDSA"]
"""The JWS algorithms the app's issuer signs with."""

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
"""The RFC 8693 token-exchange grant type."""

GRANT_TYPES = frozenset(
    {"authorization_code", "password", "refresh_token", "client_credentials", TOKEN_EXCHANGE}
)
"""Grants this version of the token endpoint implements."""

MAX_AUTHORIZATION_CODE_TTL = 600.0
"""Longest lifetime of an authorization code (RFC 6749 §4.1.2: ten minutes at most)."""

KEK_ENV = "AUTHBRIDGE_KEY_ENCRYPTION_KEY"
"""Environment variable read for the key-encryption key(s) when none is passed."""

STORE_ENV = "AUTHBRIDGE_STORE"
"""Environment variable the command line reads for the store URL."""

SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}
"""Characters of a scope name (RFC 6749 §3.3 scope-token)."""


def _scope_map(scopes: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(scopes, str | bytes):
        raise ConfigurationError(
            "scopes_must_be_a_list",
            message=f"AppIssuer(scopes=...) takes a list or a mapping of scopes, not {scopes!r}",
        )
    found = dict(scopes) if isinstance(scopes, Mapping) else {s: s for s in scopes}
    for scope in found:
        if not isinstance(scope, str) or not scope or not set(scope) <= SCOPE_CHARS:
            raise ConfigurationError(
                "invalid_scope_name",
                message=f"scope names are printable ASCII without spaces or quotes, got {scope!r}",
            )
    return found


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine (``localhost`` or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AppIssuer:
    """The app's own authorization server: it issues RFC 9068 access tokens and
    refresh tokens, and publishes RFC 8414 metadata and a JWKS.

    Passed as ``AuthBridge(issuer=AppIssuer(...))``: the bridge's resource
    server then accepts the app's own access tokens with no HTTP call (its
    issuer is one more source, routed by ``iss``), and ``auth.install(app)``
    adds the token, revocation, introspection, JWKS and metadata endpoints and
    the password and client-credentials flows to Swagger UI's Authorize.

    Nothing is opened here: the store connects (and migrates) and the signing
    keys load in the app's lifespan.

    Args:
        issuer: The issuer identifier: this app's public base URL, exactly as
            it appears in ``iss`` (``https://api.example.com``). The endpoints
            are published below it.
        store: A store URL (``sqlite+aiosqlite:///authbridge.db``, the
            embedded default; ``postgresql+asyncpg://user@host/db``) or a
            [Store][authbridge.store.Store] object.
        scopes: The scopes the app grants (name → description for Swagger UI,
            or a list of names).
        audience: The ``aud`` of access tokens issued without a ``resource``
            parameter; the issuer URL by default (the app is its own resource
            server).
        resources: Other resource indicators clients may ask for (RFC 8707
            ``resource``, each becomes the token's ``aud``); any other value
            is refused with ``invalid_target``.
        name: Reported as ``Principal.provider`` for the app's own tokens.
        users: Your own user directory (see
            [UserDirectory][authbridge.store.UserDirectory]) instead of the
            built-in user table, for the password grant.
        signing_algorithm: ``"ES256"`` (default: fast, small), ``"RS256"`` or
            ``"EdDSA"`` (Ed25519). Applies to keys generated from now on.
        key_encryption_key: The key(s) encrypting private signing keys in the
            store: base64url of 32 random bytes (``authbridge keys kek`` makes
            one), or several, newest first (the first encrypts, all decrypt).
            Read from the environment variable
            ``AUTHBRIDGE_KEY_ENCRYPTION_KEY`` (comma-separated) when not given.
            Required unless in development mode.
        development: Development mode: signing keys may be kept without a
            key-encryption key (with a warning). ``None`` (default): on for a
            loopback issuer (``http://127.0.0.1:8000``), off otherwise.
        access_token_ttl: Lifetime of access tokens, in seconds.
        refresh_token_idle_ttl: A refresh token unused this long expires.
        refresh_token_ttl: Absolute lifetime of a login (a refresh family):
            no refresh after it.
        refresh_reuse_interval: Benign concurrent refreshes: for this many
            seconds after a rotation, the token just rotated may be presented
            again by the same client and gets a fresh token of the same
            generation (at most 4 such). Outside it, a rotated token revokes
            its whole family. 0 disables the allowance.
        grant_types: The grants the token endpoint accepts:
            ``"authorization_code"`` (with the authorization endpoint),
            ``"password"``, ``"refresh_token"``, ``"client_credentials"`` and
            RFC 8693 token exchange
            (``"urn:ietf:params:oauth:grant-type:token-exchange"``, answered
            once a subject-token resolver is set).
        authorization_code_ttl: Lifetime of an authorization code, in seconds
            (at most 600); a code is used once.
        key_rotation_interval: Age at which a new signing key is scheduled
            automatically (0: only ``authbridge keys rotate``).
        jwks_max_age: ``Cache-Control: max-age`` of the JWKS; a new key is
            published at least this long before it signs.
        password_failures_per_account: Failed password logins allowed per
            account per ``password_window``; then 429 until the window ends.
        password_attempts_per_address: Password logins (failed or not)
            allowed per client address per ``password_window``.
        password_window: The rate-limit window, in seconds.
        max_concurrent_hashes: Password hashes computed at once (each in a
            worker thread, off the event loop).
        max_waiting_hashes: Password logins allowed to wait for a hashing
            slot; beyond, 503 ``temporarily_unavailable`` at once.
        migrate: Upgrade the store's schema at start. Turn off when deploys
            run ``authbridge db upgrade``.
        path_prefix: Path of the OAuth endpoints below the issuer
            (``/oauth/authorize``, ``/oauth/token``, ``/oauth/revoke``,
            ``/oauth/introspect``, ``/oauth/jwks``, and ``/oauth/callback``
            where providers send the browser back after a login).
        delegation_policy: Who may act for whom (RFC 8693 delegation), beyond
            the defaults: called with a
            [DelegationRequest][authbridge.issuer.DelegationRequest], it returns
            (or resolves to) ``True`` to allow. Without it, a user may delegate
            to any registered confidential client
            ([Delegations.create][authbridge.issuer.Delegations.create]), and
            token exchange of the app's own tokens allows only what an active
            delegation of the user to that client covers. With it, the user's
            delegations need its ``True`` too, and it may allow an exchange
            (or a chain of exchanges) that no delegation covers; a chain made
            through ``/me/delegations`` always needs the parent delegation's
            ``may_delegate``. Anything but ``True``, or an exception, refuses.
        delegation_max_ttl: Longest lifetime of a delegation, in seconds (one
            day by default): a longer ``expires_in`` is shortened to it.
        max_delegations_per_user: Active delegations one user may have at once;
            creating one more is refused (``too_many_delegations``). Counted
            before and again after each creation: concurrent creations never
            pass it (a race may refuse one too many).

    Raises:
        ConfigurationError: on an inconsistent configuration.

    Example:
        ```python
        auth = AuthBridge(
            providers=[],
            issuer=AppIssuer("https://api.example.com",
                             scopes={"items:read": "Read items", "items:write": "Change items"}),
        )
        ```
    """

    def __init__(  # noqa: PLR0915 - one validation per documented setting
        self,
        issuer: str,
        *,
        store: str | Store = "sqlite+aiosqlite:///authbridge.db",
        scopes: Mapping[str, str] | Sequence[str] = (),
        audience: str | None = None,
        resources: Sequence[str] = (),
        name: str = "app",
        users: UserDirectory | None = None,
        signing_algorithm: SigningAlgorithm = "ES256",
        key_encryption_key: str | Sequence[str] | None = None,
        development: bool | None = None,
        access_token_ttl: float = 600.0,
        refresh_token_idle_ttl: float = 14 * 86400.0,
        refresh_token_ttl: float = 90 * 86400.0,
        refresh_reuse_interval: float = 10.0,
        grant_types: Sequence[str] = (
            "authorization_code",
            "password",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        authorization_code_ttl: float = 60.0,
        key_rotation_interval: float = 30 * 86400.0,
        jwks_max_age: float = 3600.0,
        password_failures_per_account: int = 10,
        password_attempts_per_address: int = 100,
        password_window: float = 300.0,
        max_concurrent_hashes: int = 2,
        max_waiting_hashes: int = 64,
        migrate: bool = True,
        path_prefix: str = "/oauth",
        delegation_policy: DelegationPolicy | None = None,
        delegation_max_ttl: float = 86400.0,
        max_delegations_per_user: int = 50,
    ) -> None:
        check_issuer_url(issuer, provider=name)
        self.issuer = issuer
        self.name = name
        self.store = store
        self.scopes = _scope_map(scopes)
        self.audience = audience or issuer
        self.resources = tuple(dict.fromkeys((self.audience, *resources)))
        for resource in self.resources:
            parts = urlsplit(resource)
            if not parts.scheme or parts.fragment:
                raise ConfigurationError(
                    "invalid_resource",
                    message=f"resources are absolute URIs without a fragment (RFC 8707), got "
                    f"{resource!r}",
                )
        self.users = users
        if signing_algorithm not in ("ES256", "RS256", "EdDSA"):
            raise ConfigurationError(
                "unsupported_signing_algorithm",
                message="signing_algorithm must be 'ES256', 'RS256' or 'EdDSA'",
            )
        self.signing_algorithm: SigningAlgorithm = signing_algorithm
        if key_encryption_key is None:
            env = os.environ.get(KEK_ENV, "")
            keks = tuple(k.strip() for k in env.split(",") if k.strip())
        elif isinstance(key_encryption_key, str):
            keks = (key_encryption_key,)
        else:
            keks = tuple(key_encryption_key)
        self.key_encryption_keys = keks
        self.development = is_loopback_url(issuer) if development is None else development
        for label, value in (
            ("access_token_ttl", access_token_ttl),
            ("refresh_token_idle_ttl", refresh_token_idle_ttl),
            ("refresh_token_ttl", refresh_token_ttl),
            ("jwks_max_age", jwks_max_age),
            ("password_window", password_window),
            ("delegation_max_ttl", delegation_max_ttl),
        ):
            if not value > 0:
                raise ConfigurationError(
                    "non_positive_duration", message=f"{label} must be more than 0 seconds"
                )
        for label, value in (
            ("access_token_ttl", access_token_ttl),
            ("refresh_token_idle_ttl", refresh_token_idle_ttl),
            ("refresh_token_ttl", refresh_token_ttl),
            ("refresh_reuse_interval", refresh_reuse_interval),
            ("authorization_code_ttl", authorization_code_ttl),
            ("key_rotation_interval", key_rotation_interval),
            ("jwks_max_age", jwks_max_age),
            ("password_window", password_window),
            ("delegation_max_ttl", delegation_max_ttl),
        ):
            if not math.isfinite(value):
                raise ConfigurationError(
                    "non_finite_duration", message=f"{label} must be a finite number of seconds"
                )
        if refresh_reuse_interval < 0 or refresh_reuse_interval > 300:
            raise ConfigurationError(
                "invalid_refresh_reuse_interval",
                message="refresh_reuse_interval is 0 to 300 seconds",
            )
        if key_rotation_interval < 0 or (
            key_rotation_interval and key_rotation_interval <= 2 * jwks_max_age
        ):
            raise ConfigurationError(
                "invalid_key_rotation_interval",
                message="key_rotation_interval is 0 (manual) or more than twice jwks_max_age",
            )
        self.access_token_ttl = float(access_token_ttl)
        self.refresh_token_idle_ttl = float(min(refresh_token_idle_ttl, refresh_token_ttl))
        self.refresh_token_ttl = float(refresh_token_ttl)
        self.refresh_reuse_interval = float(refresh_reuse_interval)
        unknown = set(grant_types) - GRANT_TYPES
        if unknown or isinstance(grant_types, str):
            raise ConfigurationError(
                "unsupported_grant_type",
                message=f"grant_types are among {sorted(GRANT_TYPES)}, got {grant_types!r}",
            )
        self.grant_types = frozenset(grant_types)
        if not 0 < authorization_code_ttl <= MAX_AUTHORIZATION_CODE_TTL:
            raise ConfigurationError(
                "invalid_authorization_code_ttl",
                message="authorization_code_ttl is more than 0 and at most 600 seconds",
            )
        self.authorization_code_ttl = float(authorization_code_ttl)
        self.key_rotation_interval = float(key_rotation_interval)
        self.jwks_max_age = float(jwks_max_age)
        if min(password_failures_per_account, password_attempts_per_address) < 1:
            raise ConfigurationError(
                "invalid_rate_limit", message="password rate limits are at least 1"
            )
        self.password_failures_per_account = int(password_failures_per_account)
        self.password_attempts_per_address = int(password_attempts_per_address)
        self.password_window = float(password_window)
        if max_concurrent_hashes < 1 or max_waiting_hashes < 0:
            raise ConfigurationError(
                "invalid_hashing_limits",
                message="max_concurrent_hashes is at least 1, max_waiting_hashes at least 0",
            )
        self.max_concurrent_hashes = int(max_concurrent_hashes)
        self.max_waiting_hashes = int(max_waiting_hashes)
        self.migrate = migrate
        if not path_prefix.startswith("/") or path_prefix.endswith("/"):
            raise ConfigurationError(
                "invalid_path_prefix",
                message="path_prefix starts with '/' and does not end with one",
            )
        self.path_prefix = path_prefix
        if delegation_policy is not None and not callable(delegation_policy):
            raise ConfigurationError(
                "invalid_delegation_policy",
                message="delegation_policy is a function of a DelegationRequest, or None",
            )
        self.delegation_policy = delegation_policy
        self.delegation_max_ttl = float(delegation_max_ttl)
        if isinstance(max_delegations_per_user, bool) or max_delegations_per_user < 1:
            raise ConfigurationError(
                "invalid_max_delegations_per_user",
                message="max_delegations_per_user is at least 1",
            )
        self.max_delegations_per_user = int(max_delegations_per_user)

    def __repr__(self) -> str:
        return f"AppIssuer({self.issuer!r}, name={self.name!r})"

    def endpoint(self, name: str) -> str:
        """The absolute URL of endpoint ``name``.

        ``name`` (``authorize``, ``token``, ``revoke``, ``introspect``,
        ``jwks``, ``callback``) is appended to the issuer and ``path_prefix``.
        """
        return f"{self.issuer.rstrip('/')}{self.path_prefix}/{name}"

    def bind(self, client: ClientSource, clock: Clock, *, timeout: float = 5.0) -> OwnTokenSource:
        """Create this issuer's runtime for one app; the resource server calls this.

        The returned source verifies the app's own access tokens with the
        signing keys from the store (no HTTP); its ``runtime`` is the
        authorization server ([IssuerRuntime][authbridge.issuer.IssuerRuntime]).
        """
        from ._runtime import IssuerRuntime  # noqa: PLC0415 - the runtime imports this module

        return IssuerRuntime(self, clock).source
