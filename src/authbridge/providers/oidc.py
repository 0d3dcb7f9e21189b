"""The generic OpenID Connect provider: any issuer found by discovery."""

from __future__ import annotations

from ..resource.provider import JWTProvider


class OIDCProvider(JWTProvider):
    __doc__ = JWTProvider.__doc__
