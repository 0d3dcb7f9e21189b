"""FastAPI security dependencies that turn a bearer token (or a browser session) into a Principal.

They subclass `fastapi.security.base.SecurityBase`, so FastAPI lists an
HTTP bearer scheme in the OpenAPI document (Swagger's "Authorize" accepts a
pasted token) and passes the route's ``Security(..., scopes=[...])`` in
`fastapi.security.SecurityScopes`. They take an
`starlette.requests.HTTPConnection`, so WebSocket routes work too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from fastapi import HTTPException, WebSocketException, status
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from ..errors import (
    AuthBridgeError,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    MissingToken,
)
from ..resource.principal import Principal
from ._refusals import bounded_detail, explanation, retry_after
from ._routes import scope_string_error

if TYPE_CHECKING:
    from ._bridge import AuthBridge

logger = logging.getLogger("authbridge.fastapi")

# The auth-scheme and the whitespace after it (only spaces are allowed there).
_SCHEME = re.compile(r"(\S+)(\s*)")
_SPACES = frozenset(" \t")


class DelegatedTokenRefused(AuthBridgeError):
    """A delegated token (someone acting for its subject) on a route for the subject alone.

    Raised by `DirectPrincipalDependency`: 403, reason ``delegated_token_refused``.
    """

    code = "delegated_token_refused"


_MESSAGES = {
    MissingToken.code: "Not authenticated",
    InvalidToken.code: "Invalid or expired access token",
    InsufficientScope.code: "Insufficient scope",
    DelegatedTokenRefused.code: "Delegated tokens are not accepted here",
}
_UNAVAILABLE = "Authentication temporarily unavailable"
_WS_REASON_BYTES = 123  # RFC 6455 §5.5: a close frame's reason fits in 123 bytes


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

    attribute_name = "principal"
    """The `AuthBridge` attribute holding this dependency (for messages and overrides)."""

    def __init__(
        self,
        bridge: AuthBridge,
        *,
        scheme_name: str,
        description: str,
        auto_error: bool = True,
    ) -> None:
        self.bridge = bridge
        self._verify = self._verifier()
        self.model = HTTPBearerModel(description=description)
        self.scheme_name = scheme_name
        self.auto_error = auto_error

    def _verifier(self) -> Callable[[str], Awaitable[Principal]]:
        return self.bridge.resource_server.verify

    def _challenge(self, error: AuthBridgeError | None, required: Sequence[str]) -> str:
        params: list[str] = []
        realm = self.bridge.realm
        if realm:
            params.append(f"realm={_quote(realm)}")
        metadata = self.bridge.resource_metadata_url
        if metadata:
            params.append(f"resource_metadata={_quote(metadata)}")
        # RFC 6750 has no error code for a delegated token: the 403 and its body say it.
        if error is not None and not isinstance(error, MissingToken | DelegatedTokenRefused):
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
        except MissingToken as exc:
            principal = await self._session(connection, exc, security_scopes.scopes)
        except AuthBridgeError as exc:
            self._fail(connection, exc, security_scopes.scopes)
        required = security_scopes.scopes
        if required and not principal.scopes.issuperset(required):
            self._fail(connection, _insufficient(required, principal), required)
        return principal

    async def _session(
        self, connection: HTTPConnection, missing: MissingToken, required: Sequence[str]
    ) -> Principal:
        """The browser session's principal when no bearer token is sent (``login=``).

        Unsafe methods need the session's CSRF token and a same-origin
        ``Origin`` when one is sent (403 otherwise); no session: ``missing``.
        """
        login = self.bridge.browser_login
        if login is None:
            self._fail(connection, missing, required)
        try:
            principal = await login.session_principal(connection)
        except AuthBridgeError as exc:
            self._fail(connection, exc, required)
        if principal is None:
            self._fail(connection, missing, required)
        return principal

    async def _optional_session(
        self, connection: HTTPConnection, required: Sequence[str]
    ) -> Principal | None:
        """The session's principal, or ``None`` without a live session (anonymous)."""
        login = self.bridge.browser_login
        if login is None:
            return None
        try:
            principal = await login.session_principal(connection)
        except AuthBridgeError as exc:
            self._fail(connection, exc, required)
        if principal is not None and required and not principal.scopes.issuperset(required):
            self._fail(connection, _insufficient(required, principal), required)
        return principal

    def _fail(
        self, connection: HTTPConnection, error: AuthBridgeError, required: Sequence[str]
    ) -> NoReturn:
        bridge = self.bridge
        websocket = connection.scope["type"] == "websocket"
        if isinstance(error, InsufficientScope):
            _check_route_scopes(connection)
            code = status.HTTP_403_FORBIDDEN
        elif isinstance(error, DelegatedTokenRefused):
            code = status.HTTP_403_FORBIDDEN
        elif isinstance(error, MissingToken | InvalidToken):
            code = status.HTTP_401_UNAUTHORIZED
        else:
            code = status.HTTP_503_SERVICE_UNAVAILABLE
        message = _MESSAGES.get(error.code, _UNAVAILABLE)
        log = bridge.refusal_log
        warn = log.should_warn(error)
        explain = bridge.explain_refusals
        # str(error) carries only codes and reasons; detail values may come from the
        # token (never the token itself) and are escaped and bounded in the log line.
        detail = (
            bridge.refusal_detail(error, lambda: self._token(connection))
            if warn or explain
            else error.detail
        )
        log.log(
            error,
            status=code,
            method=connection.scope.get("method", "WEBSOCKET"),
            path=connection.scope.get("path", ""),
            detail=detail,
            warn=warn,
        )
        if websocket:
            reason = f"{message} ({error.reason})" if explain else message
            raise WebSocketException(
                # 1013 "try again later" when we could not decide; 1008 when refused.
                code=status.WS_1013_TRY_AGAIN_LATER
                if code == status.HTTP_503_SERVICE_UNAVAILABLE
                else status.WS_1008_POLICY_VIOLATION,
                reason=reason.encode("utf-8")[:_WS_REASON_BYTES].decode("utf-8", "ignore"),
            )
        body: str | dict[str, Any] = (
            explanation(error, message=message, detail=detail) if explain else message
        )
        if code == status.HTTP_503_SERVICE_UNAVAILABLE:
            raise HTTPException(
                status_code=code, detail=body, headers={"Retry-After": retry_after(error)}
            )
        raise HTTPException(
            status_code=code,
            detail=body,
            headers={"WWW-Authenticate": self._challenge(error, required)},
        )


