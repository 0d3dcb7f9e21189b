"""The login role: log a person in at a provider, and map them to a local account.

Framework-free: ``authbridge.fastapi`` turns these into routes. Provider
descriptions (``authbridge.providers``) implement
[LoginProvider][authbridge.client.LoginProvider]; this package never imports
them.
"""

from ._accounts import AccountPolicy, Accounts, FirstLoginHook
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
from ._exchange import ExchangeProvider, SubjectTokens
from ._flow import LoginClient, LoginOutcome
from ._id_token import verify_id_token
from ._oidc import OIDCLogin
from ._sessions import Sessions
from ._settings import LoginSettings
from ._transactions import LoginTransaction

__all__ = [
    "AccountPolicy",
    "Accounts",
    "AuthorizationRequest",
    "ExchangeProvider",
    "ExternalIdentity",
    "FirstLoginHook",
    "LoginClient",
    "LoginEndpoints",
    "LoginOutcome",
    "LoginProvider",
    "LoginSettings",
    "LoginTransaction",
    "OIDCLogin",
    "ProviderLogin",
    "Sessions",
    "SubjectTokens",
    "TokenEndpointAuth",
    "TokenSet",
    "code_challenge",
    "verify_id_token",
]
