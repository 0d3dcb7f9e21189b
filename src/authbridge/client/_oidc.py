"""The generic OpenID Connect login runtime: discovery, ID token, userinfo, RP-initiated logout.

`OIDCLogin` is the [ProviderLogin][authbridge.client.ProviderLogin] of every
OpenID Provider: its endpoints come from discovery (``MetadataCache``, the
same discipline as the resource server's) unless static ones are given, its
keys from the provider's ``jwks_uri`` through ``RemoteJWKS`` (same cooldown
rules). The ID token is checked by `verify_id_token`; userinfo is fetched when
the provider has the endpoint (its ``sub`` must equal the ID token's, OIDC Core
§5.3.2). Presets (Google, Apple, Entra...) subclass it and override the hooks
`OIDCLogin.expected_issuer` and `OIDCLogin.identity_from`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from .._clock import Clock
from .._http import ClientSource, request
from ..errors import ConfigurationError, InvalidToken, LoginError, ProviderUnavailable
from ..jose import RemoteJWKS, parse_compact
from ..metadata import MetadataCache, ProviderMetadata, check_issuer_url
from ..resource.provider import DEFAULT_ALGORITHMS
from ._base import ExternalIdentity, LoginEndpoints, ProviderLogin, TokenEndpointAuth, TokenSet
from ._id_token import id_token_policy, verify_id_token

__all__ = ["MAX_ID_TOKEN_BYTES", "MAX_USERINFO_BYTES", "OIDCLogin"]

MAX_USERINFO_BYTES = 64 * 1024
"""Largest userinfo answer read from a provider."""

MAX_ID_TOKEN_BYTES = 16 * 1024
"""Longest ID token accepted (checked before any decoding)."""


class OIDCLogin(ProviderLogin):
    """Log in at an OpenID Provider with the authorization-code flow, PKCE S256 and a nonce.

    Args:
        name: The provider's name (stored in the transaction, shown in logs).
        display_name: Shown on the login chooser.
        client_id: The app's client id at the provider.
        client_secret: Its secret (``None`` for a public client).
        issuer: The provider's exact issuer identifier (the ID token's ``iss``,
            the discovery document's ``issuer``, RFC 9207's ``iss``).
        issuer_aliases: Other exact ``iss`` spellings the provider uses in ID
            tokens (the identity is keyed under ``issuer`` all the same).
        discovery_url: Fetch the metadata here instead of the well-known URLs.
        endpoints: Static endpoints: no discovery for them (give ``jwks_uri``
            too to skip discovery entirely).
        jwks_uri: The key set's URL instead of the discovered one.
        scopes: Scopes asked for; must contain ``openid``.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        algorithms: Accepted ID-token algorithms (asymmetric only).
        leeway: Clock skew tolerated for ``exp`` / ``iat`` (at most 300 s).
        client: Yields the outbound HTTP client.
        clock: Time source (POSIX seconds).
        timeout: Bound on each outbound exchange, in seconds.

    Raises:
        ConfigurationError: an invalid issuer, no client id, no ``openid``
            scope, HMAC or unknown algorithms, a leeway out of range.
    """

    uses_nonce = True
    fetch_userinfo: bool = True
    """Call the userinfo endpoint when the provider has one (presets may turn it off)."""

    def __init__(
        self,
        *,
        name: str,
        display_name: str,
        client_id: str,
        client_secret: str | None,
        issuer: str,
        issuer_aliases: Sequence[str] = (),
        discovery_url: str | None = None,
        endpoints: LoginEndpoints | None = None,
        jwks_uri: str | None = None,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        client: ClientSource,
        clock: Clock,
        timeout: float,
    ) -> None:
        super().__init__(client=client, clock=clock, timeout=timeout, client_secret=client_secret)
        check_issuer_url(issuer, provider=name)
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError(
                "login_client_id_required",
                provider=name,
                message="logging in needs the app's client_id at the provider (a non-empty string)",
            )
        if "openid" not in scopes:
            raise ConfigurationError(
                "oidc_login_needs_openid_scope",
                provider=name,
                message="an OpenID Connect login asks for the 'openid' scope: add it to scopes",
            )
        try:
            # Fails here, at construction, rather than at the first login.
            id_token_policy(
                issuer=issuer,
                client_id=client_id,
                algorithms=algorithms,
                leeway=leeway,
                issuer_aliases=issuer_aliases,
            )
        except ConfigurationError as exc:
            raise exc.for_provider(name) from None
        self.name = name
        self.display_name = display_name
        self.client_id = client_id
        self.issuer = issuer
        self.issuer_aliases = tuple(issuer_aliases)
        self.scopes = tuple(scopes)
        self.token_endpoint_auth = token_endpoint_auth
        self.algorithms = tuple(algorithms)
        self.leeway = float(leeway)
        self._static = endpoints
        self._endpoints = endpoints
        self.supports_logout = endpoints is None or endpoints.end_session_endpoint is not None
        self._metadata = MetadataCache(
            client, issuer, clock=clock, url=discovery_url, label=name, timeout=timeout
        )
        self.jwks = RemoteJWKS(
            jwks_uri or self._jwks_uri_from_metadata,
            client=client,
            label=name,
            clock=clock,
            timeout=timeout,
        )

    # -- endpoints -------------------------------------------------------------------------

    async def endpoints(self) -> LoginEndpoints:
        """The static endpoints, or those of the discovered metadata (cached once found).

        Raises:
            ProviderUnavailable: discovery failed (now or within its cooldown),
                or the document lacks an authorization or token endpoint.
        """
        if self._endpoints is not None:
            return self._endpoints
        metadata = await self._metadata.get()
        found = self._from_metadata(metadata)
        self._endpoints = found
        self.supports_logout = found.end_session_endpoint is not None
        return found

    def _from_metadata(self, metadata: ProviderMetadata) -> LoginEndpoints:
        if metadata.authorization_endpoint is None:
            raise ProviderUnavailable("metadata_without_authorization_endpoint", provider=self.name)
        if metadata.token_endpoint is None:
            raise ProviderUnavailable("metadata_without_token_endpoint", provider=self.name)
        return LoginEndpoints(
            authorization_endpoint=metadata.authorization_endpoint,
            token_endpoint=metadata.token_endpoint,
            issuer=metadata.issuer,
            iss_parameter_supported=(
                metadata.raw.get("authorization_response_iss_parameter_supported") is True
            ),
            userinfo_endpoint=metadata.userinfo_endpoint,
            end_session_endpoint=metadata.end_session_endpoint,
        )

    async def _jwks_uri_from_metadata(self) -> str:
        # Inside the JWKS cache's own cooldown: do not stack the discovery one on it.
        metadata = await self._metadata.get(ignore_cooldown=True)
        if metadata.jwks_uri is None:
            raise ProviderUnavailable("metadata_without_jwks_uri", provider=self.name)
        return metadata.jwks_uri

    # -- hooks -----------------------------------------------------------------------------

    def expected_issuer(self, claims: Mapping[str, Any]) -> str | None:
        """The exact ``iss`` an ID token with these (not yet verified) claims must carry.

        The generic provider has one issuer. Entra's multi-tenant endpoints
        override this to substitute the token's ``tid`` into the issuer
        template; ``None`` refuses the token (``id_token_invalid:issuer_mismatch``).
        The returned value is then checked against the verified token exactly.
        """
        return self.issuer

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """The person, from verified ID-token claims and the userinfo answer (if fetched).

        The identity is keyed by the configured ``issuer`` (an alias spelling
        counts as it) and ``sub``. ``email`` comes from the ID token, else from
        userinfo, and ``email_verified`` from the same place: only a JSON
        ``true`` counts. Presets with other quirks (Apple's ``"true"``
        strings, Google's hosted domains) override this.

        Raises:
            LoginError: ``no_subject``.
        """
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise LoginError("no_subject", provider=self.name)
        iss = claims.get("iss")
        issuer = iss if isinstance(iss, str) and iss not in self.issuer_aliases else self.issuer
        extra = userinfo or {}
        source = claims if "email" in claims else extra
        email = source.get("email")
        name = claims.get("name", extra.get("name"))
        username = claims.get("preferred_username", extra.get("preferred_username"))
        return ExternalIdentity(
            provider=self.name,
            issuer=issuer,
            subject=subject,
            email=email if isinstance(email, str) and email else None,
            email_verified=isinstance(email, str) and source.get("email_verified") is True,
            name=name if isinstance(name, str) and name else None,
            username=username if isinstance(username, str) and username else None,
            claims={**extra, **claims},
            id_token=id_token,
        )

    # -- identity --------------------------------------------------------------------------

    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> ExternalIdentity:
        """Verify the ID token (against ``nonce``), fetch userinfo, build the identity.

        Raises:
            LoginError: ``id_token_missing``, ``id_token_invalid:<reason>``,
                ``nonce_mismatch``, ``at_hash_mismatch``,
                ``userinfo_subject_mismatch``, ``no_subject``.
            ProviderUnavailable: keys, discovery or userinfo unavailable.
        """
        id_token = tokens.id_token
        if id_token is None:
            raise LoginError("id_token_missing", provider=self.name)
        issuer = self._issuer_for(id_token)
        try:
            claims = await verify_id_token(
                id_token,
                keys=self.jwks,
                issuer=issuer,
                issuer_aliases=self.issuer_aliases if issuer == self.issuer else (),
                client_id=self.client_id,
                nonce=nonce,
                algorithms=self.algorithms,
                leeway=self.leeway,
                now=self._clock(),
                access_token=tokens.access_token,
                max_bytes=MAX_ID_TOKEN_BYTES,
            )
        except LoginError as exc:
            raise exc.for_provider(self.name) from None
        userinfo = await self._userinfo(tokens, claims) if self.fetch_userinfo else None
        return self.identity_from(claims, userinfo, id_token)

    def _issuer_for(self, id_token: str) -> str:
        try:
            unverified = parse_compact(id_token, max_bytes=MAX_ID_TOKEN_BYTES).claims
        except InvalidToken as exc:
            raise LoginError(f"id_token_invalid:{exc.reason}", provider=self.name) from None
        issuer = self.expected_issuer(unverified)
        if issuer is None:
            raise LoginError("id_token_invalid:issuer_mismatch", provider=self.name)
        return issuer

    async def _userinfo(
        self, tokens: TokenSet, claims: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        endpoint = (await self.endpoints()).userinfo_endpoint
        if endpoint is None:
            return None
        response = await request(
            self._client,
            "GET",
            endpoint,
            headers={"Authorization": f"Bearer {tokens.access_token}"},
            timeout=self._timeout,
            max_bytes=MAX_USERINFO_BYTES,
            provider=self.name,
        )
        if response.status != 200:
            raise ProviderUnavailable(f"userinfo_status:{response.status}", provider=self.name)
        body = response.json_object(provider=self.name)
        subject = body.get("sub")
        if not isinstance(subject, str) or subject != claims.get("sub"):
            raise LoginError("userinfo_subject_mismatch", provider=self.name)
        return body

    # -- logout ----------------------------------------------------------------------------

    async def logout_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str, state: str
    ) -> str | None:
        """The RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0), if any.

        Carries ``id_token_hint`` (when known), ``post_logout_redirect_uri``,
        ``state`` and ``client_id``.

        Raises:
            ProviderUnavailable: discovery failed.
        """
        endpoint = (await self.endpoints()).end_session_endpoint
        if endpoint is None:
            return None
        params: dict[str, str] = {}
        if id_token_hint is not None:
            params["id_token_hint"] = id_token_hint
        params.update(
            post_logout_redirect_uri=post_logout_redirect_uri,
            state=state,
            client_id=self.client_id,
        )
        separator = "&" if urlsplit(endpoint).query else "?"
        return f"{endpoint}{separator}{urlencode(params)}"
