"""httpx and its maintained fork httpx2, side by side.

Starlette and FastAPI moved to httpx2: same API, import name ``httpx2``, but distinct
classes. An httpx transport driven by an httpx2 client (or the reverse) fails on an
assertion inside the client, since each library checks that responses carry its own stream
class. So:

- an injected transport is driven by a client of its own library (`library_of`); users'
  `httpx.MockTransport`, the test kit's transports and `httpx2.MockTransport` all work;
- authbridge's own network client uses httpx2 when it is installed (the maintained one,
  which Starlette's TestClient also prefers), httpx otherwise (`NETWORK`);
- errors of both libraries are recognised (`ERRORS`); responses are read into httpx
  types, so the rest of authbridge sees one set of classes.

After ``httpx2.alias_httpx()`` both names are one module, and all of this collapses to it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

if TYPE_CHECKING:
    # Optional: without httpx2, these names are `Any` to the type checker.
    import httpx2  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "ERRORS",
    "LIBRARIES",
    "NETWORK",
    "AsyncClient",
    "AsyncTransport",
    "Response",
    "headers_of",
    "library_of",
]


def _installed(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


LIBRARIES: tuple[ModuleType, ...] = tuple(
    dict.fromkeys(module for module in (_installed("httpx2"), httpx) if module is not None)
)
"""The installed libraries, httpx2 first (a single one when httpx2 aliases httpx)."""

NETWORK: ModuleType = LIBRARIES[0]
"""The library of authbridge's own network client."""

AsyncTransport: TypeAlias = "httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport"
"""An outbound transport of either library."""

AsyncClient: TypeAlias = "httpx.AsyncClient | httpx2.AsyncClient"
"""A client of either library."""

Response: TypeAlias = "httpx.Response | httpx2.Response"
"""A response of either library."""

ERRORS: tuple[type[Exception], ...] = tuple(
    error for library in LIBRARIES for error in (library.HTTPError, library.InvalidURL)
)
"""The transport-level errors of both libraries (``InvalidURL`` is no ``HTTPError``)."""


def library_of(transport: object) -> ModuleType:
    """The library whose client can drive ``transport``.

    A transport that derives from neither library's base class (duck-typed) gets httpx,
    the library authbridge's API is written against.
    """
    for library in LIBRARIES:
        if isinstance(transport, library.AsyncBaseTransport):
            return library
    return httpx


def headers_of(response: Any) -> httpx.Headers:
    """The response's headers as `httpx.Headers` (copied from an httpx2 response)."""
    headers = response.headers
    if isinstance(headers, httpx.Headers):
        return headers
    return httpx.Headers(headers.multi_items())


POOL_CONNECTIONS = 100
"""Connections one outbound client opens at most (httpx's default)."""

POOL_KEEPALIVE = 64
"""Idle connections kept open: as many as provider checks may be in flight at once
(the resource server's global bound), so a busy source does not reconnect, with a
TLS handshake, for every call beyond httpx's default of 20."""


def pool_limits(library: ModuleType) -> Any:
    """The connection-pool limits of authbridge's outbound transports, for ``library``."""
    return library.Limits(
        max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_KEEPALIVE
    )
