"""Provider descriptions: one configured object per provider serves every role.

The generic OpenID Connect provider ([OIDCProvider][authbridge.OIDCProvider])
and one module per preset (``github``, ``google``, ``facebook``, ``entra``, ``apple``, ``gitlab``,
``keycloak``, ``auth0``, ``okta``, ``cognito``), each
holding everything specific to its provider: endpoints, token checks, login
quirks and exchange rules. The role packages (``resource``, ``client``,
``issuer``) never import this package; they receive its objects.
"""

from ..metadata import MetadataCache, ProviderMetadata, discover, discovery_urls
from .apple import AppleLogin, AppleProvider
from .auth0 import Auth0Provider
from .cognito import CognitoProvider
from .entra import EntraProvider
from .facebook import FacebookLogin, FacebookProvider
from .github import GITHUB_TOKEN_PREFIXES, GitHubLogin, GitHubProvider
from .gitlab import GitLabProvider
from .google import GoogleLogin, GoogleProvider
from .keycloak import KeycloakProvider
from .oidc import OIDCProvider
from .okta import OktaProvider
from .userinfo import UserinfoProvider

__all__ = [
    "GITHUB_TOKEN_PREFIXES",
    "AppleLogin",
    "AppleProvider",
    "Auth0Provider",
    "CognitoProvider",
    "EntraProvider",
    "FacebookLogin",
    "FacebookProvider",
    "GitHubLogin",
    "GitHubProvider",
    "GitLabProvider",
    "GoogleLogin",
    "GoogleProvider",
    "KeycloakProvider",
    "MetadataCache",
    "OIDCProvider",
    "OktaProvider",
    "ProviderMetadata",
    "UserinfoProvider",
    "discover",
    "discovery_urls",
]
