"""Keycloak: a realm as an OpenID Provider, for every role."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from ..client import TokenEndpointAuth
from ..errors import ConfigurationError
from ..jose._jwt import TokenType
from ..resource import Introspection
from ._login import site, with_login_client
from .oidc import OIDCProvider


class KeycloakProvider(OIDCProvider):
    """A Keycloak realm: its access tokens on routes, "Log in with Keycloak", exchange.

    The issuer is ``{base_url}/realms/{realm}`` (Keycloak 17 and later; older
    WildFly distributions need ``base_url`` ending in ``/auth``). Endpoints
    come from discovery (``.../protocol/openid-connect/auth``, ``/token``,
    ``/userinfo``, ``/logout``, keys at ``/certs``); PKCE S256, the nonce and
    RP-initiated logout are supported.

    Resource server: Keycloak puts your API in ``aud`` only with an
    *Audience* mapper; ``audience`` defaults to ``client_id`` (add an
    Audience mapper for the client itself), pass your API's client id
    otherwise. Realm roles are read from ``realm_access.roles``; the client
    is ``azp``; Keycloak's ``typ`` claim refuses ID and refresh tokens.

    Identities are keyed by the realm's issuer + ``sub`` (the user's UUID);
    ``preferred_username`` is the username; ``email_verified`` is the realm's
    flag (only as verified as the realm makes it).

    Args:
        base_url: Keycloak's external URL (``https://sso.example.com``).
        realm: The realm name.
        audience: Accepted ``aud`` values (``client_id`` by default).
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: The realm client logging people in: enables login.
        client_secret: Its secret (a confidential client).
        client_ids: Other clients counted as yours (``azp`` must name one).
        login_scopes: Scopes asked for at login.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        jwks_uri: Use this key set instead of the discovered one (an
            internal URL when Keycloak's public hostname is not reachable).
        algorithms: Accepted JWS algorithms (asymmetric by default).
        token_type: See [OIDCProvider][authbridge.OIDCProvider].
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``, ``aud``.
        roles_claims: Claim paths to read roles from.
        introspection: Also accept opaque tokens, checked by introspection.

    Raises:
        ConfigurationError: an empty realm, or an inconsistent configuration.
    """

    def __init__(
        self,
        base_url: str,
        realm: str,
        audience: str | Sequence[str] | None = None,
        *,
        name: str = "keycloak",
        client_id: str | None = None,
        client_secret: str | None = None,
        client_ids: Sequence[str] | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str = "Keycloak",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] | None = None,
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = ("realm_access.roles",),
        introspection: Introspection | None = None,
    ) -> None:
        if not isinstance(realm, str) or not realm or realm != realm.strip():
            raise ConfigurationError(
                "invalid_realm", provider=name, message="realm is the realm's name"
            )
        base = site(base_url, name=name, what="base_url")
        super().__init__(
            name,
            f"{base}/realms/{quote(realm, safe='')}",
            client_id if audience is None else audience,
            client_ids=with_login_client(client_id, client_ids),
            jwks_uri=jwks_uri,
            algorithms=algorithms,
            token_type=token_type,
            leeway=leeway,
            required_claims=required_claims,
            roles_claims=roles_claims,
            introspection=introspection,
            client_id=client_id,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth=token_endpoint_auth,
            display_name=display_name,
        )
        self.base_url = base
        self.realm = realm
