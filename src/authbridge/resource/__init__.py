"""The resource-server role: validate bearer tokens issued by others."""

from .introspection import Introspection
from .principal import Principal
from .provider import DEFAULT_ALGORITHMS, BoundProvider, OIDCProvider
from .server import ResourceServer

__all__ = [
    "DEFAULT_ALGORITHMS",
    "BoundProvider",
    "Introspection",
    "OIDCProvider",
    "Principal",
    "ResourceServer",
]
