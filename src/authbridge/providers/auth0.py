"""Auth0: a tenant as an OpenID Provider, for every role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..client import AuthorizationRequest, TokenEndpointAuth
from ..client._oidc import OIDCLogin
from ..jose._jwt import TokenType
from ._login import site, with_login_client
from .oidc import OIDCProvider


class Auth0Login(OIDCLogin):
    """Logging in with Auth0 inside one app (see `Auth0Provider`)."""

    def __init__(self, *, api_audience: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.api_audience = api_audience

    def authorization_params(self, auth: AuthorizationRequest) -> dict[str, str]:
        """Adds ``audience``: Auth0 then issues a JWT access token for your API."""
        params = super().authorization_params(auth)
        if self.api_audience is not None:
            params["audience"] = self.api_audience
        return params


class Auth0Provider(OIDCProvider):
    """An Auth0 tenant: access tokens for your API on routes, "Log in with Auth0", exchange.

    The issuer is ``https://{domain}/`` (with Auth0's trailing slash; a
    custom domain is the domain your tokens name). Endpoints come from
    discovery (``/authorize``, ``/oauth/token``, ``/userinfo``, keys at
    ``/.well-known/jwks.json``, ``/oidc/logout`` when RP-initiated logout is
    enabled on the tenant). PKCE S256 and the nonce are supported.

    Resource server: ``audience`` is your API's identifier (Auth0 issues JWT
    access tokens only for a registered API; without one its access tokens
    are opaque). Permissions (RBAC, "Add Permissions in the Access Token")
    are read as roles from ``permissions``; the client is ``azp``. Login
    asks for ``audience`` (the first one), so the access token it gets is one
    for your API.

    Identities are keyed ``https://{domain}/`` + ``sub`` (``auth0|...``,
    ``google-oauth2|...``: the connection is part of the subject);
    ``email_verified`` is what the connection reported.

    Args:
        domain: The tenant's domain (``tenant.eu.auth0.com``) or custom domain.
        audience: Your API's identifier(s) (``client_id`` by default: ID tokens only).
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: The Auth0 application's client id: enables login.
        client_secret: Its secret.
        client_ids: Other applications counted as yours.
        login_scopes: Scopes asked for at login.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        jwks_uri: Use this key set instead of the discovered one.
        algorithms: Accepted JWS algorithms (Auth0 signs with RS256).
        token_type: See [OIDCProvider][authbridge.OIDCProvider].
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``, ``aud``.
        roles_claims: Claim paths to read roles from.

    Raises:
        ConfigurationError: an invalid domain, or an inconsistent configuration.
    """

    login_class = Auth0Login

    def __init__(
        self,
        domain: str,
        audience: str | Sequence[str] | None = None,
        *,
        name: str = "auth0",
        client_id: str | None = None,
        client_secret: str | None = None,
        client_ids: Sequence[str] | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str = "Auth0",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = ("RS256",),
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = ("permissions",),
    ) -> None:
        super().__init__(
            name,
            site(domain, name=name, what="domain") + "/",
            client_id if audience is None else audience,
            client_ids=with_login_client(client_id, client_ids),
            jwks_uri=jwks_uri,
            algorithms=algorithms,
            token_type=token_type,
            leeway=leeway,
            required_claims=required_claims,
            roles_claims=roles_claims,
            client_id=client_id,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth=token_endpoint_auth,
            display_name=display_name,
        )
        self.domain = domain
        given = (audience,) if isinstance(audience, str) else tuple(audience or ())
        self.api_audience = given[0] if given else None

    def login_options(self) -> dict[str, Any]:
        """The API audience goes into the authorization request."""
        return {**super().login_options(), "api_audience": self.api_audience}
