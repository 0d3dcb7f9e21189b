"""Outbound HTTP: bounded in time and size, never following redirects.

Every request authbridge makes (discovery, JWKS, introspection, provider APIs)
goes through `request`. The caller owns the client (`HttpClientHolder`); tests inject
a transport (``httpx.MockTransport``, ``httpx2.MockTransport`` or a real loopback server).

authbridge's own network client honours HTTP proxies (explicit, or the standard
environment variables, see `authbridge._proxy`) and ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
for the CA certificates to trust; it never reads ``.netrc`` and never follows a
redirect. An injected transport makes its own connections: no proxy or CA setting
applies to it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import certifi
import httpx

from . import _httpx
from ._httpx import AsyncClient, AsyncTransport
from ._json import UnencodableText
from ._json import loads as json_loads
from ._proxy import DIRECT, ProxyRouter, ProxyRoutes, proxy_routes
from .errors import ConfigurationError, ProviderUnavailable

logger = logging.getLogger("authbridge.http")

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 512 * 1024

_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": "authbridge",
}


@dataclass(frozen=True, slots=True)
class JSONResponse:
    """A fetched JSON object and the response headers that matter for caching."""

    body: dict[str, Any]
    cache_control: str | None


ClientSource: TypeAlias = "Callable[[], AbstractAsyncContextManager[AsyncClient]]"
"""Yields the outbound client for one exchange (shared, or short-lived)."""


@dataclass(frozen=True, slots=True)
class TrustedCAs:
    """Where the CA certificates trusted for TLS come from (certifi's bundle by default)."""

    cafile: str | None = None
    capath: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> TrustedCAs:
        """``SSL_CERT_FILE`` (a PEM bundle), else ``SSL_CERT_DIR`` (a hashed directory).

        Raises:
            ConfigurationError: the variable names no such file or directory.
        """
        if cafile := environ.get("SSL_CERT_FILE", "").strip():
            if not os.path.isfile(cafile):
                raise ConfigurationError(
                    "ssl_cert_file_not_found",
                    message=(
                        f"SSL_CERT_FILE={cafile!r} is not a file: point it at a PEM bundle "
                        "of the CA certificates to trust (with your corporate CA), or unset it"
                    ),
                )
            return cls(cafile=cafile)
        if capath := environ.get("SSL_CERT_DIR", "").strip():
            if not os.path.isdir(capath):
                raise ConfigurationError(
                    "ssl_cert_dir_not_found",
                    message=(
                        f"SSL_CERT_DIR={capath!r} is not a directory: point it at a "
                        "c_rehash'ed directory of CA certificates, or unset it"
                    ),
                )
            return cls(capath=capath)
        return cls()


@functools.lru_cache(maxsize=8)
def _tls_context(trusted: TrustedCAs) -> ssl.SSLContext:
    # Building one costs about 20 ms of CPU (loading the CA bundle): do it once per
    # setting, not for every short-lived client. The same context whichever library
    # connects, so installing httpx2 changes nothing about which servers are trusted.
    if trusted.cafile is None and trusted.capath is None:
        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context(cafile=trusted.cafile, capath=trusted.capath)


def new_client(
    transport: AsyncTransport | None = None,
    *,
    routes: ProxyRoutes = DIRECT,
    trusted: TrustedCAs | None = None,
) -> AsyncClient:
    """Create the outbound client: no redirects, no ``.netrc``, no environment lookups.

    With ``transport``, a client of that transport's library drives it (``routes`` and
    ``trusted`` do not apply: the transport makes its own connections). Without one, a
    client of `authbridge._httpx.NETWORK` connects directly or through the proxy ``routes``
    name, trusting ``trusted``.
    """
    driver: Any = transport
    if transport is not None:
        library = _httpx.library_of(transport)
    else:
        library = _httpx.NETWORK
        context = _tls_context(trusted or TrustedCAs())
        driver = library.AsyncHTTPTransport(
            verify=context, trust_env=False, limits=_httpx.pool_limits(library)
        )
        if routes:
            driver = ProxyRouter.build(library, driver, routes, context)
    client: AsyncClient = library.AsyncClient(
        transport=driver,
        follow_redirects=False,
        trust_env=False,
        headers=_HEADERS,
    )
    return client


class HttpClientHolder:
    """Owns the outbound client between `open` and `aclose`.

    Outside that window (e.g. an app run without its lifespan) each exchange
    gets a short-lived client, so nothing leaks across event loops.

    Proxy and CA settings are read once, here, so a bad one fails at construction.

    Args:
        transport: An outbound transport of httpx or httpx2 (tests); it makes its own
            connections, so neither ``proxy`` nor the environment applies to it.
        proxy: Send every request through this HTTP proxy
            (``"http://proxy.example.org:3128"``, credentials allowed:
            ``"http://user:password@proxy:3128"``). Overrides the environment.
        trust_env: Honour ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``
            (either case) and ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``. ``.netrc`` is never read.

    Raises:
        ConfigurationError: ``proxy`` together with ``transport``; a proxy URL that is not
            an http(s) URL; an ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` that does not exist.
    """

    def __init__(
        self,
        transport: AsyncTransport | None = None,
        *,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if transport is not None and proxy is not None:
            raise ConfigurationError(
                "proxy_with_transport",
                message=(
                    "proxy= applies to authbridge's own network client; an injected "
                    "transport makes its own connections (configure the proxy on it)"
                ),
            )
        self._transport = transport
        self._routes = DIRECT
        self._trusted = TrustedCAs()
        if transport is None:
            environ: Mapping[str, str] = os.environ if trust_env else {}
            self._routes = proxy_routes(proxy, environ)
            self._trusted = TrustedCAs.from_environment(environ)
            if self._routes:
                logger.info("Outbound HTTP: %s", self._routes.describe())
        self._client: AsyncClient | None = None

    @property
    def routes(self) -> ProxyRoutes:
        """The proxies outbound requests go through (empty: direct)."""
        return self._routes

    @property
    def is_open(self) -> bool:
        """Whether a shared client is open."""
        return self._client is not None

    def client(self) -> AsyncClient:
        """A new client with these settings (the caller closes it)."""
        return new_client(self._transport, routes=self._routes, trusted=self._trusted)

    def open(self) -> None:
        """Open the shared client (idempotent)."""
        if self._client is None:
            self._client = self.client()

    async def aclose(self) -> None:
        """Close the shared client, if open."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncClient]:
        """Yield the shared client, or a short-lived one when none is open."""
        if self._client is not None:
            yield self._client
            return
        async with self.client() as client:
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

    The exchange (connect, through a proxy if one is configured, headers and
    body) is bounded by ``timeout``; the body by ``max_bytes`` (checked while
    streaming, so a huge or endless body costs at most ``max_bytes``). Redirects
    are never followed; compressed bodies are refused (we ask for ``identity``).
    Credentials go in ``data``, ``json_body``, ``headers`` or ``auth`` (HTTP
    Basic), never in the URL.

    Raises:
        ProviderUnavailable: on a transport error, timeout or oversize body.
            The reason never contains the URL, a header or the body.
    """
    try:
        async with asyncio.timeout(timeout):
            async with client() as http:
                # The library's own per-operation timeouts get the same bound, so
                # a `timeout` above their 5 s default really applies.
                stream = http.stream(
                    method,
                    url,
                    data=data,
                    json=json_body,
                    headers=headers,
                    auth=auth,
                    timeout=timeout,
                )
                async with stream as response:
                    body = await _read(response, max_bytes=max_bytes, provider=provider)
                    headers_read = _httpx.headers_of(response)
                    return RawResponse(response.status_code, headers_read, body)
    except TimeoutError:
        raise ProviderUnavailable("timeout", provider=provider) from None
    except _httpx.ERRORS as exc:
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
    """GET ``url`` and return its JSON object body (see `request` for the bounds).

    Raises:
        ProviderUnavailable: as `request`, and on a non-200 status or a
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


async def _read(response: _httpx.Response, *, max_bytes: int, provider: str | None) -> bytes:
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
