"""GitLab (gitlab.com or self-managed): OpenID Connect login, its ID tokens, exchange."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..client import ExternalIdentity, TokenEndpointAuth
from ..client._oidc import OIDCLogin
from ..jose._jwt import TokenType
from ._login import site, text, with_login_client
from .oidc import OIDCProvider


class GitLabLogin(OIDCLogin):
    """Logging in with GitLab inside one app (see `GitLabProvider`)."""

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """As any OpenID Provider, the username from GitLab's ``nickname``."""
        identity = super().identity_from(claims, userinfo, id_token)
        if identity.username is not None:
            return identity
        nickname = text(claims.get("nickname", (userinfo or {}).get("nickname")))
        return dataclasses.replace(identity, username=nickname)


class GitLabProvider(OIDCProvider):
    """GitLab as an OpenID Provider: "Log in with GitLab", its JWTs on routes, exchange.

    The issuer is ``base_url`` (``https://gitlab.com``, or your self-managed
    instance's external URL, without a trailing slash). Endpoints come from
    discovery (``{base_url}/.well-known/openid-configuration``):
    ``/oauth/authorize``, ``/oauth/token``, ``/oauth/userinfo``, keys at
    ``/oauth/discovery/keys``. PKCE S256 and the nonce are supported; GitLab
    has no RP-initiated logout.

    Identities are keyed ``base_url`` + ``sub`` (the numeric user id as a
    string); ``nickname`` is the username; ``email_verified`` is GitLab's
    "confirmed" flag; userinfo adds ``groups``.

    Resource server: GitLab's OAuth access tokens are opaque (check them with
    [UserinfoProvider][authbridge.UserinfoProvider] if you must); the JWTs
    GitLab signs are ID tokens (``aud`` = your application id, the default
    ``audience``) and CI/CD ID tokens (``aud`` as the job asks).

    Args:
        base_url: The GitLab instance (its issuer).
        audience: Accepted ``aud`` values (``client_id`` by default).
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: The application id of your GitLab application: enables login.
        client_secret: Its secret.
        client_ids: Other application ids counted as yours.
        login_scopes: Scopes asked for at login.
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        jwks_uri: Use this key set instead of the discovered one.
        algorithms: Accepted JWS algorithms (GitLab signs with RS256).
        token_type: See [OIDCProvider][authbridge.OIDCProvider].
        leeway: Tolerated clock skew in seconds (at most 300).
        required_claims: Claims that must be present besides ``iss``, ``exp``, ``aud``.

    Raises:
        ConfigurationError: on an inconsistent configuration.
    """

    login_class = GitLabLogin

    def __init__(
        self,
        base_url: str = "https://gitlab.com",
        audience: str | Sequence[str] | None = None,
        *,
        name: str = "gitlab",
        client_id: str | None = None,
        client_secret: str | None = None,
        client_ids: Sequence[str] | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_post",
        display_name: str = "GitLab",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = ("RS256",),
        token_type: TokenType = "lenient",
        leeway: float = 30.0,
        required_claims: Sequence[str] = (),
    ) -> None:
        super().__init__(
            name,
            site(base_url, name=name, what="base_url"),
            client_id if audience is None else audience,
            client_ids=with_login_client(client_id, client_ids),
            jwks_uri=jwks_uri,
            algorithms=algorithms,
            token_type=token_type,
            leeway=leeway,
            required_claims=required_claims,
            client_id=client_id,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth=token_endpoint_auth,
            display_name=display_name,
        )