def _insufficient(required: Sequence[str], principal: Principal) -> InsufficientScope:
    error = InsufficientScope(tuple(required), provider=principal.provider)
    # Granted scopes are token-supplied: bounded like every other detail.
    error.detail = bounded_detail(
        {
            "required": list(required),
            "missing": sorted(set(required) - principal.scopes),
            "granted": sorted(principal.scopes),
        }
    )
    return error


def _check_route_scopes(connection: HTTPConnection) -> None:
    """Raise `ConfigurationError` when the route gave its scopes as a string.

    Run on the 403 path only, which is where such a route always ends up
    (``scopes="items"`` requires the scopes "i", "t", "e", "m" and "s").
    """
    route = connection.scope.get("route")
    if route is None:
        return
    key = id(route)
    cached = _CHECKED_ROUTES.get(key)
    if cached is None or cached[0] is not route:
        if len(_CHECKED_ROUTES) >= _MAX_CHECKED_ROUTES:
            _CHECKED_ROUTES.clear()
        cached = _CHECKED_ROUTES[key] = (route, scope_string_error(route))
    if cached[1] is not None:
        logger.error("authbridge: %s", cached[1].message)
        raise cached[1]


# id(route) -> (route, its error or None); bounded by the app's routes.
_CHECKED_ROUTES: dict[int, tuple[Any, ConfigurationError | None]] = {}
_MAX_CHECKED_ROUTES = 4096


