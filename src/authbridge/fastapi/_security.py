"""FastAPI security dependencies that turn a bearer token into a Principal.

They subclass :class:`fastapi.security.base.SecurityBase`, so FastAPI lists an
HTTP bearer scheme in the OpenAPI document (Swagger's "Authorize" accepts a
pasted token) and passes the route's ``Security(..., scopes=[...])`` in
:class:`fastapi.security.SecurityScopes`. They take an
:class:`starlette.requests.HTTPConnection`, so WebSocket routes work too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from fastapi import HTTPException, WebSocketException, status
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ..errors import (
    AuthBridgeError,
    InsufficientScope,
    InvalidToken,
    MissingToken,
    ProviderUnavailable,
)
from ..resource.principal import Principal

if TYPE_CHECKING:
    from ._bridge import AuthBridge

logger = logging.getLogger("authbridge.fastapi")

# The auth-scheme and the whitespace after it (only spaces are allowed there).
_SCHEME = re.compile(r"(\S+)(\s*)")
_SPACES = frozenset(" \t")

_MESSAGES = {
    MissingToken.code: "Not authenticated",
    InvalidToken.code: "Invalid or expired access token",
    InsufficientScope.code: "Insufficient scope",
}
_UNAVAILABLE = "Authentication temporarily unavailable"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PrincipalDependency(SecurityBase):
    """``Security(auth.principal, scopes=[...])``: the verified caller, or 401/403.

    - No credentials: 401 with a bare ``WWW-Authenticate: Bearer`` challenge.
    - Bad token: 401, ``error="invalid_token"`` and a generic description.
    - Missing scope: 403, ``error="insufficient_scope"``, ``scope="..."``.
    - Provider down: 503.
    - On a WebSocket: the connection is closed with 1008 (policy violation), or
      1013 (try again later) when the provider is down.
    """

    def __init__(
        self,
        bridge: AuthBridge,
        *,
        scheme_name: str,
        description: str,
        auto_error: bool = True,
    ) -> None:
        self.bridge = bridge
        self._verify = bridge.resource_server.verify
        self.model = HTTPBearerModel(description=description)
        self.scheme_name = scheme_name
        self.auto_error = auto_error

    def _challenge(self, error: AuthBridgeError | None, required: Sequence[str]) -> str:
        params: list[str] = []
        realm = self.bridge.realm
        if realm:
            params.append(f"realm={_quote(realm)}")
        metadata = self.bridge.resource_metadata_url
        if metadata:
            params.append(f"resource_metadata={_quote(metadata)}")
        if error is not None and not isinstance(error, MissingToken):
            params.append(f"error={_quote(error.code)}")
            params.append(f"error_description={_quote(_MESSAGES[error.code])}")
            if isinstance(error, InsufficientScope):
                params.append(f"scope={_quote(' '.join(required))}")
        return "Bearer " + ", ".join(params) if params else "Bearer"

    def _token(self, connection: HTTPConnection) -> str:
        # Raw ASGI headers (names are lower-case by the ASGI spec): no Headers object.
        found: bytes | None = None
        for name, raw in connection.scope["headers"]:
            if name == b"authorization":
                if found is not None:
                    raise InvalidToken("repeated_authorization_header")
                found = raw
        if found is not None:
            value = found.decode("latin-1").strip()
            if value[:7] == "Bearer " and value[7:8] not in _SPACES:
                return value[7:]  # the usual spelling; its syntax is checked by the core
            # RFC 6750 §2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive.
            match = _SCHEME.match(value)
            if match is None or match.group(1).lower() != "bearer":
                raise MissingToken("no_bearer_credentials")
            token = value[match.end() :]
            if not token:
                raise InvalidToken("empty_bearer_token")
            if match.group(2).strip(" "):
                raise InvalidToken("malformed_credentials")
            return token
        if self.bridge.allow_query_token and "access_token" in connection.query_params:
            query = connection.query_params.getlist("access_token")
            if len(query) != 1:
                raise InvalidToken("repeated_access_token_parameter")
            return query[0]
        raise MissingToken("no_credentials")

    async def __call__(
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> Principal:
        try:
            principal = await self._verify(self._token(connection))
        except AuthBridgeError as exc:
            self._fail(connection, exc, security_scopes.scopes)
        required = security_scopes.scopes
        if required and not principal.scopes.issuperset(required):
            self._fail(
                connection,
                InsufficientScope(tuple(required), provider=principal.provider),
                required,
            )
        return principal

    def _fail(
        self, connection: HTTPConnection, error: AuthBridgeError, required: Sequence[str]
    ) -> NoReturn:
        # str(error) carries only codes and reasons, never token material.
        if isinstance(error, ProviderUnavailable):
            logger.warning("Request refused, provider unavailable: %s", error)
        else:
            logger.info("Request refused: %s", error)
        if connection.scope["type"] == "websocket":
            unavailable = isinstance(error, ProviderUnavailable)
            raise WebSocketException(
                # 1013 "try again later" when we could not decide; 1008 when refused.
                code=status.WS_1013_TRY_AGAIN_LATER
                if unavailable
                else status.WS_1008_POLICY_VIOLATION,
                reason=_MESSAGES.get(error.code, _UNAVAILABLE),
            )
        if isinstance(error, InsufficientScope):
            code = status.HTTP_403_FORBIDDEN
        elif isinstance(error, MissingToken | InvalidToken):
            code = status.HTTP_401_UNAUTHORIZED
        else:
            raise HTTPException(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=_UNAVAILABLE,
                headers={"Retry-After": "5"},
            )
        raise HTTPException(
            status_code=code,
            detail=_MESSAGES[error.code],
            headers={"WWW-Authenticate": self._challenge(error, required)},
        )


class OptionalPrincipalDependency(PrincipalDependency):
    """Like :class:`PrincipalDependency`, but anonymous callers get ``None``.

    A presented but invalid token is still refused: only the absence of
    credentials means "anonymous".
    """

    async def __call__(  # type: ignore[override]
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> Principal | None:
        try:
            self._token(connection)  # only to tell "anonymous" apart; cheap
        except MissingToken:
            return None
        except AuthBridgeError as exc:
            self._fail(connection, exc, security_scopes.scopes)
        return await super().__call__(connection, security_scopes)
