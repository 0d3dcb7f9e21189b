"""OpenAPI security schemes: the pasted bearer token's description, the login scheme,
and the password and client-credentials flows of the app's own issuer.

``AuthBridge.install`` adds the login scheme to the document as an *alternative*
security requirement of every protected route (a separate requirement object:
OR, not AND). It reads nothing: the principal dependency reads the
``Authorization`` header whichever way the caller got its token.

No ``openIdConnect`` scheme: Swagger UI turns one into a box per grant the
provider's discovery document lists (implicit, client credentials with a
secret field, ...), none of which a public client in a browser should use.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import (
    OAuthFlowAuthorizationCode,
    OAuthFlowClientCredentials,
    OAuthFlowPassword,
    OAuthFlows,
)

from ..providers import FacebookProvider, GitHubProvider, GoogleProvider, UserinfoProvider
from ..resource.base import Provider
from ..resource.provider import JWTProvider


def authorization_code_model(
    *,
    authorization_url: str,
    token_url: str,
    scopes: dict[str, str],
    description: str,
    refresh_url: str | None = None,
) -> OAuth2Model:
    """An OAuth2 scheme with only the authorization code flow (PKCE is Swagger's side)."""
    flow = OAuthFlowAuthorizationCode(
        authorizationUrl=authorization_url,
        tokenUrl=token_url,
        refreshUrl=refresh_url,
        scopes=scopes,
    )
    return OAuth2Model(flows=OAuthFlows(authorizationCode=flow), description=description)


LOGIN_SCHEME = "AppLogin"
"""The OpenAPI scheme of the app's own authorization endpoint (browser login)."""

PASSWORD_SCHEME = "AppPassword"
"""The OpenAPI scheme of the app's own password grant."""

CLIENT_CREDENTIALS_SCHEME = "AppClientCredentials"
"""The OpenAPI scheme of the app's own client-credentials grant."""


def password_model(*, token_url: str, scopes: dict[str, str], client_id: str | None) -> OAuth2Model:
    """The app's password grant: a local user's name and password in Swagger UI's box.

    ``refreshUrl`` is the token endpoint too (the refresh token grant).
    """
    flow = OAuthFlowPassword(tokenUrl=token_url, refreshUrl=token_url, scopes=scopes)
    description = "Log in with a local user of this app (password grant)"
    if client_id is not None:
        description += f"; client_id: `{client_id}`, no secret"
    return OAuth2Model(flows=OAuthFlows(password=flow), description=description)


def client_credentials_model(*, token_url: str, scopes: dict[str, str]) -> OAuth2Model:
    """The app's client-credentials grant: a registered machine client's id and secret."""
    flow = OAuthFlowClientCredentials(tokenUrl=token_url, scopes=scopes)
    return OAuth2Model(
        flows=OAuthFlows(clientCredentials=flow),
        description="A machine client registered with this app: its client_id and client_secret",
    )


def bearer_description(providers: Sequence[Provider], *, own: Provider | None = None) -> str:
    """The description of the one pasted-token scheme: every source, and its kind of token.

    One box in Swagger UI's "Authorize" dialog for all sources: authbridge
    routes a token by its own content, so which box it is pasted in would
    not matter, and several boxes that all send ``Authorization: Bearer``
    only raise the question of which one to use. ``own`` is the app's own
    issuer ([AppIssuer][authbridge.AppIssuer]), listed first.
    """
    described = [(p.name, describe(p)) for p in providers]
    if own is not None:
        issuer = getattr(own, "issuer", "")
        described.insert(0, (own.name, f"An access token issued by this app ({issuer})"))
    if len(described) == 1:
        name, text = described[0]
        return f"Paste an access token from {name}: " + _lowercase(text)
    lines = ["Paste an access token from any of these sources:", ""]
    lines.extend(f"- **{name}**: {text}" for name, text in described)
    return "\n".join(lines)


def _lowercase(text: str) -> str:
    return text[:1].lower() + text[1:]


def describe(provider: Provider) -> str:
    """What a reader of the OpenAPI document should know about a provider's tokens."""
    if isinstance(provider, GoogleProvider):
        return "A Google ID token or access token (ya29.)"
    if isinstance(provider, GitHubProvider):
        return "A GitHub token (" + ", ".join(f"{p}..." for p in provider.token_prefixes) + ")"
    if isinstance(provider, FacebookProvider):
        return "A Facebook user access token"
    if isinstance(provider, UserinfoProvider):
        return f"An access token of {provider.issuer} (checked at its userinfo endpoint)"
    if isinstance(provider, JWTProvider):
        kinds = "JWT or opaque" if provider.introspection else "JWT"
        return f"An access token ({kinds}) issued by {provider.issuer}"
    return f"A token of {provider.name}"
