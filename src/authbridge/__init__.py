"""authbridge: trust, log in with and exchange tokens from any OAuth 2.0 / OIDC provider.

The public surface is exactly ``__all__``; everything else is private.
"""

from . import roles
from ._version import __version__
from .errors import (
    AuthBridgeError,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    MissingToken,
    ProviderUnavailable,
)
from .fastapi import AuthBridge, SwaggerLogin
from .issuer import AppIssuer
from .providers import (
    FacebookProvider,
    GitHubProvider,
    GoogleProvider,
    OIDCProvider,
    UserinfoProvider,
)
from .resource import Introspection, Principal, ResourceServer

__all__ = [
    "AppIssuer",
    "AuthBridge",
    "AuthBridgeError",
    "ConfigurationError",
    "FacebookProvider",
    "GitHubProvider",
    "GoogleProvider",
    "InsufficientScope",
    "Introspection",
    "InvalidToken",
    "MissingToken",
    "OIDCProvider",
    "Principal",
    "ProviderUnavailable",
    "ResourceServer",
    "SwaggerLogin",
    "UserinfoProvider",
    "__version__",
    "roles",
]
