"""Provider descriptions: one configured object per provider serves every role.

The generic OpenID Connect provider ([OIDCProvider][authbridge.OIDCProvider])
and one module per preset (``github``, ``google``, ``facebook``, ...), each
holding everything specific to its provider: endpoints, token checks, login
quirks and exchange rules. The role packages (``resource``, ``client``,
``issuer``) never import this package; they receive its objects.
"""

from ..metadata import MetadataCache, ProviderMetadata, discover, discovery_urls
from .facebook import FacebookProvider
from .github import GITHUB_TOKEN_PREFIXES, GitHubProvider
from .google import GoogleProvider
from .oidc import OIDCProvider
from .userinfo import UserinfoProvider

__all__ = [
    "GITHUB_TOKEN_PREFIXES",
    "FacebookProvider",
    "GitHubProvider",
    "GoogleProvider",
    "MetadataCache",
    "OIDCProvider",
    "ProviderMetadata",
    "UserinfoProvider",
    "discover",
    "discovery_urls",
]
