"""Outbound HTTP: bounded in time and size, never following redirects.

Every request authbridge makes (discovery, JWKS, introspection, provider APIs)
goes through :func:`request`. The caller owns the :class:`httpx.AsyncClient`; tests inject
a transport (``httpx.MockTransport`` or a real loopback server).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ._json import UnencodableText
from ._json import loads as json_loads
from .errors import ProviderUnavailable

logger = logging.getLogger("authbridge.http")

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class JSONResponse:
    """A fetched JSON object and the response headers that matter for caching."""

    body: dict[str, Any]
    cache_control: str | None


ClientSource = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]
"""Yields the outbound client for one exchange (shared, or short-lived)."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building one costs about 20 ms of CPU (loading the CA bundle): do it once,
    # not for every short-lived client.
    return httpx.create_ssl_context()


def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """Create the outbound client: no redirects, no environment proxies/netrc."""
    return httpx.AsyncClient(
        transport=transport,
        verify=_tls_context() if transport is None else True,
        follow_redirects=False,
        trust_env=False,
        headers={
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": "authbridge",
        },
    )


class HttpClientHolder:
    """Owns the outbound client between :meth:`open` and :meth:`aclose`.

    Outside that window (e.g. an app run without its lifespan) each exchange
    gets a short-lived client, so nothing leaks across event loops.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def is_open(self) -> bool:
        """Whether a shared client is open."""
        return self._client is not None

    def open(self) -> None:
        """Open the shared client (idempotent)."""
        if self._client is None:
            self._client = new_client(self._transport)

    async def aclose(self) -> None:
        """Close the shared client, if open."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[httpx.AsyncClient]:
        """Yield the shared client, or a short-lived one when none is open."""
        if self._client is not None:
            yield self._client
            return
        async with new_client(self._transport) as client:
            yield client


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A bounded response: status, headers and the whole (capped) body."""

    status: int
    headers: httpx.Headers
    body: bytes

    def json_array(self, *, provider: str | None = None) -> list[Any]:
        """The body as a JSON array, or `ProviderUnavailable` (see `json_object`)."""
        value = self._json(provider)
        if not isinstance(value, list):
            raise ProviderUnavailable("json_not_an_array", provider=provider)
        return value

    def json_object(self, *, provider: str | None = None) -> dict[str, Any]:
        """The body as a JSON object, or `ProviderUnavailable`.

        The body must be UTF-8. A string holding a lone surrogate (a
        ``"\\ud800"`` escape) anywhere in it makes the whole answer garbage:
        ``invalid_unicode``, like ``invalid_json``, fails closed (503) rather
        than letting an unencodable string reach a `Principal`.
        """
        value = self._json(provider)
        if not isinstance(value, dict):
            raise ProviderUnavailable("json_not_an_object", provider=provider)
        return value

    def _json(self, provider: str | None) -> Any:
        try:
            return json_loads(self.body)
        except UnencodableText:
            raise ProviderUnavailable("invalid_unicode", provider=provider) from None
        except (ValueError, RecursionError):
            raise ProviderUnavailable("invalid_json", provider=provider) from None


async def request(
    client: ClientSource,
    method: str,
    url: str,
    *,
    data: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    provider: str | None = None,
) -> RawResponse:
    """Send one request and read the whole response, whatever its status.

    The exchange (connect, headers and body) is bounded by ``timeout``; the
    body by ``max_bytes`` (checked while streaming, so a huge or endless body
    costs at most ``max_bytes``). Redirects are never followed; compressed
    bodies are refused (we ask for ``identity``). Credentials go in ``data``,
    ``json_body``, ``headers`` or ``auth`` (HTTP Basic), never in the URL.

    Raises:
        ProviderUnavailable: on a transport error, timeout or oversize body.
            The reason never contains the URL, a header or the body.
    """
    try:
        async with asyncio.timeout(timeout):
            async with client() as http:
                stream = http.stream(
                    method, url, data=data, json=json_body, headers=headers, auth=auth
                )
                async with stream as response:
                    body = await _read(response, max_bytes=max_bytes, provider=provider)
                    return RawResponse(response.status_code, response.headers, body)
    except TimeoutError:
        raise ProviderUnavailable("timeout", provider=provider) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = f"transport_error:{type(exc).__name__}"
        raise ProviderUnavailable(reason, provider=provider) from None


async def fetch_json(
    client: ClientSource,
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    provider: str | None = None,
) -> JSONResponse:
    """GET ``url`` and return its JSON object body (see :func:`request` for the bounds).

    Raises:
        ProviderUnavailable: as :func:`request`, and on a non-200 status or a
            body that is not a JSON object.
    """
    response = await request(
        client, "GET", url, timeout=timeout, max_bytes=max_bytes, provider=provider
    )
    if response.status != 200:
        raise ProviderUnavailable(f"http_status:{response.status}", provider=provider)
    return JSONResponse(
        body=response.json_object(provider=provider),
        cache_control=response.headers.get("cache-control"),
    )


async def _read(response: httpx.Response, *, max_bytes: int, provider: str | None) -> bytes:
    declared = _small_int(response.headers.get("content-length"))
    if declared is not None and declared > max_bytes:
        raise ProviderUnavailable("response_too_large", provider=provider)
    # Decoding a compressed body would inflate a whole chunk before any size
    # check, so refuse one (we asked for identity).
    if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
        raise ProviderUnavailable("unexpected_content_encoding", provider=provider)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ProviderUnavailable("response_too_large", provider=provider)
        chunks.append(chunk)
    return b"".join(chunks)


def _small_int(value: str | None) -> int | None:
    """A non-negative decimal of at most 12 ASCII digits, else ``None``."""
    if value is None:
        return None
    value = value.strip().strip('"')
    if not value or len(value) > 12 or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def max_age_from_cache_control(value: str | None) -> float | None:
    """Return ``max-age`` seconds from a Cache-Control header, or ``None``.

    ``no-store``/``no-cache`` count as 0 (the caller clamps to its minimum).
    """
    if not value:
        return None
    age: float | None = None
    for raw_part in value.split(","):
        part = raw_part.strip().lower()
        if part in ("no-store", "no-cache"):
            return 0.0
        if part.startswith("max-age="):
            seconds = _small_int(part[len("max-age=") :])
            if seconds is not None:
                age = float(seconds)
    return age
