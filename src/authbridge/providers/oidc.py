"""The generic OpenID Connect provider: any issuer found by discovery, for every role."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._clock import Clock
from .._http import ClientSource
from ..client import ExternalIdentity, TokenEndpointAuth
from ..client._oidc import OIDCLogin
from ..errors import ConfigurationError
from ..jose._jwt import TokenType
from ..jose.keys import HMAC_ALGS
from ..resource import Introspection, Principal
from ..resource.provider import DEFAULT_ALGORITHMS, JWTProvider
from ._login import claims_identity, issued_to, need_login

_TOKEN_ENDPOINT_AUTH = ("client_secret_basic", "client_secret_post", "none")


class OIDCProvider(JWTProvider):
    """An OpenID Provider: its tokens accepted on routes, logging in with it, exchanging its tokens.

    One object serves every role. As a resource server, the app accepts the
    provider's JWT access tokens (or, with ``introspection``, its opaque ones).
    With ``client_id`` (and its secret), people log in with it: authorization
    code with PKCE S256 and a nonce, endpoints and keys from discovery, the ID
    token verified (OpenID Connect Core §3.1.3.7), userinfo read when the
    provider has it, RP-initiated logout when it has an
    ``end_session_endpoint``. In token exchange, a token of this provider
    becomes the same identity as a browser login, but only if it was issued
    to one of *your* clients (its ``azp``/``client_id`` or ``aud`` is
    ``client_id`` or one of ``client_ids``).

    Nothing is fetched here: discovery and keys load lazily on first use or in
    the app's lifespan, so the app starts even when the provider is down.

    Args:
        name: Short name, reported as ``Principal.provider``, in logs, and
            as the provider's key in the login chooser.
        issuer: The exact ``iss`` value (no normalisation: mind trailing slashes).
        audience: Accepted ``aud`` value(s) of access tokens; a token must
            carry at least one. May be omitted only together with
            ``client_ids`` (e.g. Cognito access tokens, which carry
            ``client_id`` instead of ``aud``).
        client_ids: If given, the token's client (see ``client_id_claims``)
            must be one of these; they also count as yours in token exchange.
        client_id_claims: Claims naming the client, first present wins:
            ``client_id`` then ``azp`` by default; Okta uses ``cid``, Entra v1
            ``appid``.
        jwks_uri: Use this JWKS URL instead of the one from discovery (for
            access tokens and ID tokens alike).
        discovery_url: Fetch metadata from here instead of the well-known URLs.
        algorithms: Accepted JWS algorithms (asymmetric by default).
        hmac_secret: A shared secret (≥ 32 bytes): then only HS256/384/512 are
            accepted for access tokens and no keys are fetched (ID tokens at
            login are still checked with the provider's asymmetric keys).
        token_type: ``"strict"`` (RFC 9068 ``typ: at+jwt`` only), ``"lenient"``
            (also ``JWT`` or no ``typ``, as many providers send) or
            ``"id_token"`` (OpenID Connect ID tokens, e.g. Google sign-in).
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``
            (and ``aud`` whenever an audience is configured).
        roles_claims: Claim paths to read roles from (see [authbridge.roles][authbridge.roles]):
            a claim name, a dotted path, or a tuple of path segments.
        scope_claims: Claims read as granted scopes: strings of scope tokens
            separated by spaces (U+0020 only, RFC 6749 §3.3) or arrays of
            strings (``scope`` and ``scp`` by default). A scope token with a
            character outside the RFC's syntax grants nothing.
        claim_values: Claims that must carry exactly these values, e.g.
            ``{"token_use": "access"}`` for Cognito access tokens.
        max_token_bytes: Tokens longer than this are refused before decoding.
        jwks_cooldown: Minimum seconds between two JWKS fetches triggered by
            unknown ``kid`` values or failures.
        jwks_max_age: Upper bound on how long a fetched key set is used before
            it is refreshed (``Cache-Control`` is honoured below it).
        jwks_max_stale: How long past that the last good keys keep working while
            the JWKS endpoint fails.
        introspection: Also accept this provider's opaque access tokens, checked
            with RFC 7662 introspection (see [Introspection][authbridge.Introspection]).
        issuer_aliases: Other exact ``iss`` spellings this provider is known to
            use (Google signs ID tokens as both ``https://accounts.google.com``
            and ``accounts.google.com``). Each is matched exactly, like
            ``issuer``; identities are keyed under ``issuer`` whatever the spelling.
        subject_claims: Claims read as ``Principal.subject``, first present wins
            (``("sub",)`` by default). For a server whose introspection
            answers carry ``username`` instead of ``sub``, use
            ``("sub", "username")``. A subject claim that is present but not a
            non-empty string refuses the token (``invalid_claim_type``).
            Identities (login, exchange) are always keyed by ``sub``.
        space_separated_aud: Read an ``aud`` given as one string as a list of
            audiences separated by spaces (U+0020), for servers that send
            ``"aud": "api-1 api-2"``. Off by default: then that string is one
            audience, which matches no configured one. Applies to JWTs and to
            introspection answers; not allowed with ``token_type="id_token"``.
        client_id: The app's client id at the provider: enables login (the
            callback to register there is ``<your issuer>/oauth/callback``).
        client_secret: Its secret (required unless ``token_endpoint_auth`` is
            ``"none"``); sent only to the token endpoint, never logged.
        login_scopes: Scopes asked for at login (``openid`` is required).
        token_endpoint_auth: How the app authenticates at the token endpoint:
            ``"client_secret_basic"`` (HTTP Basic, RFC 6749 §2.3.1),
            ``"client_secret_post"`` (in the form) or ``"none"`` (a public
            client: PKCE only).
        display_name: The name on the login chooser (``name`` by default).

    Raises:
        ConfigurationError: on an inconsistent configuration.

    Example:
        ```python
        OIDCProvider("auth0", issuer="https://tenant.eu.auth0.com/",
                     audience="https://api.example.org", roles_claims=[roles.AUTH0_PERMISSIONS])
        ```
    """

    login_class: ClassVar[type[OIDCLogin]] = OIDCLogin
    """The login runtime's class (presets give their own subclass)."""

    def __init__(
        self,
        name: str,
        issuer: str,
        audience: str | Sequence[str] | None = None,
        *,
        client_ids: str | Sequence[str] | None = None,
        client_id_claims: Sequence[str] = ("client_id", "azp"),
        jwks_uri: str | None = None,
        discovery_url: str | None = None,
        algorithms: Sequence[str] | None = None,
        hmac_secret: str | bytes | None = None,
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = (),
        scope_claims: Sequence[str] = ("scope", "scp"),
        claim_values: Mapping[str, str | int | bool] | None = None,
        max_token_bytes: int = 16 * 1024,
        jwks_cooldown: float = 30.0,
        jwks_max_age: float = 3600.0,
        jwks_max_stale: float = 6 * 3600.0,
        introspection: Introspection | None = None,
        issuer_aliases: Sequence[str] = (),
        subject_claims: str | Sequence[str] = ("sub",),
        space_separated_aud: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str | None = None,
    ) -> None:
        super().__init__(
            name,
            issuer,
            audience,
            client_ids=client_ids,
            client_id_claims=client_id_claims,
            jwks_uri=jwks_uri,
            discovery_url=discovery_url,
            algorithms=algorithms,
            hmac_secret=hmac_secret,
            token_type=token_type,
            leeway=leeway,
            required_claims=required_claims,
            roles_claims=roles_claims,
            scope_claims=scope_claims,
            claim_values=claim_values,
            max_token_bytes=max_token_bytes,
            jwks_cooldown=jwks_cooldown,
            jwks_max_age=jwks_max_age,
            jwks_max_stale=jwks_max_stale,
            introspection=introspection,
            issuer_aliases=issuer_aliases,
            subject_claims=subject_claims,
            space_separated_aud=space_separated_aud,
        )
        check_login_settings(name, client_id, client_secret, login_scopes, token_endpoint_auth)
        self.client_id = client_id
        self._client_secret = client_secret
        self.login_scopes = tuple(login_scopes)
        self.token_endpoint_auth: TokenEndpointAuth = token_endpoint_auth
        self.display_name = display_name or name

    @property
    def login_enabled(self) -> bool:
        """Whether login is configured (a ``client_id``)."""
        return self.client_id is not None

    @property
    def exchange_client_ids(self) -> frozenset[str]:
        """The client ids counted as yours in token exchange: ``client_id`` and ``client_ids``."""
        ours = set(self.policy.client_ids)
        if self.client_id is not None:
            ours.add(self.client_id)
        return frozenset(ours)

    def login_options(self) -> dict[str, Any]:
        """The keyword arguments of the login runtime (presets extend them)."""
        assert self.client_id is not None  # noqa: S101 - checked by bind_login
        algorithms = tuple(self.policy.algorithms - HMAC_ALGS) or DEFAULT_ALGORITHMS
        return {
            "name": self.name,
            "display_name": self.display_name,
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "issuer": self.issuer,
            "issuer_aliases": tuple(sorted(self.policy.issuer_aliases)),
            "discovery_url": self.discovery_url,
            "jwks_uri": self.jwks_uri,
            "scopes": self.login_scopes,
            "token_endpoint_auth": self.token_endpoint_auth,
            "algorithms": tuple(sorted(algorithms)),
            "leeway": self.policy.leeway,
        }

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> OIDCLogin:
        """Create the login runtime for one app.

        Raises:
            ConfigurationError: ``login_not_configured`` without ``client_id``.
        """
        need_login(self.login_enabled, self.name)
        return self.login_class(**self.login_options(), client=client, clock=clock, timeout=timeout)

    def identity_issuer(self, principal: Principal) -> str:
        """The namespace of identities read from this provider's tokens: ``issuer``."""
        return self.issuer

    def exchange_identity(self, principal: Principal) -> ExternalIdentity | None:
        """The identity behind a token this provider's verifier accepted, for token exchange.

        Keyed as a browser login keys it (``issuer``, ``sub``). ``None`` when
        the token was not issued to one of your clients (token substitution:
        a token minted for another app is never exchanged).
        """
        if principal.provider != self.name:
            return None
        if not issued_to(principal, self.exchange_client_ids):
            return None
        return self.identity_from_token(principal)

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """The identity in an accepted token's claims (presets override the quirks)."""
        return claims_identity(self.name, self.identity_issuer(principal), principal.claims)


