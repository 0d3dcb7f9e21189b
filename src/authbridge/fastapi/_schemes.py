"""Security schemes that document other ways in (OpenAPI), next to the pasted bearer token.

Each is a sub-dependency of the principal dependency, so FastAPI lists it as
an *alternative* security requirement of every protected route (a separate
requirement object: OR, not AND). They read nothing: the principal dependency
reads the ``Authorization`` header whichever way the caller got its token.
"""

from __future__ import annotations

from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowAuthorizationCode, OAuthFlows
from fastapi.openapi.models import OpenIdConnect as OpenIdConnectModel
from fastapi.openapi.models import SecurityBase as Model
from fastapi.security.base import SecurityBase


class DocumentedScheme(SecurityBase):
    """A scheme shown in the OpenAPI document.

    ``model`` may be replaced once the provider's endpoints are discovered; FastAPI
    reads it when it first builds the document.
    """

    def __init__(self, scheme_name: str, model: Model) -> None:
        self.scheme_name = scheme_name
        self.model = model

    async def __call__(self) -> None:
        """Nothing to read: the principal dependency handles the token."""


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
