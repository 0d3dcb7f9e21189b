"""The login role: log a person in at a provider, and map them to a local account.

Framework-free: ``authbridge.fastapi`` turns these into routes. Provider
descriptions (``authbridge.providers``) implement
[LoginProvider][authbridge.client.LoginProvider]; this package never imports
them.
"""

from ._base import (
    AuthorizationRequest,
    ExternalIdentity,
    LoginEndpoints,
    LoginProvider,
    ProviderLogin,
    TokenEndpointAuth,
    TokenSet,
    code_challenge,
)

__all__ = [
    "AuthorizationRequest",
    "ExternalIdentity",
    "LoginEndpoints",
    "LoginProvider",
    "ProviderLogin",
    "TokenEndpointAuth",
    "TokenSet",
    "code_challenge",
]