def check_login_settings(
    name: str,
    client_id: str | None,
    client_secret: str | None,
    login_scopes: Sequence[str],
    token_endpoint_auth: str,
    *,
    needs_openid: bool = True,
) -> None:
    """Refuse login settings that cannot work, at construction.

    Raises:
        ConfigurationError: a secret without a client id, a confidential
            client without a secret (or a public one with), no ``openid``
            scope, an unknown ``token_endpoint_auth``.
    """
    if token_endpoint_auth not in _TOKEN_ENDPOINT_AUTH:
        raise ConfigurationError(
            "unknown_token_endpoint_auth",
            provider=name,
            message=f"token_endpoint_auth is one of {', '.join(_TOKEN_ENDPOINT_AUTH)}",
        )
    if client_id is None:
        if client_secret is not None:
            raise ConfigurationError(
                "client_secret_without_client_id",
                provider=name,
                message="client_secret is given but client_id is not",
            )
        return
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigurationError("login_client_id_required", provider=name)
    public = token_endpoint_auth == "none"
    if public and client_secret is not None:
        raise ConfigurationError(
            "public_client_with_secret",
            provider=name,
            message="token_endpoint_auth='none' is a public client: drop client_secret",
        )
    if not public and not client_secret:
        raise ConfigurationError(
            "login_needs_client_secret",
            provider=name,
            message=(
                f"logging in needs the client's secret (token_endpoint_auth="
                f"{token_endpoint_auth!r}); for a public client use token_endpoint_auth='none'"
            ),
        )
    if needs_openid and "openid" not in login_scopes:
        raise ConfigurationError(
            "oidc_login_needs_openid_scope",
            provider=name,
            message="an OpenID Connect login asks for the 'openid' scope: add it to login_scopes",
        )
