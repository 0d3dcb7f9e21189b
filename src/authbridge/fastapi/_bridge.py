"""``AuthBridge``: the one object an app configures and wires into FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import httpx

from .._clock import Clock, system_clock
from .._http import DEFAULT_TIMEOUT
from ..resource.principal import Principal
from ..resource.provider import OIDCProvider
from ..resource.server import ResourceServer
from ._security import OptionalPrincipalDependency, PrincipalDependency


class AuthBridge:
    """authbridge for one FastAPI app.

    Args:
        providers: The token issuers the app trusts.
        transport: Outbound HTTP transport for discovery/JWKS (tests inject one).
        clock: Time source, POSIX seconds.
        cache_size: Verified-token cache capacity (0 disables it).
        http_timeout: Bound on each outbound request, in seconds.
        realm: Optional ``realm`` for ``WWW-Authenticate`` challenges.
        allow_query_token: Also accept ``?access_token=`` (RFC 6750 §2.3) when
            no ``Authorization`` header is sent. Off by default: URLs end up
            in logs and browser history.
        scheme_name: Name of the security scheme in the OpenAPI document.

    Example:
        ```python
        auth = AuthBridge(providers=[OIDCProvider("hydra", issuer=..., audience=...)])
        app = FastAPI(lifespan=auth.lifespan)

        @app.get("/items")
        async def items(user: Principal = Security(auth.principal, scopes=["items:read"])):
            ...
        ```
    """

    def __init__(
        self,
        providers: Sequence[OIDCProvider],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = system_clock,
        cache_size: int = 10_000,
        http_timeout: float = DEFAULT_TIMEOUT,
        realm: str | None = None,
        allow_query_token: bool = False,
        scheme_name: str = "BearerToken",
    ) -> None:
        self.resource_server = ResourceServer(
            providers,
            transport=transport,
            clock=clock,
            cache_size=cache_size,
            http_timeout=http_timeout,
        )
        self.realm = realm
        self.allow_query_token = allow_query_token
        description = "Paste an access token issued by: " + ", ".join(
            f"{p.name} ({p.issuer})" for p in providers
        )
        self.principal = PrincipalDependency(self, scheme_name=scheme_name, description=description)
        """Dependency: ``Security(auth.principal, scopes=[...])`` → :class:`Principal`."""
        self.optional_principal = OptionalPrincipalDependency(
            self, scheme_name=scheme_name, description=description, auto_error=False
        )
        """Dependency: like :attr:`principal`, but ``None`` for anonymous callers."""

    async def verify(self, token: str) -> Principal:
        """Validate a bearer token (see :meth:`ResourceServer.verify`)."""
        return await self.resource_server.verify(token)

    async def __aenter__(self) -> AuthBridge:
        await self.resource_server.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.resource_server.aclose()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """FastAPI lifespan: ``FastAPI(lifespan=auth.lifespan)``.

        Opens the outbound HTTP client and loads provider keys (a provider that
        is down does not stop the app), and closes the client at shutdown. To
        combine with your own lifespan, use ``async with auth:`` inside it.
        """
        async with self:
            yield
