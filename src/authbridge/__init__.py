"""authbridge: trust, log in with and exchange tokens from any OAuth 2.0 / OIDC provider.

The public surface is exactly ``__all__``; everything else is private.
"""

from . import roles
from ._version import __version__
from .client import AccountPolicy, ExternalIdentity, LoginSettings
from .errors import (
    AuthBridgeError,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    LoginError,
    MissingToken,
    ProviderUnavailable,
)
from .fastapi import AuthBridge, SwaggerLogin
from .issuer import AppIssuer
from .providers import (
    AppleProvider,
    Auth0Provider,
    CognitoProvider,
    EntraProvider,
    FacebookProvider,
    GitHubProvider,
    GitLabProvider,
    GoogleProvider,
    KeycloakProvider,
    OIDCProvider,
    OktaProvider,
    UserinfoProvider,
)
from .resource import Introspection, Principal, ResourceServer
from .settings import AuthBridgeSettings

__all__ = [
    "AccountPolicy",
    "AppIssuer",
    "AppleProvider",
    "Auth0Provider",
    "AuthBridge",
    "AuthBridgeError",
    "AuthBridgeSettings",
    "CognitoProvider",
    "ConfigurationError",
    "EntraProvider",
    "ExternalIdentity",
    "FacebookProvider",
    "GitHubProvider",
    "GitLabProvider",
    "GoogleProvider",
    "InsufficientScope",
    "Introspection",
    "InvalidToken",
    "KeycloakProvider",
    "LoginError",
    "LoginSettings",
    "MissingToken",
    "OIDCProvider",
    "OktaProvider",
    "Principal",
    "ProviderUnavailable",
    "ResourceServer",
    "SwaggerLogin",
    "UserinfoProvider",
    "__version__",
    "roles",
]
