"""What every fake provider API shares: token registry, transport, loopback server, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Literal, Self
from urllib.parse import parse_qsl, unquote_plus

import httpx

from ._wire import (
    _FORM,
    _G,
    _LOGIN_CREDENTIALS,
    _MIN_SECRET,
    _REDACTED,
    RecordedRequest,
    TokenState,
    _dumps,
    _Failure,
    _Incoming,
    _Reply,
)

__all__ = ["FakeAPI", "combined_transport"]

# -- transports --------------------------------------------------------------------------


class _FakeTransport(httpx.MockTransport):
    """Answers for one fake; sleeps with ``asyncio.sleep`` on the async path."""

    def __init__(self, fake: FakeAPI[Any]) -> None:
        self._fake = fake
        super().__init__(self._handle_sync)

    def _reply(self, request: httpx.Request) -> _Reply:
        if not self._fake.serves(request.url):
            raise httpx.ConnectError(
                f"{type(self._fake).__name__} does not serve {request.url.host}", request=request
            )
        return self._fake._dispatch(
            request.method, request.url, request.headers, request.content, "transport"
        )

    def _handle_sync(self, request: httpx.Request) -> httpx.Response:
        with self._fake._answering():
            reply = self._reply(request)
            if reply.delay:
                time.sleep(reply.delay)
            return reply.to_response()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        with self._fake._answering():
            reply = self._reply(request)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return reply.to_response()


class _RoutingTransport(httpx.MockTransport):
    def __init__(self, fakes: Sequence[FakeAPI[Any]]) -> None:
        self._fakes = tuple(fakes)
        super().__init__(self._handle_sync)

    def _pick(self, request: httpx.Request) -> _FakeTransport:
        for fake in self._fakes:
            if fake.serves(request.url):
                return fake._fake_transport
        raise httpx.ConnectError(f"no fake serves {request.url.host}", request=request)

    def _handle_sync(self, request: httpx.Request) -> httpx.Response:
        return self._pick(request).handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pick(request).handle_async_request(request)


def combined_transport(*fakes: FakeAPI[Any]) -> httpx.MockTransport:
    """One transport answering for several fakes, routed by scheme, host and port.

    Requests to a host none of them serves fail with `httpx.ConnectError`.
    """
    return _RoutingTransport(fakes)


def _same_origin(url: httpx.URL, base: str) -> bool:
    other = httpx.URL(base)
    return (url.scheme, url.host, url.port) == (other.scheme, other.host, other.port)


def _relative(url: httpx.URL, base: str) -> str | None:
    """``url``'s path relative to ``base`` (starting with ``/``), or ``None`` when not under it."""
    if not _same_origin(url, base):
        return None
    prefix = httpx.URL(base).path.rstrip("/")
    if not prefix:
        return url.path or "/"
    if not url.path.startswith(prefix):
        return None
    rest = url.path[len(prefix) :]
    if rest and not rest.startswith("/"):
        return None
    return rest or "/"


class _LoopbackServer(ThreadingHTTPServer):
    # A longer accept queue than the default 5: concurrency tests open many
    # connections at once, and a dropped SYN costs the client a one-second retry.
    request_queue_size = 1024


# -- the shared base ---------------------------------------------------------------------


