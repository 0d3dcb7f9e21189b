"""Fakes of the provider APIs that vouch for opaque (non-JWT) access tokens.

Some providers hand out tokens that a resource server cannot check by itself;
the only way to know who a token belongs to is to ask the provider:

* `FakeGitHub` answers ``GET /user`` like the GitHub REST API, with the
  ``X-OAuth-Scopes`` and ``x-ratelimit-*`` headers.
* `FakeGoogle` answers ``/tokeninfo`` like ``oauth2.googleapis.com``.
* `FakeFacebook` answers ``/debug_token`` (and Graph API batch requests)
  like ``graph.facebook.com``.
* `FakeUserinfo` is an OpenID Connect UserInfo endpoint (OIDC Core 5.3,
  RFC 6750).

Each fake keeps a registry of the tokens it issued (so it can tell an unknown,
revoked or expired token from a good one), answers in process through
`FakeAPI.transport` or over real loopback HTTP through `FakeAPI.serve`,
logs every request it receives in `FakeAPI.requests` (with credentials
redacted, and whether a credential travelled in the URL), and can be told to
misbehave: rate limits, server errors, non-JSON bodies, slow answers.

The shapes follow each provider's public documentation; where the
documentation is silent they follow responses observed in the wild, and the
docstrings say so.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import string
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar
from urllib.parse import parse_qsl, unquote_plus

import httpx

__all__ = [
    "FakeAPI",
    "FakeFacebook",
    "FakeGitHub",
    "FakeGoogle",
    "FakeUserinfo",
    "GitHubTokenKind",
    "RecordedRequest",
    "TokenState",
    "combined_transport",
]

_ALNUM = string.digits + string.ascii_uppercase + string.ascii_lowercase
_REDACTED = "<redacted>"
_FORM = "application/x-www-form-urlencoded"
_MIN_SECRET = 8  # shorter values are not searched for in URLs (too many false hits)


def _random_alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _base62(value: int, width: int) -> str:
    digits = ""
    while value:
        value, rest = divmod(value, 62)
        digits = _ALNUM[rest] + digits
    return digits.rjust(width, "0")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# -- what goes in and out ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0

    def to_response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)


def _json_reply(
    status: int,
    payload: Any,
    headers: Sequence[tuple[str, str]] = (),
    content_type: str = "application/json; charset=utf-8",
) -> _Reply:
    return _Reply(status, _dumps(payload), (("content-type", content_type), *headers))


@dataclass(frozen=True, slots=True)
class _Incoming:
    method: str
    path: str
    """Path relative to the fake's base URL (always starts with ``/``)."""
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: httpx.Headers
    body: bytes

    def authorization(self) -> tuple[str, str] | None:
        """``(scheme in lower case, credentials)`` of the Authorization header."""
        value = self.headers.get("authorization")
        if not value:
            return None
        scheme, _, credentials = value.strip().partition(" ")
        return scheme.lower(), credentials.strip()

    def header_token(self, *schemes: str) -> str | None:
        auth = self.authorization()
        if auth is None or auth[0] not in schemes or not auth[1]:
            return None
        return auth[1]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a fake received, with every credential redacted.

    Attributes:
        method: HTTP method.
        path: Full URL path (not relative to the fake's base URL).
        query: Query parameters; credential values replaced by ``"<redacted>"``.
        form: Form-encoded body parameters, redacted the same way.
        headers: Request headers (lower-case names); the Authorization value
            is reduced to its scheme.
        auth_scheme: Scheme of the Authorization header (as sent), if any.
        token_in_url: Whether a credential travelled in the URL: a credential
            parameter (``access_token``, ``input_token``...) in the query, or
            any token the fake issued, or its app secret, anywhere in the URL.
        credential_locations: Where credentials were found: ``"header"``
            (Authorization), ``"query"`` (the URL) and/or ``"body"``.
        via: ``"transport"`` (in process) or ``"http"`` (through `FakeAPI.serve`).
    """

    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]
    auth_scheme: str | None
    token_in_url: bool
    credential_locations: frozenset[Literal["header", "query", "body"]]
    via: Literal["transport", "http"]


# -- failure injection -------------------------------------------------------------------


@dataclass(slots=True)
class _Failure:
    make: Callable[[_Incoming], _Reply] | None
    """Builds the reply; ``None`` answers normally (after ``delay``)."""
    delay: float
    remaining: int | None
    """Requests left to fail; ``None`` means until `FakeAPI.clear_failures`."""


# -- token registry ----------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _Grant:
    issued_at: float
    expires_at: float | None


_G = TypeVar("_G", bound=_Grant)
TokenState = Literal["unknown", "revoked", "expired", "active"]


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

    _credential_params: ClassVar[frozenset[str]] = frozenset({"access_token"})

    def __init__(self, base_url: str, *, clock: Callable[[], float] | None = None) -> None:
        self._base_url = base_url.rstrip("/")
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
        """Whether requests to ``url`` reach this fake (same scheme, host and port)."""
        url, base = httpx.URL(url), httpx.URL(self._base_url)
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)

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
        prefix = httpx.URL(self._base_url).path.rstrip("/")
        path: str | None = url.path
        if prefix:
            path = url.path[len(prefix) :] if url.path.startswith(prefix) else None
            if path is not None and path and not path.startswith("/"):
                path = None
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
        )
        with self._lock:
            self.requests.append(self._record(incoming, url, via))
            failure = self._take_failure()
            if failure is not None and failure.make is not None:
                reply = failure.make(incoming)
            elif path is None:
                reply = self._not_found(incoming)
            else:
                reply = self._route(incoming)
        if failure is not None and failure.delay:
            reply = replace(reply, delay=failure.delay)
        return reply

    # -- what each provider says ---------------------------------------------------------

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
        original = self._base_url
        bound = httpx.URL(original).copy_with(scheme="http", host=host, port=server.server_port)
        self._base_url = str(bound).rstrip("/")
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
            self._base_url = original
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


# -- GitHub ------------------------------------------------------------------------------

GitHubTokenKind = Literal["ghp", "gho", "ghu", "ghs", "ghr", "github_pat"]
"""GitHub token types by prefix: ``ghp`` personal access token (classic),
``github_pat`` fine-grained personal access token, ``gho`` OAuth app token,
``ghu`` GitHub App user token, ``ghs`` GitHub App installation token,
``ghr`` GitHub App refresh token."""

_GITHUB_KINDS: frozenset[str] = frozenset({"ghp", "gho", "ghu", "ghs", "ghr", "github_pat"})
_GITHUB_SCOPED: frozenset[str] = frozenset({"ghp", "gho"})  # tokens with OAuth scopes
_GITHUB_DOCS = "https://docs.github.com/rest"
_GITHUB_USER_DOCS = "https://docs.github.com/rest/users/users#get-the-authenticated-user"
_GITHUB_RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
_GITHUB_WINDOW = 3600.0
_GITHUB_APP_DOCS = "https://docs.github.com/rest/apps/oauth-applications#check-a-token"


@dataclass(kw_only=True, slots=True)
class _GitHubGrant(_Grant):
    kind: str
    login: str
    user_id: int
    scopes: tuple[str, ...]
    name: str | None
    email: str | None
    client_id: str | None


def _github_token(kind: GitHubTokenKind) -> str:
    """A token in GitHub's format for ``kind`` (not a working GitHub token).

    Classic formats are the prefix, ``_`` and 36 characters of ``[0-9A-Za-z]``
    (40 in all), the last 6 a base62 CRC32 of the 30 before them. Fine-grained
    personal access tokens are ``github_pat_``, 22 characters, ``_``, 59
    characters (93 in all).
    """
    if kind == "github_pat":
        return f"github_pat_{_random_alnum(22)}_{_random_alnum(59)}"
    if kind not in _GITHUB_KINDS:
        raise ValueError(f"unknown GitHub token kind {kind!r}")
    payload = _random_alnum(30)
    return f"{kind}_{payload}{_base62(zlib.crc32(payload.encode('ascii')), 6)}"


class FakeGitHub(FakeAPI[_GitHubGrant]):
    """The parts of the GitHub REST API that identify a token.

    ``GET /user`` (the token in the Authorization header) and, for an OAuth
    app given as ``client_id``/``client_secret``, "Check a token":
    ``POST /applications/{client_id}/token`` with the app's Basic credentials
    and ``{"access_token": ...}`` in a JSON body; 200 with the token's app,
    scopes, expiry and user, 404 for a token that is not a valid token of that
    app, 422 for a malformed body, 401 for wrong app credentials.

    Follows GitHub's documentation: the token goes in ``Authorization: Bearer``
    (or the older ``token`` scheme; query-string tokens were removed in 2021 and
    answer 401); classic and OAuth tokens (``ghp_``, ``gho_``) get an
    ``X-OAuth-Scopes`` header listing their scopes (comma and space separated,
    empty when none); every authenticated answer carries ``x-ratelimit-*``
    headers; exhausting the primary limit answers 403 with
    ``x-ratelimit-remaining: 0``; requests without a ``User-Agent`` are refused.

    Beyond the docs (observed behaviour, not promised by GitHub): fine-grained
    (``github_pat_``), GitHub App user (``ghu_``) and installation (``ghs_``)
    tokens carry no ``X-OAuth-Scopes`` header; installation tokens get 403
    ``Resource not accessible by integration`` on ``/user``; a refresh token
    (``ghr_``) is not accepted as an access token.

    Args:
        api_base: The API root; a GitHub Enterprise Server root such as
            ``https://ghe.example.test/api/v3`` works too.
        rate_limit: Requests per user per hour before the primary rate limit
            answers 403.
        clock: Time source for expiry and the rate-limit window.
    """

    def __init__(
        self,
        api_base: str = "https://api.github.com",
        *,
        rate_limit: int = 5000,
        clock: Callable[[], float] | None = None,
        client_id: str = "Iv1.fake0client0id",
        client_secret: str | None = None,
    ) -> None:
        super().__init__(api_base, clock=clock)
        self.rate_limit = rate_limit
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_hex(20)
        self._usage: dict[int, tuple[float, int]] = {}

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), self.client_secret}

    @property
    def api_base(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    def issue_token(
        self,
        login: str = "octocat",
        user_id: int = 1,
        scopes: Sequence[str] = ("read:user",),
        kind: GitHubTokenKind = "gho",
        *,
        expires_in: float | None = None,
        name: str | None = None,
        email: str | None = None,
        client_id: str | None = None,
    ) -> str:
        """Issue a token for a user and return it.

        Args:
            login: The user's login.
            user_id: The user's numeric id.
            scopes: OAuth scopes (reported only for ``ghp``/``gho`` tokens).
            kind: Token type (its prefix), see `GitHubTokenKind`.
            expires_in: Seconds until the token expires (``None``: never). An
                expiring token's answers carry ``github-authentication-token-expiration``.
            name: Profile name.
            email: Public profile email.
            client_id: The OAuth app the token was issued to (this fake's
                `client_id` by default; another value makes a token of
                another app).
        """
        grant = _GitHubGrant(
            issued_at=self.clock(),
            expires_at=self._expires_at(expires_in),
            kind=kind,
            login=login,
            user_id=user_id,
            scopes=tuple(scopes),
            name=name,
            email=email,
            client_id=self.client_id if client_id is None else client_id,
        )
        return self._issue(_github_token(kind), grant)

    @staticmethod
    def well_formed_token(kind: GitHubTokenKind = "gho") -> str:
        """A made-up token in GitHub's format, checksum included, that was never issued.

        A local format check cannot tell it from a real token; GitHub (and this
        fake) answers it as bad credentials. Floods of such tokens are what a
        resource server's concurrency limit is for.
        """
        return _github_token(kind)

    # -- answers -------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        message: str,
        docs: str = _GITHUB_DOCS,
        headers: Sequence[tuple[str, str]] = (),
    ) -> _Reply:
        body = {"message": message, "documentation_url": docs, "status": str(status)}
        return _json_reply(
            status, body, (("x-github-media-type", "github.v3; format=json"), *headers)
        )

    def _not_found(self, request: _Incoming) -> _Reply:
        return self._error(404, "Not Found")

    def _server_error(self, status: int) -> _Reply:
        return _json_reply(status, {"message": "Server Error"})

    def _rate_headers(self, used: int, reset: float) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(self.rate_limit)),
            ("x-ratelimit-remaining", str(max(self.rate_limit - used, 0))),
            ("x-ratelimit-reset", str(int(reset))),
            ("x-ratelimit-used", str(used)),
            ("x-ratelimit-resource", "core"),
        )

    def _grant_of(self, request: _Incoming) -> _GitHubGrant | None:
        token = request.header_token("bearer", "token")
        if token is None or self.token_state(token) != "active":
            return None
        return self._grants[token]

    def _primary_limited(self, user_id: int, status: int, reset: float) -> _Reply:
        return self._error(
            status,
            f"API rate limit exceeded for user ID {user_id}.",
            _GITHUB_RATE_DOCS,
            self._rate_headers(self.rate_limit, reset),
        )

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        grant = self._grant_of(request)
        reset = self.clock() + (60 if retry_after is None else retry_after)
        return self._primary_limited(grant.user_id if grant else 1, 403, reset)

    def rate_limit_next(
        self,
        count: int | None = 1,
        *,
        retry_after: int | None = None,
        secondary: bool = False,
        status: Literal[403, 429] = 403,
    ) -> None:
        """Answer the next ``count`` requests as rate limited.

        Args:
            count: How many requests (``None``: until `clear_failures`).
            retry_after: Primary limit: seconds until ``x-ratelimit-reset``
                (60 if omitted). Secondary limit: the ``retry-after`` header
                (omitted if ``None``, which GitHub also does sometimes).
            secondary: A secondary rate limit (burst/concurrency) instead of
                the primary one: an explanatory message, ``x-ratelimit-remaining``
                not 0.
            status: GitHub documents both 403 and 429.
        """
        if not secondary:
            self._push(
                lambda request: replace(self._rate_limited(request, retry_after), status=status),
                count,
            )
            return

        def make(request: _Incoming) -> _Reply:
            grant = self._grant_of(request)
            used = 1 if grant is None else self._usage.get(grant.user_id, (0.0, 1))[1]
            headers = self._rate_headers(used, self.clock() + _GITHUB_WINDOW)
            if retry_after is not None:
                headers = (("retry-after", str(retry_after)), *headers)
            message = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
            return self._error(
                status, message, f"{_GITHUB_RATE_DOCS}#about-secondary-rate-limits", headers
            )

        self._push(make, count)

    def _route(self, request: _Incoming) -> _Reply:
        if not request.headers.get("user-agent"):
            message = (
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header."
            )
            return _Reply(403, message.encode(), (("content-type", "text/plain"),))
        if request.path == "/user" and request.method in ("GET", "HEAD"):
            return self._get_user(request)
        parts = request.path.split("/")
        if (
            request.method == "POST"
            and len(parts) == 4
            and parts[1::2] == ["applications", "token"]
        ):
            return self._check_token(request, parts[2])
        return self._not_found(request)

    def _check_token(self, request: _Incoming, client_id: str) -> _Reply:
        auth = request.authorization()
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if client_id != self.client_id or auth is None or auth != ("basic", expected):
            return self._error(401, "Requires authentication", _GITHUB_APP_DOCS)
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            return self._error(422, "Invalid request.", _GITHUB_APP_DOCS)
        grant = self._grants.get(token)
        if grant is None or self.token_state(token) != "active" or grant.client_id != client_id:
            return self._error(404, "Not Found", _GITHUB_APP_DOCS)
        expires = (
            datetime.fromtimestamp(grant.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if grant.expires_at is not None
            else None
        )
        answer = {
            "id": 1,
            "url": f"{self.base_url}/authorizations/1",
            "app": {"client_id": client_id, "name": "fake app", "url": "https://example.test"},
            "token": token,
            "hashed_token": hashlib.sha256(token.encode()).hexdigest(),
            "token_last_eight": token[-8:],
            "note": None,
            "note_url": None,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "scopes": list(grant.scopes),
            "fingerprint": None,
            "expires_at": expires,
            "user": self._user(grant),
        }
        return _json_reply(200, answer, (("x-github-media-type", "github.v3; format=json"),))

    def _get_user(self, request: _Incoming) -> _Reply:
        token = request.header_token("bearer", "token")
        if token is None:
            return self._error(401, "Requires authentication", _GITHUB_USER_DOCS)
        grant = self._grants.get(token)
        if grant is None or self.token_state(token) != "active" or grant.kind == "ghr":
            return self._error(401, "Bad credentials")
        if grant.kind == "ghs":
            return self._error(403, "Resource not accessible by integration", _GITHUB_USER_DOCS)
        now = self.clock()
        start, used = self._usage.get(grant.user_id, (now, 0))
        if now >= start + _GITHUB_WINDOW:
            start, used = now, 0
        if used >= self.rate_limit:
            return self._primary_limited(grant.user_id, 403, start + _GITHUB_WINDOW)
        used += 1
        self._usage[grant.user_id] = (start, used)
        headers = [
            ("x-github-media-type", "github.v3; format=json"),
            ("x-github-request-id", secrets.token_hex(8).upper()),
            *self._rate_headers(used, start + _GITHUB_WINDOW),
        ]
        if grant.kind in _GITHUB_SCOPED:
            headers += [
                ("x-oauth-scopes", ", ".join(grant.scopes)),
                ("x-accepted-oauth-scopes", ""),
            ]
        if grant.expires_at is not None:
            expiry = datetime.fromtimestamp(grant.expires_at, UTC)
            headers.append(
                ("github-authentication-token-expiration", expiry.strftime("%Y-%m-%d %H:%M:%S UTC"))
            )
        return _json_reply(200, self._user(grant), headers)

    def _user(self, grant: _GitHubGrant) -> dict[str, Any]:
        api = self.base_url
        return {
            "login": grant.login,
            "id": grant.user_id,
            "node_id": base64.b64encode(f"04:User{grant.user_id}".encode()).decode("ascii"),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{grant.user_id}?v=4",
            "gravatar_id": "",
            "url": f"{api}/users/{grant.login}",
            "html_url": f"https://github.com/{grant.login}",
            "type": "User",
            "site_admin": False,
            "name": grant.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": grant.email,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": "2011-01-25T18:44:36Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }


# -- Google ------------------------------------------------------------------------------

_GOOGLE_EMAIL_SCOPES = frozenset({"email", "https://www.googleapis.com/auth/userinfo.email"})


@dataclass(kw_only=True, slots=True)
class _GoogleGrant(_Grant):
    sub: str
    azp: str
    aud: str
    scopes: tuple[str, ...]
    email: str | None
    email_verified: bool
    access_type: str


class FakeGoogle(FakeAPI[_GoogleGrant]):
    """Google's access-token introspection: ``oauth2.googleapis.com/tokeninfo``.

    Accepts the token as ``GET ?access_token=``, as ``access_token`` in a
    form-encoded ``POST`` body, or in ``Authorization: Bearer`` (what Google's
    own Node.js client sends, with ``POST``). Answers like the live endpoint:
    ``azp``, ``aud``, ``sub``, ``scope`` (space separated), ``exp`` and
    ``expires_in`` (both *strings*), ``email`` and ``email_verified`` (the
    string ``"true"``/``"false"``, only when an email scope was granted) and
    ``access_type``. Unknown, expired and revoked tokens get
    ``400 {"error": "invalid_token", "error_description": "Invalid Value"}``;
    a request with no token gets 400 with ``"Either access_token, id_token, or
    token_handle required"``. ID tokens (``id_token=``) are not handled here.

    Args:
        base_url: Root of the endpoint (``/tokeninfo`` is appended).
        clock: Time source for expiry.
    """

    _credential_params: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "id_token", "token_handle"}
    )

    def __init__(
        self,
        base_url: str = "https://oauth2.googleapis.com",
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(base_url, clock=clock)

    @property
    def tokeninfo_url(self) -> str:
        """The tokeninfo endpoint."""
        return f"{self.base_url}/tokeninfo"

    def issue_access_token(
        self,
        sub: str = "110169484474386276334",
        client_id: str = "1234567890-fake.apps.googleusercontent.com",
        scopes: Sequence[str] = ("openid", "https://www.googleapis.com/auth/userinfo.email"),
        expires_in: float = 3599,
        *,
        email: str | None = None,
        email_verified: bool = True,
        access_type: Literal["online", "offline"] = "online",
        aud: str | None = None,
    ) -> str:
        """Issue an access token (``ya29.`` and random characters) and return it.

        Args:
            sub: The Google account id.
            client_id: The OAuth client the token was issued to (``azp``, and
                ``aud`` unless given).
            scopes: Granted scopes.
            expires_in: Seconds until expiry (Google's tokens last one hour).
            email: The account email; reported only if an email scope
                (``email`` or ``.../auth/userinfo.email``) was granted.
            email_verified: Reported with ``email``.
            access_type: ``online`` or ``offline``.
            aud: ``aud`` if it differs from ``azp``.
        """
        grant = _GoogleGrant(
            issued_at=self.clock(),
            expires_at=self.clock() + expires_in,
            sub=sub,
            azp=client_id,
            aud=client_id if aud is None else aud,
            scopes=tuple(scopes),
            email=email,
            email_verified=email_verified,
            access_type=access_type,
        )
        return self._issue(f"ya29.{secrets.token_urlsafe(120)}", grant)

    def _error(self, status: int, error: str, description: str) -> _Reply:
        return _json_reply(
            status,
            {"error": error, "error_description": description},
            content_type="application/json; charset=UTF-8",
        )

    def _api_error(
        self, status: int, message: str, reason: str, headers: Sequence[tuple[str, str]] = ()
    ) -> _Reply:
        body = {"error": {"code": status, "message": message, "status": reason}}
        return _json_reply(status, body, headers, "application/json; charset=UTF-8")

    def _not_found(self, request: _Incoming) -> _Reply:
        page = b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title><p><b>404.</b> Not Found"
        return _Reply(404, page, (("content-type", "text/html; charset=UTF-8"),))

    def _server_error(self, status: int) -> _Reply:
        return self._api_error(status, "The service is currently unavailable.", "UNAVAILABLE")

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = () if retry_after is None else (("retry-after", str(retry_after)),)
        return self._api_error(429, "Quota exceeded.", "RESOURCE_EXHAUSTED", headers)

    def _route(self, request: _Incoming) -> _Reply:
        if request.path != "/tokeninfo" or request.method not in ("GET", "POST", "HEAD"):
            return self._not_found(request)
        token = (
            request.query.get("access_token")
            or request.form.get("access_token")
            or request.header_token("bearer")
        )
        if not token:
            if any(k in request.query or k in request.form for k in ("id_token", "token_handle")):
                return self._error(400, "invalid_token", "Invalid Value")
            return self._error(
                400, "invalid_token", "Either access_token, id_token, or token_handle required"
            )
        if self.token_state(token) != "active":
            return self._error(400, "invalid_token", "Invalid Value")
        grant = self._grants[token]
        assert grant.expires_at is not None  # noqa: S101 - Google tokens always expire
        info: dict[str, Any] = {
            "azp": grant.azp,
            "aud": grant.aud,
            "sub": grant.sub,
            "scope": " ".join(grant.scopes),
            "exp": str(int(grant.expires_at)),
            "expires_in": str(max(int(grant.expires_at - self.clock()), 0)),
        }
        if grant.email is not None and _GOOGLE_EMAIL_SCOPES.intersection(grant.scopes):
            info["email"] = grant.email
            info["email_verified"] = "true" if grant.email_verified else "false"
        info["access_type"] = grant.access_type
        return _json_reply(200, info, content_type="application/json; charset=UTF-8")


# -- Facebook ----------------------------------------------------------------------------

_PACIFIC = timezone(timedelta(hours=-8), "PST")
_GRAPH_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)?$")
_FB_JSON = "application/json; charset=UTF-8"
_FB_NEEDS_APP_TOKEN = (
    "(#100) You must provide an app access token, "
    "or a user access token that is an owner or developer of the app"
)
_FB_CANNOT_PARSE = "Invalid OAuth access token - Cannot parse access token"
_FB_BATCH_LIMIT = 50


@dataclass(kw_only=True, slots=True)
class _FacebookGrant(_Grant):
    user_id: str
    app_id: str
    scopes: tuple[str, ...]
    data_access_expires_at: int


class FakeFacebook(FakeAPI[_FacebookGrant]):
    """Facebook Graph API token inspection: ``GET /{version}/debug_token``.

    As documented: ``input_token`` (the token to inspect) and ``access_token``
    (the app access token ``APP_ID|APP_SECRET``) are query parameters; a good
    answer is ``{"data": {"app_id", "type", "application",
    "data_access_expires_at", "expires_at", "is_valid", "issued_at",
    "scopes", "user_id"}}`` (ids are strings, times are epoch seconds,
    ``expires_at`` 0 for a token that never expires). A bad *input* token still
    answers 200, with ``is_valid: false`` and ``data.error`` (code 190, with
    subcode 463 once expired, 460 once invalidated); a bad *app* token answers
    400 with a top-level Graph API error object (``message``, ``type``,
    ``code``, ``fbtrace_id``). The answer is about whichever app the token
    belongs to: a token of another app is ``is_valid: true`` with that app's
    ``app_id``, which the caller must check.

    Keeping credentials out of the request URL: the app token is also accepted
    in ``Authorization: Bearer`` (or ``OAuth``), as Meta documents for other
    APIs on graph.facebook.com (the debug_token page itself only shows the
    query form); and a batch request, which Meta documents (``POST`` to the
    Graph root with form fields ``batch`` and ``access_token``), carries
    ``debug_token?input_token=...`` inside its body, answering a list of
    ``{"code", "headers", "body"}`` with ``body`` a JSON *string*.
    ``POST /debug_token`` with form fields is *not* documented; it is refused
    unless ``accept_post=True``.

    Args:
        app_id: Your app's id.
        app_secret: Your app's secret (random if omitted).
        graph_base: The Graph API root.
        version: Graph API version used in `debug_token_url` (any
            ``vN.N`` prefix, or none, is accepted).
        app_name: Reported as ``application``.
        accept_post: Also answer ``POST /debug_token`` with form parameters.
        clock: Time source for expiry.
    """

    _credential_params: ClassVar[frozenset[str]] = frozenset({"access_token", "input_token"})

    def __init__(
        self,
        app_id: str = "1234567890123456",
        app_secret: str | None = None,
        graph_base: str = "https://graph.facebook.com",
        version: str = "v19.0",
        *,
        app_name: str = "authbridge-test",
        accept_post: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(graph_base, clock=clock)
        self.app_id = app_id
        self.app_secret = app_secret or secrets.token_hex(16)
        self.version = version
        self.app_name = app_name
        self.accept_post = accept_post

    @property
    def graph_base(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    @property
    def debug_token_url(self) -> str:
        """``{graph_base}/{version}/debug_token``."""
        return f"{self.base_url}/{self.version}/debug_token"

    @property
    def app_access_token(self) -> str:
        """The app access token, ``APP_ID|APP_SECRET``."""
        return f"{self.app_id}|{self.app_secret}"

    def _secrets(self) -> set[str]:
        return {*super()._secrets(), self.app_secret}

    def issue_token(
        self,
        user_id: str = "10001",
        scopes: Sequence[str] = ("public_profile", "email"),
        expires_in: float | None = 60 * 24 * 3600,
        *,
        app_id: str | None = None,
    ) -> str:
        """Issue a user access token (``EAA`` and random characters) and return it.

        Args:
            user_id: The app-scoped user id.
            scopes: Granted permissions.
            expires_in: Seconds until expiry (long-lived tokens last 60 days;
                ``None``: never, reported as ``expires_at: 0``).
            app_id: The app the token belongs to (this fake's app if omitted).
        """
        now = self.clock()
        grant = _FacebookGrant(
            issued_at=now,
            expires_at=self._expires_at(expires_in),
            user_id=user_id,
            app_id=self.app_id if app_id is None else app_id,
            scopes=tuple(scopes),
            data_access_expires_at=int(now + 90 * 24 * 3600),
        )
        return self._issue(f"EAA{_random_alnum(180)}", grant)

    # -- answers -------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "OAuthException",
        subcode: int | None = None,
        transient: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> _Reply:
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        if transient:
            error["is_transient"] = True
        error["fbtrace_id"] = _random_alnum(23)
        return _json_reply(status, {"error": error}, headers, _FB_JSON)

    def _not_found(self, request: _Incoming) -> _Reply:
        return self._error(400, 2500, f"Unknown path components: {request.path}")

    def _server_error(self, status: int) -> _Reply:
        message = "An unexpected error has occurred. Please retry your request later."
        return self._error(status, 2, message, transient=True)

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        usage = json.dumps({"call_count": 100, "total_cputime": 25, "total_time": 25})
        return self._error(
            403,
            4,
            "(#4) Application request limit reached",
            transient=True,
            headers=(("x-app-usage", usage),),
        )

    @staticmethod
    def _graph_path(path: str) -> str:
        """``path`` without its ``/vN.N`` version prefix."""
        versioned = _GRAPH_VERSIONED.match(path)
        return (versioned.group(1) or "/") if versioned else path

    def _route(self, request: _Incoming) -> _Reply:
        path = self._graph_path(request.path)
        params = {**request.query, **request.form}
        if request.method == "POST" and "batch" in params:
            return self._batch(request, params)
        if path != "/debug_token":
            return self._not_found(request)
        if request.method == "POST" and not self.accept_post:
            message = (
                "Unsupported post request. Object with ID 'debug_token' does not exist, "
                "cannot be loaded due to missing permissions, or does not support this operation."
            )
            return self._error(400, 100, message, kind="GraphMethodException", subcode=33)
        status, payload = self._debug_token(params, request.header_token("bearer", "oauth"))
        if "error" in payload:
            return self._error(status, payload["error"]["code"], payload["error"]["message"])
        return _json_reply(status, payload, content_type=_FB_JSON)

    def _debug_token(
        self, params: Mapping[str, str], header_token: str | None
    ) -> tuple[int, dict[str, Any]]:
        """``(status, body)``; a 400 body is ``{"error": {"code", "message"}}``."""
        app_token = params.get("access_token") or header_token
        if not app_token or app_token in self._grants:
            return 400, {"error": {"code": 100, "message": _FB_NEEDS_APP_TOKEN}}
        if app_token != self.app_access_token:
            same_app = app_token.partition("|")[0] == self.app_id
            message = "Invalid OAuth access token signature." if same_app else _FB_CANNOT_PARSE
            return 400, {"error": {"code": 190, "message": message}}
        input_token = params.get("input_token")
        if not input_token:
            return 400, {
                "error": {"code": 100, "message": "(#100) The parameter input_token is required"}
            }
        state = self.token_state(input_token)
        if state == "unknown":
            return 200, {
                "data": {
                    "error": {"code": 190, "message": _FB_CANNOT_PARSE},
                    "is_valid": False,
                    "scopes": [],
                }
            }
        grant = self._grants[input_token]
        data: dict[str, Any] = {
            "app_id": grant.app_id,
            "type": "USER",
            "application": self.app_name if grant.app_id == self.app_id else f"App {grant.app_id}",
            "data_access_expires_at": grant.data_access_expires_at,
            "expires_at": 0 if grant.expires_at is None else int(grant.expires_at),
            "is_valid": state == "active",
            "issued_at": int(grant.issued_at),
            "scopes": list(grant.scopes),
            "user_id": grant.user_id,
        }
        if state == "expired":
            assert grant.expires_at is not None  # noqa: S101 - only expiring tokens expire
            data["error"] = {
                "code": 190,
                "message": (
                    "Error validating access token: Session has expired on "
                    f"{self._pacific(grant.expires_at)}. "
                    f"The current time is {self._pacific(self.clock())}."
                ),
                "subcode": 463,
            }
        elif state == "revoked":
            data["error"] = {
                "code": 190,
                "message": (
                    "Error validating access token: The session has been invalidated because "
                    "the user changed their password or Facebook has changed the session for "
                    "security reasons."
                ),
                "subcode": 460,
            }
        return 200, {"data": data}

    @staticmethod
    def _pacific(when: float) -> str:
        return datetime.fromtimestamp(when, _PACIFIC).strftime("%A, %d-%b-%y %H:%M:%S PST")

    def _batch(self, request: _Incoming, params: Mapping[str, str]) -> _Reply:
        invalid = "(#100) param batch must be a valid JSON array"
        try:
            operations = json.loads(params["batch"])
        except json.JSONDecodeError:
            return self._error(400, 100, invalid)
        if not isinstance(operations, list):
            return self._error(400, 100, invalid)
        if len(operations) > _FB_BATCH_LIMIT:
            message = "(#100) Too many requests in batch message. Maximum batch size is 50"
            return self._error(400, 100, message)
        include_headers = params.get("include_headers", "true").lower() != "false"
        app_token = params.get("access_token") or request.header_token("bearer", "oauth") or ""
        results = [self._batch_operation(op, app_token, include_headers) for op in operations]
        return _json_reply(200, results, content_type=_FB_JSON)

    def _batch_operation(
        self, operation: Any, app_token: str, include_headers: bool
    ) -> dict[str, Any]:
        """One logical response: ``{"code", "headers"?, "body": "<JSON text>"}``."""
        if not isinstance(operation, dict):
            status, payload = (
                400,
                {"error": {"code": 100, "message": "(#100) Invalid batch operation"}},
            )
        else:
            method = str(operation.get("method", "GET")).upper()
            relative = httpx.URL("/" + str(operation.get("relative_url", "")).lstrip("/"))
            path = self._graph_path(relative.path)
            if method == "GET" and path == "/debug_token":
                query = dict(parse_qsl(relative.query.decode("latin-1"), keep_blank_values=True))
                status, payload = self._debug_token({"access_token": app_token, **query}, None)
            else:
                message = f"Unknown path components: {path}"
                status, payload = 400, {"error": {"code": 2500, "message": message}}
        if "error" in payload:
            error = {**payload["error"], "type": "OAuthException", "fbtrace_id": _random_alnum(23)}
            payload = {"error": error}
        result: dict[str, Any] = {"code": status}
        if include_headers:
            result["headers"] = [
                {"name": "Content-Type", "value": "text/javascript; charset=UTF-8"}
            ]
        result["body"] = json.dumps(payload, separators=(",", ":"))
        return result


# -- OpenID Connect UserInfo -------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _UserinfoGrant(_Grant):
    sub: str
    scopes: tuple[str, ...]
    claims: dict[str, Any]


class FakeUserinfo(FakeAPI[_UserinfoGrant]):
    """An OpenID Connect UserInfo endpoint (OIDC Core 1.0 section 5.3, RFC 6750).

    ``GET`` or ``POST`` with the token in ``Authorization: Bearer`` (or, for
    ``POST``, as ``access_token`` in a form-encoded body) answers the claims as
    JSON, always with ``sub``. Errors are RFC 6750 challenges: no token is
    ``401`` with ``WWW-Authenticate: Bearer`` and no error code; an unknown,
    revoked or expired token is ``401`` with ``error="invalid_token"``; a token
    without the ``openid`` scope is ``403`` with ``error="insufficient_scope"``;
    a token sent two ways at once is ``400`` with ``error="invalid_request"``.
    A token in the query string is ignored (RFC 6750 makes that method
    optional and discourages it), so the answer is the no-token 401.

    Args:
        issuer: The provider's root URL.
        userinfo_path: Path of the endpoint under ``issuer``.
        clock: Time source for expiry.
    """

    def __init__(
        self,
        issuer: str = "https://op.example.test",
        *,
        userinfo_path: str = "/userinfo",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(issuer, clock=clock)
        self.userinfo_path = "/" + userinfo_path.lstrip("/")

    @property
    def issuer(self) -> str:
        """Alias of `base_url`."""
        return self.base_url

    @property
    def userinfo_endpoint(self) -> str:
        """The endpoint's URL."""
        return f"{self.base_url}{self.userinfo_path}"

    def issue_token(
        self,
        sub: str = "alice",
        scopes: Sequence[str] = ("openid", "profile", "email"),
        expires_in: float | None = 3600,
        **claims: Any,
    ) -> str:
        """Issue an opaque access token and return it.

        Args:
            sub: The subject (always in the answer).
            scopes: Granted scopes; without ``openid`` the endpoint answers 403.
            expires_in: Seconds until expiry (``None``: never).
            **claims: Further claims to answer (``name``, ``email``...).
        """
        grant = _UserinfoGrant(
            issued_at=self.clock(),
            expires_at=self._expires_at(expires_in),
            sub=sub,
            scopes=tuple(scopes),
            claims=dict(claims),
        )
        return self._issue(secrets.token_urlsafe(32), grant)

    @staticmethod
    def _challenge(
        status: int, error: str | None = None, description: str | None = None, **extra: str
    ) -> _Reply:
        params = {"error": error, "error_description": description, **extra}
        challenge = ", ".join(f'{k}="{v}"' for k, v in params.items() if v is not None)
        return _Reply(status, b"", (("www-authenticate", f"Bearer {challenge}".rstrip()),))

    def _not_found(self, request: _Incoming) -> _Reply:
        return _Reply(404, b"Not Found", (("content-type", "text/plain"),))

    def _server_error(self, status: int) -> _Reply:
        return _Reply(status, b"Service Unavailable", (("content-type", "text/plain"),))

    def _rate_limited(self, request: _Incoming, retry_after: int | None) -> _Reply:
        headers = (("retry-after", str(60 if retry_after is None else retry_after)),)
        return _Reply(429, b"Too Many Requests", (("content-type", "text/plain"), *headers))

    def _route(self, request: _Incoming) -> _Reply:
        if request.path != self.userinfo_path:
            return self._not_found(request)
        if request.method not in ("GET", "POST", "HEAD"):
            return _Reply(405, b"", (("allow", "GET, POST"),))
        header_token = request.header_token("bearer")
        body_token = request.form.get("access_token") if request.method == "POST" else None
        if header_token and body_token:
            return self._challenge(
                400, "invalid_request", "The access token was sent more than one way"
            )
        token = header_token or body_token
        if not token:
            return self._challenge(401)
        state = self.token_state(token)
        if state != "active":
            description = (
                "The access token expired" if state == "expired" else "The access token is invalid"
            )
            return self._challenge(401, "invalid_token", description)
        grant = self._grants[token]
        if "openid" not in grant.scopes:
            return self._challenge(
                403, "insufficient_scope", "The openid scope is required", scope="openid"
            )
        claims = {"sub": grant.sub, **grant.claims}
        return _json_reply(200, claims, content_type="application/json")
