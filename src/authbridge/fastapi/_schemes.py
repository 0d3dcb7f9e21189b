"""OpenAPI security schemes for other ways in, next to the pasted bearer token.

``AuthBridge.install`` adds them to the document as *alternative* security
requirements of every protected route (separate requirement objects: OR, not
AND). They read nothing: the principal dependency reads the ``Authorization``
header whichever way the caller got its token.
"""

from __future__ import annotations

from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows
from fastapi.openapi.models import OpenIdConnect as OpenIdConnectModel


def authorization_code_model(
    *, authorization_url: str, token_url: str, scopes: dict[str, str], description: str
) -> OAuth2Model:
    """An OAuth2 scheme with only the authorization code flow (PKCE is Swagger's side)."""
    flow = OAuthFlowAuthorizationCode(
        authorizationUrl=authorization_url, tokenUrl=token_url, scopes=scopes
    )
    return OAuth2Model(flows=OAuthFlows(authorizationCode=flow), description=description)


def openid_connect_model(*, discovery_url: str, description: str) -> OpenIdConnectModel:
    """An OpenID Connect scheme pointing at the provider's discovery document."""
    return OpenIdConnectModel(openIdConnectUrl=discovery_url, description=description)
