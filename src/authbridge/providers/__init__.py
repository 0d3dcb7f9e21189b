"""Provider descriptions: discovery (OpenID Connect Discovery, RFC 8414)."""

from .discovery import ProviderMetadata, discover, discovery_urls

__all__ = ["ProviderMetadata", "discover", "discovery_urls"]
