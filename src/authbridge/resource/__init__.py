"""The resource-server role: validate bearer tokens issued by others."""

from .introspection import Introspection
from .principal import Principal
from .provider import DEFAULT_ALGORITHMS, BoundProvider, JWTProvider
from .server import ResourceServer

__all__ = [
    "DEFAULT_ALGORITHMS",
    "BoundProvider",
    "Introspection",
    "JWTProvider",
    "Principal",
    "ResourceServer",
]
