"""Provider descriptions: discovery (OpenID Connect Discovery, RFC 8414)."""

from .discovery import MetadataCache, ProviderMetadata, discover, discovery_urls

__all__ = ["MetadataCache", "ProviderMetadata", "discover", "discovery_urls"]
