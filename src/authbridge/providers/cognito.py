"""Amazon Cognito: a user pool as an OpenID Provider, for every role."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ..client import ExternalIdentity, LoginEndpoints, TokenEndpointAuth
from ..client._oidc import OIDCLogin
from ..errors import ConfigurationError, LoginError
from ..resource import Principal
from ._login import claims_identity, site, text, verified_flag
from .oidc import OIDCProvider

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


class CognitoLogin(OIDCLogin):
    """Logging in with a Cognito user pool's hosted UI (see `CognitoProvider`)."""

    def __init__(self, *, logout_endpoint: str, **options: Any) -> None:
        super().__init__(**options)
        self.logout_endpoint = logout_endpoint
        self.supports_logout = True

    def identity_from(
        self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None, id_token: str
    ) -> ExternalIdentity:
        """Keyed by the pool's issuer + ``sub``; userinfo's ``"true"`` strings count as verified.

        Raises:
            LoginError: ``no_subject``.
        """
        merged = {**(userinfo or {}), **claims}
        identity = claims_identity(
            self.name,
            self.issuer,
            merged,
            email_verified=verified_flag(merged.get("email_verified"), strings=True),
            id_token=id_token,
        )
        if identity is None:
            raise LoginError("no_subject", provider=self.name)
        username = text(claims.get("cognito:username"))
        if username is None:
            return identity
        return dataclasses.replace(identity, username=username)

    async def logout_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str, state: str
    ) -> str | None:
        """Cognito's own ``/logout?client_id=...&logout_uri=...`` (not OpenID RP-initiated)."""
        query = urlencode({"client_id": self.client_id, "logout_uri": post_logout_redirect_uri})
        return f"{self.logout_endpoint}?{query}"


class CognitoProvider(OIDCProvider):
    """An Amazon Cognito user pool: access tokens on routes, hosted-UI login, exchange.

    The issuer is ``https://cognito-idp.{region}.amazonaws.com/{user_pool_id}``
    (keys at ``{issuer}/.well-known/jwks.json``, no discovery needed).

    Resource server: Cognito access tokens carry **no** ``aud``: they name
    their app client in ``client_id`` and say ``token_use: access``; both
    are checked (``client_ids`` are your app clients). ID tokens
    (``token_use: id``) are refused as access tokens. Groups are read as
    roles from ``cognito:groups``.

    Login (needs ``domain``, the pool's hosted UI / managed login domain,
    ``<prefix>.auth.<region>.amazoncognito.com`` or your custom domain):
    ``/oauth2/authorize``, ``/oauth2/token``, ``/oauth2/userInfo`` under it,
    PKCE S256 and the nonce. The login client is ``client_id`` or the first
    of ``client_ids``; a public app client (no secret) logs in with
    ``token_endpoint_auth="none"``. Logout is Cognito's own ``/logout``
    endpoint (register the sign-out URL on the app client). Identities are
    keyed by the pool's issuer + ``sub``; the userinfo endpoint sends
    ``email_verified`` as the string ``"true"``, which counts;
    ``cognito:username`` is the username.

    Token exchange: an access token of one of your app clients becomes the
    same identity as a browser login.

    Args:
        region: The pool's AWS region (``eu-west-1``).
        user_pool_id: The pool id (``eu-west-1_AbCdEf123``).
        client_ids: Your app client ids.
        domain: The hosted UI domain (login only).
        name: Provider name in the [Principal][authbridge.Principal].
        client_id: The login app client, if not the first of ``client_ids``.
        client_secret: The login app client's secret.
        login_scopes: Scopes asked for at login (allowed on the app client).
        token_endpoint_auth: How the app authenticates at the token endpoint.
        display_name: The name on the login chooser.
        jwks_uri: The pool's key set (tests point it at a fake).
        leeway: Tolerated clock skew in seconds (at most 300).
        roles_claims: Claim paths to read roles from.

    Raises:
        ConfigurationError: a malformed region or pool id (its prefix is the
            region), no client ids, login settings without a domain.
    """

    login_class = CognitoLogin

    def __init__(
        self,
        region: str,
        user_pool_id: str,
        client_ids: str | Sequence[str],
        domain: str | None = None,
        *,
        name: str = "cognito",
        client_id: str | None = None,
        client_secret: str | None = None,
        login_scopes: Sequence[str] = ("openid", "email", "profile"),
        token_endpoint_auth: TokenEndpointAuth = "client_secret_basic",
        display_name: str = "Cognito",
        jwks_uri: str | None = None,
        leeway: float = 30.0,
        roles_claims: Sequence[str | tuple[str, ...]] = ("cognito:groups",),
    ) -> None:
        if not isinstance(region, str) or not _REGION.fullmatch(region):
            raise ConfigurationError(
                "invalid_region", provider=name, message=f"not an AWS region: {region!r}"
            )
        prefix, _, rest = user_pool_id.partition("_")
        if prefix != region or not rest.isalnum():
            raise ConfigurationError(
                "invalid_user_pool_id",
                provider=name,
                message=f"a user pool id is '<region>_<id>' ({region}_AbCdEf123), got "
                f"{user_pool_id!r}",
            )
        ids = (client_ids,) if isinstance(client_ids, str) else tuple(client_ids)
        if not ids:
            raise ConfigurationError("audience_or_client_ids_required", provider=name)
        login_id = client_id or ids[0]
        wants_login = client_secret is not None or token_endpoint_auth == "none"
        if wants_login and domain is None:
            raise ConfigurationError(
                "cognito_login_needs_domain",
                provider=name,
                message="logging in goes through the pool's hosted UI: give domain=...",
            )
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        super().__init__(
            name,
            issuer,
            None,
            client_ids=tuple(dict.fromkeys((*ids, login_id))),
            client_id_claims=("client_id",),
            jwks_uri=jwks_uri or f"{issuer}/.well-known/jwks.json",
            algorithms=("RS256",),
            leeway=leeway,
            roles_claims=roles_claims,
            claim_values={"token_use": "access"},
            client_id=login_id if wants_login else None,
            client_secret=client_secret,
            login_scopes=login_scopes,
            token_endpoint_auth=token_endpoint_auth,
            display_name=display_name,
        )
        self.region = region
        self.user_pool_id = user_pool_id
        self.domain = None if domain is None else site(domain, name=name, what="domain")

    def login_options(self) -> dict[str, Any]:
        """The hosted UI's fixed endpoints; keys from the pool."""
        assert self.domain is not None  # noqa: S101 - checked at construction
        base = self.domain
        return {
            **super().login_options(),
            "endpoints": LoginEndpoints(
                authorization_endpoint=f"{base}/oauth2/authorize",
                token_endpoint=f"{base}/oauth2/token",
                issuer=self.issuer,
                userinfo_endpoint=f"{base}/oauth2/userInfo",
                end_session_endpoint=f"{base}/logout",
            ),
            "logout_endpoint": f"{base}/logout",
            "algorithms": ("RS256",),
        }

    def identity_from_token(self, principal: Principal) -> ExternalIdentity | None:
        """An access token: ``sub``, and ``username`` as the username hint."""
        identity = claims_identity(self.name, self.issuer, principal.claims)
        if identity is None:
            return None
        username = text(principal.claims.get("username"))
        if username is None:
            return identity
        return dataclasses.replace(identity, username=username)
