"""OpenAPI security schemes: the pasted bearer token's description, and the login scheme.

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
from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows

from ..resource.apis import FacebookProvider, GitHubProvider, GoogleProvider, UserinfoProvider
from ..resource.base import Provider
from ..resource.provider import OIDCProvider


def authorization_code_model(
    *, authorization_url: str, token_url: str, scopes: dict[str, str], description: str
) -> OAuth2Model:
    """An OAuth2 scheme with only the authorization code flow (PKCE is Swagger's side)."""
    flow = OAuthFlowAuthorizationCode(
        authorizationUrl=authorization_url, tokenUrl=token_url, scopes=scopes
    )
    return OAuth2Model(flows=OAuthFlows(authorizationCode=flow), description=description)


def bearer_description(providers: Sequence[Provider]) -> str:
    """The description of the one pasted-token scheme: every source, and its kind of token.

    One box in Swagger UI's "Authorize" dialog for all sources: authbridge
    routes a token by its own content, so which box it is pasted in would
    not matter, and several boxes that all send ``Authorization: Bearer``
    only raise the question of which one to use.
    """
    if len(providers) == 1:
        provider = providers[0]
        return f"Paste an access token from {provider.name}: " + _lowercase(describe(provider))
    lines = ["Paste an access token from any of these sources:", ""]
    lines.extend(f"- **{p.name}**: {describe(p)}" for p in providers)
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
    if isinstance(provider, OIDCProvider):
        kinds = "JWT or opaque" if provider.introspection else "JWT"
        return f"An access token ({kinds}) issued by {provider.issuer}"
    return f"A token of {provider.name}"
