"""Okta: a custom authorization server as an OpenID Provider, for every role."""

from __future__ import annotations

from collections.abc import Sequence

from ..client import ExternalIdentity, TokenEndpointAuth
from ..errors import ConfigurationError
from ..jose._jwt import TokenType
from ..resource import Principal
from ._login import audiences, claims_identity, site, with_login_client
from .oidc import OIDCProvider


class OktaProvider(OIDCProvider):
    """An Okta custom authorization server: its access tokens, "Log in with Okta", exchange.

    The issuer is ``https://{domain}/oauth2/{authorization_server}``
    (``default`` exists in every org; the org authorization server, whose
    access tokens are for Okta's own APIs, is not supported). Endpoints come
    from discovery (``/v1/authorize``, ``/v1/token``, ``/v1/userinfo``,
    ``/v1/logout``, keys at ``/v1/keys``); PKCE S256, the nonce and
    RP-initiated logout are supported.

    Resource server: ``aud`` is the server's audience (``api://default`` for
    ``default``); the client is ``cid`` (Okta sends neither ``client_id``
    nor ``azp``); scopes are the ``scp`` array.

    Identities are keyed by the issuer + the Okta user id. Quirk: in an
    access token ``sub`` is the user's *login* (an email address, which can
    change) and the user id is ``uid``; in an ID token ``sub`` is the user id.
    Token exchange therefore reads ``uid`` from access tokens (and refuses a
    machine token, which has none), ``sub`` from ID tokens.

    Args:
        domain: Your Okta domain (``acme.okta.com``) or custom URL domain.
        authorization_server: The custom authorization server's id.
        audience: Accepted ``aud`` values (the server's audience setting).
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: The Okta app integration's client id: enables login.
        client_secret: Its secret.
        client_ids: Clients whose tokens are accepted (``cid`` must name one).
        login_scopes: Scopes asked for at login.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        jwks_uri: Use this key set instead of the discovered one.
        algorithms: Accepted JWS algorithms (Okta signs with RS256).
        token_type: See [OIDCProvider][authbridge.OIDCProvider].
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``, ``aud``.
        roles_claims: Claim paths to read roles from (a ``groups`` claim you add).

    Raises:
        ConfigurationError: an invalid domain or server id, or an inconsistent configuration.
    """

    def __init__(
        self,
        domain: str,
        authorization_server: str = "default",
        audience: str | Sequence[str] | None = "api://default",
        *,
        name: str = "okta",
        client_id: str | None = None,
        client_secret: str | None = None,
        client_ids: Sequence[str] | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str = "Okta",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = ("RS256",),
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
        roles_claims: Sequence[str | tuple[str, ...]] = (),
    ) -> None:
        if not authorization_server or not authorization_server.isalnum():
            raise ConfigurationError(
                "invalid_authorization_server",
                provider=name,
                message="authorization_server is a custom authorization server's id ('default')",
            )
        super().__init__(
            name,
            f"{site(domain, name=name, what='domain')}/oauth2/{authorization_server}",
            audience,
            client_ids=with_login_client(client_id, client_ids),
            client_id_claims=("cid",),
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
        self.authorization_server = authorization_server

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """Access tokens: the user id is ``uid``; ID tokens (``aud`` names your client): ``sub``."""
        claims = principal.claims
        if "uid" in claims:
            return claims_identity(self.name, self.issuer, claims, subject_claim="uid")
        if self.exchange_client_ids.isdisjoint(audiences(claims)):
            return None  # an access token without a user: a machine's
        return claims_identity(self.name, self.issuer, claims)
