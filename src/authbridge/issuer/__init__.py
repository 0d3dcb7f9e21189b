"""The app as an OAuth 2.0 authorization server: grants, signing keys, metadata.

Free of FastAPI: `authbridge.fastapi` exposes it over HTTP. Configure it with
[AppIssuer][authbridge.AppIssuer].
"""

from __future__ import annotations

from ._authorize import (
    AuthorizeError,
    AuthorizeRequest,
    complete,
    error_redirect,
    parse_authorize,
)
from ._config import TOKEN_EXCHANGE, AppIssuer, SigningAlgorithm
from ._delegation import DelegationPolicy, DelegationRequest, Delegations
from ._delegation_rules import MAX_ACT_DEPTH
from ._errors import OAuthError
from ._exchange import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    SubjectTokenResolver,
)
from ._runtime import IssuerRuntime, TokenRequest

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "MAX_ACT_DEPTH",
    "TOKEN_EXCHANGE",
    "AppIssuer",
    "AuthorizeError",
    "AuthorizeRequest",
    "DelegationPolicy",
    "DelegationRequest",
    "Delegations",
    "IssuerRuntime",
    "OAuthError",
    "SigningAlgorithm",
    "SubjectTokenResolver",
    "TokenRequest",
    "complete",
    "error_redirect",
    "parse_authorize",
]