class OptionalPrincipalDependency(PrincipalDependency):
    """Like `PrincipalDependency`, but anonymous callers get ``None``.

    A presented but invalid token is still refused: only the absence of
    credentials (no bearer token, no live session) means "anonymous".
    """

    attribute_name = "optional_principal"

    async def __call__(  # type: ignore[override]
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> Principal | None:
        try:
            self._token(connection)  # only to tell "anonymous" apart; cheap
        except MissingToken:
            return await self._optional_session(connection, security_scopes.scopes)
        except AuthBridgeError as exc:
            self._fail(connection, exc, security_scopes.scopes)
        return await super().__call__(connection, security_scopes)


class ActivePrincipalDependency(PrincipalDependency):
    """Like `PrincipalDependency`, and the token must still be active at its provider.

    Uses ``ResourceServer.verify_active``: full local validation, then, for a
    JWT, introspection at the provider (cached, coalesced and bounded like
    every outbound call), so a revoked JWT is refused before its ``exp``. For
    high-value routes of providers that offer introspection.

    - Revoked: 401, ``error="invalid_token"`` (reason ``revoked``).
    - The provider cannot tell (no introspection for this provider, or its
      answer unusable): 401 (reason ``revocation_check_unavailable``); the
      provider down: 503. Never allowed.
    """

    attribute_name = "active_principal"

    def _verifier(self) -> Callable[[str], Awaitable[Principal]]:
        return self.bridge.resource_server.verify_active


class DirectPrincipalDependency(PrincipalDependency):
    """Like `PrincipalDependency`, for routes only the subject may call: no delegated token.

    A token carrying an RFC 8693 ``act`` claim (``Principal.actors``: a robot
    or service acting for the user) is refused with 403 (reason
    ``delegated_token_refused``; the ``WWW-Authenticate: Bearer`` challenge
    carries no error code, RFC 6750 defining none for it), before the scopes
    are checked. The user's own tokens and browser sessions pass. For routes
    such as changing a password or handing out delegations.
    """

    attribute_name = "direct_principal"

    async def __call__(
        self, connection: HTTPConnection, security_scopes: SecurityScopes
    ) -> Principal:
        required = security_scopes.scopes
        try:
            principal = await self._verify(self._token(connection))
        except MissingToken as exc:
            principal = await self._session(connection, exc, required)
        except AuthBridgeError as exc:
            self._fail(connection, exc, required)
        if principal.actors:
            refused = DelegatedTokenRefused("delegated_token_refused", provider=principal.provider)
            # The actors are token-supplied: bounded like every other detail.
            refused.detail = bounded_detail({"actors": list(principal.actors)})
            self._fail(connection, refused, required)
        if required and not principal.scopes.issuperset(required):
            self._fail(connection, _insufficient(required, principal), required)
        return principal


async def refuse_revoked(
    dependency: PrincipalDependency, connection: HTTPConnection, required: Sequence[str]
) -> None:
    """Refuse a bearer token ``dependency`` accepted if it was revoked since (RFC 7009).

    For routes that decide by the token's provider first (another provider's
    token is refused there otherwise, and may have no revocation check): the
    token is checked again with ``ResourceServer.verify_active`` (its local
    check cached), and a refusal is ``dependency``'s own (401
    ``invalid_token``, reason ``revoked``; 503 when the store is down). A
    browser session (no bearer token) passes: the session store is read on
    every request.
    """
    try:
        token = dependency._token(connection)
    except MissingToken:
        return
    except AuthBridgeError as exc:
        dependency._fail(connection, exc, required)
    try:
        await dependency.bridge.resource_server.verify_active(token)
    except AuthBridgeError as exc:
        dependency._fail(connection, exc, required)
