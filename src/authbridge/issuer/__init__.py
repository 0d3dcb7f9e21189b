"""The app as an OAuth 2.0 authorization server: grants, signing keys, metadata.

Free of FastAPI: `authbridge.fastapi` exposes it over HTTP. Configure it with
[AppIssuer][authbridge.AppIssuer].
"""

from __future__ import annotations

from ._config import AppIssuer, SigningAlgorithm
from ._errors import OAuthError
from ._runtime import IssuerRuntime, TokenRequest

__all__ = ["AppIssuer", "IssuerRuntime", "OAuthError", "SigningAlgorithm", "TokenRequest"]