class FakeAPI(ABC, Generic[_G]):
    """What every fake provider API shares: token registry, transport, server, faults.

    Attributes:
        transport: An `httpx.MockTransport` answering requests to
            `base_url` in process (requests to other hosts raise
            `httpx.ConnectError`). Async clients get real
            ``asyncio.sleep`` delays from `slow_next`.
        requests: Every request received (through the transport or the
            server), oldest first, as `RecordedRequest`.
        clock: Returns the current time in seconds; tokens expire against it.
        in_flight: Requests being answered right now (slow answers included).
        peak_in_flight: The most requests ever answered at the same time: what a
            test of a client's concurrency limit counts.
    """

    _credential_params: ClassVar[frozenset[str]] = frozenset({"access_token"}) | _LOGIN_CREDENTIALS

    def __init__(self, base_url: str, *, clock: Callable[[], float] | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._bases: dict[str, str] = {}
        self._claims: dict[str, Callable[[str], bool]] = {}
        self.clock: Callable[[], float] = clock or time.time
        self.requests: list[RecordedRequest] = []
        self._fake_transport = _FakeTransport(self)
        self.transport: httpx.MockTransport = self._fake_transport
        self._grants: dict[str, _G] = {}
        self._revoked: set[str] = set()
        self._failures: deque[_Failure] = deque()
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._serving = False
        self.in_flight = 0
        self.peak_in_flight = 0

    # -- addressing ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the fake answers (``http://127.0.0.1:PORT...`` while `serve` runs)."""
        return self._base_url

    def serves(self, url: httpx.URL | str) -> bool:
        """Whether requests to ``url`` reach this fake.

        Every URL of the base URL's origin (scheme, host and port) does; on the
        provider's other hosts (its login pages...), only the paths the fake
        answers there, so another fake can answer the rest of such a host.
        """
        url = httpx.URL(url)
        if _same_origin(url, self._base_url):
            return True
        for role, base in self._bases.items():
            path = _relative(url, base)
            if path is not None and self._claims[role](path):
                return True
        return False

    def _add_base(self, role: str, url: str, paths: Callable[[str], bool]) -> None:
        """Also answer at ``url`` (another host of the provider) for the ``paths`` it knows."""
        self._bases[role] = url.rstrip("/")
        self._claims[role] = paths

    def _base(self, role: str) -> str:
        return self._bases[role]

    def _under(self, request: _Incoming, role: str) -> str | None:
        """``request``'s path relative to the base ``role``, or ``None`` when not under it."""
        return _relative(request.url, self._bases[role])

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Count one request in flight for the duration of the block."""
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    # -- token registry ------------------------------------------------------------------

    def _issue(self, token: str, grant: _G) -> str:
        with self._lock:
            self._grants[token] = grant
        return token

    def _expires_at(self, expires_in: float | None) -> float | None:
        return None if expires_in is None else self.clock() + expires_in

    def revoke(self, token: str) -> None:
        """Revoke an issued token: the provider answers as for a revoked token.

        Raises:
            KeyError: The fake never issued ``token``.
        """
        with self._lock:
            if token not in self._grants:
                raise KeyError("this fake did not issue that token")
            self._revoked.add(token)

    def token_state(self, token: str) -> TokenState:
        """``"unknown"``, ``"revoked"``, ``"expired"`` or ``"active"``."""
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return "unknown"
            if token in self._revoked:
                return "revoked"
            if grant.expires_at is not None and self.clock() >= grant.expires_at:
                return "expired"
            return "active"

    def is_active(self, token: str) -> bool:
        """Whether ``token`` was issued here and is neither revoked nor expired."""
        return self.token_state(token) == "active"

    def _secrets(self) -> set[str]:
        """Values that must never travel in a URL (tokens issued, app secrets)."""
        return set(self._grants)

    # -- failure injection ---------------------------------------------------------------

    def _push(
        self, make: Callable[[_Incoming], _Reply] | None, count: int | None, delay: float = 0.0
    ) -> None:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for every request)")
        with self._lock:
            self._failures.append(_Failure(make, delay, count))

    def fail_next(
        self,
        status: int = 503,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        count: int | None = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``count`` requests with exactly this response.

        Args:
            status: HTTP status.
            headers: Response headers.
            body: Raw bytes, text, or a mapping sent as JSON.
            count: How many requests; ``None`` for every request until
                `clear_failures`.
            delay: Seconds to wait before answering.
        """
        content_type: tuple[tuple[str, str], ...] = ()
        if isinstance(body, Mapping):
            raw, content_type = _dumps(body), (("content-type", "application/json"),)
        elif isinstance(body, str):
            raw, content_type = body.encode("utf-8"), (("content-type", "text/plain"),)
        else:
            raw = body or b""
        reply = _Reply(status, raw, (*content_type, *(headers or {}).items()))
        self._push(lambda _request: reply, count, delay)

    def server_error_next(self, count: int | None = 1, *, status: int = 503) -> None:
        """Answer the next ``count`` requests with the provider's server error."""
        self._push(lambda _request: self._server_error(status), count)

    def rate_limit_next(self, count: int | None = 1, *, retry_after: int | None = None) -> None:
        """Answer the next ``count`` requests with the provider's rate-limit response."""
        self._push(lambda request: self._rate_limited(request, retry_after), count)

    def garbage_next(
        self,
        count: int | None = 1,
        *,
        body: bytes = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type: str = "text/html",
        status: int = 200,
    ) -> None:
        """Answer the next ``count`` requests with a body that is not the expected JSON."""
        reply = _Reply(status, body, (("content-type", content_type),))
        self._push(lambda _request: reply, count)

    def slow_next(self, seconds: float, count: int | None = 1) -> None:
        """Answer the next ``count`` requests normally, but only after ``seconds``."""
        self._push(None, count, seconds)

    def clear_failures(self) -> None:
        """Forget every pending failure; answer normally from now on."""
        with self._lock:
            self._failures.clear()

    def _take_failure(self) -> _Failure | None:
        if not self._failures:
            return None
        failure = self._failures[0]
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failures.popleft()
        return failure

    # -- request log ---------------------------------------------------------------------

    def assert_no_token_in_urls(self) -> None:
        """Fail if any request so far carried a credential in its URL."""
        leaks = [f"{r.method} {r.path}" for r in self.requests if r.token_in_url]
        if leaks:
            raise AssertionError(f"credentials travelled in URLs: {', '.join(leaks)}")

    def _record(
        self, incoming: _Incoming, url: httpx.URL, via: Literal["transport", "http"]
    ) -> RecordedRequest:
        known = {s for s in self._secrets() if len(s) >= _MIN_SECRET}
        auth = incoming.authorization()
        if auth is not None and len(auth[1]) >= _MIN_SECRET:
            known.add(auth[1])
        params = self._credential_params
        for source in (incoming.query, incoming.form):
            known.update(v for k, v in source.items() if k in params and len(v) >= _MIN_SECRET)

        def leaks(text: str) -> bool:
            return any(s in text for s in known)

        raw_url = str(url)
        in_url = any(k in params for k in incoming.query) or leaks(unquote_plus(raw_url))
        in_body = any(k in params for k in incoming.form) or (
            bool(incoming.body) and leaks(unquote_plus(incoming.body.decode("latin-1")))
        )
        locations: set[Literal["header", "query", "body"]] = set()
        if auth is not None:
            locations.add("header")
        if in_url:
            locations.add("query")
        if in_body:
            locations.add("body")

        def redact(source: Mapping[str, str]) -> dict[str, str]:
            return {k: _REDACTED if k in params or leaks(v) else v for k, v in source.items()}

        headers = {k.lower(): v for k, v in incoming.headers.items()}
        raw_auth = incoming.headers.get("authorization")
        scheme = raw_auth.strip().partition(" ")[0] if raw_auth else None
        if scheme is not None:
            headers["authorization"] = f"{scheme} {_REDACTED}"
        return RecordedRequest(
            method=incoming.method,
            path=url.path,
            query=redact(incoming.query),
            form=redact(incoming.form),
            headers=headers,
            auth_scheme=scheme,
            token_in_url=in_url,
            credential_locations=frozenset(locations),
            via=via,
        )

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(
        self,
        method: str,
        url: httpx.URL,
        headers: httpx.Headers,
        body: bytes,
        via: Literal["transport", "http"],
    ) -> _Reply:
        path = _relative(url, self._base_url)
        form: dict[str, str] = {}
        if headers.get("content-type", "").split(";")[0].strip().lower() == _FORM:
            form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        incoming = _Incoming(
            method=method.upper(),
            path=path or "/",
            query=dict(parse_qsl(url.query.decode("latin-1"), keep_blank_values=True)),
            form=form,
            headers=headers,
            body=body,
            url=url,
        )
        with self._lock:
            self.requests.append(self._record(incoming, url, via))
            failure = self._take_failure()
            if failure is not None and failure.make is not None:
                reply = failure.make(incoming)
            else:
                reply = self._answer(incoming, path)
        if failure is not None and failure.delay:
            reply = replace(reply, delay=failure.delay)
        return reply

    def _answer(self, incoming: _Incoming, path: str | None) -> _Reply:
        web = self._route_web(incoming)
        if web is not None:
            return web
        return self._not_found(incoming) if path is None else self._route(incoming)

    # -- what each provider says ---------------------------------------------------------

    def _route_web(self, request: _Incoming) -> _Reply | None:
        """Answer a request to one of the provider's other bases (its login pages...), or None."""
        return None

    @abstractmethod
    def _route(self, request: _Incoming) -> _Reply:
        """Answer a request whose path is under the base URL."""

    @abstractmethod
    def _not_found(self, request: _Incoming) -> _Reply:
        """Answer a request for an unknown path."""

    @abstractmethod
    def _server_error(self, status: int) -> _Reply:
        """The provider's own 5xx response."""

    @abstractmethod
    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        """The provider's own rate-limit response."""

    # -- serving on a real port ----------------------------------------------------------

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[Self]:
        """Answer over HTTP on ``host:port`` (a free port by default) inside the block.

        `base_url` becomes ``http://host:PORT`` (keeping its path) for the
        duration, so URLs built from it point at the server; tokens issued
        before or during the block stay valid. Slow answers pending when the
        block exits are abandoned.
        """
        if self._serving:
            raise RuntimeError(f"{type(self).__name__} is already serving")
        server = _LoopbackServer((host, port), self._request_handler())
        original, original_bases = self._base_url, dict(self._bases)

        def bind(base: str) -> str:
            url = httpx.URL(base).copy_with(scheme="http", host=host, port=server.server_port)
            return str(url).rstrip("/")

        self._base_url = bind(original)
        self._bases = {role: bind(base) for role, base in original_bases.items()}
        self._serving = True
        self._closing.clear()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # a quick shutdown() at the end of the block
            name=f"{type(self).__name__}-server",
            daemon=True,
        )
        thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            server.shutdown()
            server.server_close()
            thread.join()
            self._base_url, self._bases = original, original_bases
            self._serving = False

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as the real APIs: a client's connection pool is then used
            # the way it is in production (every answer carries Content-Length).
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                base = httpx.URL(fake.base_url)
                url = httpx.URL(f"{base.scheme}://{base.netloc.decode('ascii')}{self.path}")
                headers = httpx.Headers(list(self.headers.items()))
                with fake._answering():
                    self._send(fake._dispatch(self.command, url, headers, body, "http"))

            def _send(self, reply: _Reply) -> None:
                if reply.delay and fake._closing.wait(reply.delay):
                    self.close_connection = True
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.close_connection = True

            def do_GET(self) -> None:
                self._answer()

            def do_HEAD(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_PUT(self) -> None:
                self._answer()

            def do_PATCH(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet: tests read ``fake.requests`` instead."""

        return Handler
