"""The app's own authorization server over HTTP: token, revocation, introspection, keys, metadata.

``AuthBridge(issuer=AppIssuer(...)).install(app)`` adds these routes (none of
them in the OpenAPI document):

- ``POST {path_prefix}/token``, ``/revoke``, ``/introspect``: form-encoded
  (RFC 6749 §3.2), body at most `MAX_FORM_BYTES` (16 KiB), each parameter once;
  answers are JSON with ``Cache-Control: no-store``. Every malformed request
  gets an RFC 6749 §5.2 error (400, 413 for an oversized body), never a 500.
- ``GET {path_prefix}/jwks``: the public signing keys, cached as long as the
  rotation schedule allows.
- ``GET /.well-known/oauth-authorization-server`` (RFC 8414; for an issuer
  with a path, also the path-inserted ``/.well-known/oauth-authorization-server/
  <path>``) and ``GET <issuer path>/.well-known/openid-configuration``, the
  same document: other apps' ``OIDCProvider`` discovers the issuer there.

The paths are those of the endpoint URLs (``AppIssuer.endpoint(name)``) and of
the issuer URL, relative to the app's root.

Rate limits count per client address: ``request.client.host``. Behind a
reverse proxy, run uvicorn with ``--forwarded-allow-ips`` set to the proxy's
address, so that it is the client's address (from ``X-Forwarded-For``) and
not the proxy's.

When the store cannot be reached at start-up, the app starts anyway: these
routes answer 503 ``temporarily_unavailable`` and the first request after a
cooldown of `START_RETRY_COOLDOWN` (5 s) tries to start the issuer again (one
attempt shared by concurrent requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .._shared import SharedTasks, within
from ..errors import ProviderUnavailable, StoreUnavailable
from ..issuer import IssuerRuntime, OAuthError, TokenRequest
from ..issuer._runtime import store_unavailable
from ..metadata import OIDC_SUFFIX, RFC8414_SUFFIX

logger = logging.getLogger("authbridge.fastapi")

MAX_FORM_BYTES = 16 * 1024
"""Largest form body accepted by the token, revocation and introspection endpoints."""

MAX_FORM_FIELDS = 64
"""Most parameters in one form body."""

MAX_BODY_SECONDS = 10.0
"""A form body not received in full within this time is refused (408)."""

START_RETRY_COOLDOWN = 5.0
"""Seconds between attempts to start an issuer whose store was unreachable."""

FORM_TYPE = "application/x-www-form-urlencoded"

NO_STORE = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
"""Headers of every answer of the form endpoints (RFC 6749 §5.1)."""

METADATA_CACHE_CONTROL = "public, max-age=3600"


PURGE_INTERVAL = 600.0
"""Seconds between two purges of expired rows by one instance."""


class IssuerStarter:
    """Starts the issuer runtime, and starts it again later if the store was down.

    A `StoreUnavailable` at start-up is logged at WARNING, not fatal; the
    routes then call `ensure_started`, which refuses at once (503 with
    ``Retry-After``) within `START_RETRY_COOLDOWN` of the last failure and
    otherwise makes one attempt, shared by every request waiting for it.
    """

    def __init__(self, runtime: IssuerRuntime) -> None:
        self.runtime = runtime
        self.started = False
        self._failed_at: float | None = None
        self._attempts: SharedTasks[None] = SharedTasks()
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start at the app's start-up.

        Raises:
            ConfigurationError: no key-encryption key in production, an
                outdated schema with ``migrate=False``, ...: the app must not
                start.
        """
        try:
            await self._attempt()
        except StoreUnavailable as exc:
            logger.warning(
                "The app's issuer %s could not reach its store at start-up [%s]: its "
                "endpoints answer 503 until it can (retried on demand)",
                self.runtime.config.issuer,
                exc.reason,
            )

    async def _attempt(self) -> None:
        try:
            await self.runtime.start()
        except StoreUnavailable:
            self._failed_at = self.runtime.clock()
            raise
        self._failed_at = None
        self.started = True
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._key_timer())

    async def _key_timer(self) -> None:
        """Reload the signing keys when due, and purge expired rows, without traffic.

        Scheduled rotations, retirements and deletions then happen on time on
        every instance, keys another instance added (or revoked) are taken up
        within `KeyManager.refresh_interval`, and expired refresh tokens, rate
        limit windows, replay records and one-time values leave the store
        every `PURGE_INTERVAL` (any instance may purge: it deletes only what
        has expired).
        """
        keys = self.runtime.keys
        purge_at = self.runtime.clock()
        while True:
            wait = keys.next_refresh_at - self.runtime.clock()
            await asyncio.sleep(min(max(wait, 1.0), max(keys.refresh_interval, 1.0)))
            try:
                await keys.maybe_refresh()
                now = self.runtime.clock()
                if now >= purge_at:
                    purge_at = now + PURGE_INTERVAL
                    await self.runtime.store.purge(now)
            except StoreUnavailable as exc:
                logger.warning("Store maintenance skipped, store unavailable: %s", exc.reason)
            except Exception as exc:  # noqa: BLE001 - the timer must outlive a bug
                _log_bug(exc)

    async def ensure_started(self) -> None:
        """Return once the runtime is started.

        Raises:
            StoreUnavailable: the store is still down (``retry_after`` set).
            ConfigurationError: the store's schema needs an upgrade, ...
        """
        if self.started:
            return
        failed_at = self._failed_at
        now = self.runtime.clock()
        if failed_at is not None and within(now, failed_at, START_RETRY_COOLDOWN):
            wait = failed_at + START_RETRY_COOLDOWN - now
            raise StoreUnavailable("issuer_not_started", retry_after=max(1.0, wait))
        await self._attempts.run(self._attempt)

    async def aclose(self) -> None:
        """Stop the key timer and close the runtime (its store connections)."""
        self.started = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.runtime.aclose()


def endpoint_path(url: str) -> str:
    """The path part of an endpoint URL: where the app serves it."""
    return urlsplit(url).path or "/"


def metadata_paths(issuer: str) -> tuple[str, ...]:
    """Where the metadata document is served, for an issuer identifier.

    RFC 8414 §3.1 inserts the well-known suffix before the issuer's path
    (``/.well-known/oauth-authorization-server/tenant``); OIDC Discovery appends
    it (``/tenant/.well-known/openid-configuration``). For an issuer with a
    path, the plain RFC 8414 location is served too, for clients that only
    know the host.
    """
    path = urlsplit(issuer).path.rstrip("/")
    paths = [RFC8414_SUFFIX + path, RFC8414_SUFFIX, path + OIDC_SUFFIX]
    return tuple(dict.fromkeys(paths))


def _retry_after(seconds: float | None) -> str:
    return str(max(1, math.ceil(seconds or 1.0)))


def oauth_error_response(error: OAuthError, *, realm: str) -> JSONResponse:
    """The RFC 6749 §5.2 answer for ``error``."""
    headers = dict(NO_STORE)
    if error.basic_challenge:
        quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
        headers["WWW-Authenticate"] = f'Basic realm="{quoted}"'
    if error.retry_after is not None:
        headers["Retry-After"] = _retry_after(error.retry_after)
    if error.status in {408, 413}:
        headers["Connection"] = "close"  # the rest of the body is not read
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _invalid(reason: str, description: str, *, status: int = 400) -> OAuthError:
    return OAuthError("invalid_request", description, reason=reason, status=status)


async def read_bounded_body(request: Request, *, limit: int, kind: str) -> bytes:
    """The request's body, read as it arrives and cut off at ``limit`` bytes.

    A declared ``Content-Length`` beyond ``limit`` is refused before reading, a
    chunked body as soon as it passes it, and a body still arriving after
    `MAX_BODY_SECONDS` is refused too.

    Raises:
        OAuthError: ``invalid_request``: 400 ``<kind>_content_length``, 413
            ``<kind>_too_large``, 408 ``<kind>_too_slow``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise _invalid(f"{kind}_content_length", "Invalid Content-Length")
        if int(declared) > limit:
            raise _invalid(f"{kind}_too_large", "The request body is too large", status=413)
    body = bytearray()
    try:
        async with asyncio.timeout(MAX_BODY_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _invalid(f"{kind}_too_large", "The request body is too large", status=413)
    except TimeoutError:
        raise _invalid(
            f"{kind}_too_slow", "The request body was not received in time", status=408
        ) from None
    return bytes(body)


async def read_form(request: Request) -> dict[str, str]:
    """The request's form parameters, each present once.

    The body is read as it arrives and cut off at `MAX_FORM_BYTES`: a declared
    ``Content-Length`` beyond it is refused before reading, a chunked body as
    soon as it goes past it, and a body still incomplete after
    `MAX_BODY_SECONDS` too.

    Raises:
        OAuthError: ``invalid_request``: 400 for a wrong media type, a body
            that is not UTF-8 form encoding, too many parameters or one given
            twice; 413 for an oversized body; 408 for a body too slow.
    """
    media_type, _, parameters = (request.headers.get("content-type") or "").partition(";")
    if media_type.strip().lower() != FORM_TYPE:
        raise _invalid("form_media_type", f"The request body must be {FORM_TYPE}")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise _invalid("form_charset", "The request body must be UTF-8")
    body = await read_bounded_body(request, limit=MAX_FORM_BYTES, kind="form")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError included
        raise _invalid("form_malformed", "The request body is not valid form encoding") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise _invalid("form_repeated_parameter", "A parameter is given more than once")
        form[name] = value
    return form


Handler = Callable[[TokenRequest], Awaitable[Response]]


class IssuerEndpoints:
    """The HTTP face of one [IssuerRuntime][authbridge.issuer.IssuerRuntime]."""

    def __init__(self, runtime: IssuerRuntime) -> None:
        self.runtime = runtime
        self.starter = IssuerStarter(runtime)
        self.realm = runtime.config.issuer

    def path(self, name: str) -> str:
        """Where the app serves endpoint ``name`` (``token``, ``revoke``, ...)."""
        return endpoint_path(self.runtime.config.endpoint(name))

    def install(self, app: FastAPI) -> None:
        """Add the issuer's routes to ``app``."""
        for name, handler in (
            ("token", self._token),
            ("revoke", self._revoke),
            ("introspect", self._introspect),
        ):
            app.add_api_route(
                self.path(name),
                self._form_endpoint(handler),
                methods=["POST"],
                include_in_schema=False,
                name=f"authbridge_issuer_{name}",
            )
            app.add_api_route(
                self.path(name),
                _method_not_allowed,
                methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"],
                include_in_schema=False,
            )
        app.add_api_route(self.path("jwks"), self._jwks, methods=["GET"], include_in_schema=False)
        for path in metadata_paths(self.runtime.config.issuer):
            app.add_api_route(path, self._metadata, methods=["GET"], include_in_schema=False)

    def _form_endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                form = await read_form(request)
                await self.starter.ensure_started()
                client = request.client
                return await handler(
                    TokenRequest(
                        form=form,
                        authorization=request.headers.get("authorization"),
                        client_address=client.host if client is not None else None,
                    )
                )
            except OAuthError as exc:
                return oauth_error_response(exc, realm=self.realm)
            except StoreUnavailable as exc:
                return oauth_error_response(store_unavailable(exc), realm=self.realm)
            except ProviderUnavailable as exc:
                return oauth_error_response(_unavailable(exc), realm=self.realm)
            except Exception as exc:  # noqa: BLE001 - a bug must not become a leak
                _log_bug(exc)
                return JSONResponse({"error": "server_error"}, status_code=500, headers=NO_STORE)

        return endpoint

    async def _token(self, request: TokenRequest) -> Response:
        await self.runtime.keys.maybe_refresh()  # another instance may have rotated
        body = await self.runtime.token(request)
        return JSONResponse(body, headers=NO_STORE)

    async def _revoke(self, request: TokenRequest) -> Response:
        await self.runtime.revoke(request)
        return Response(status_code=200, headers=NO_STORE)

    async def _introspect(self, request: TokenRequest) -> Response:
        return JSONResponse(await self.runtime.introspect(request), headers=NO_STORE)

    async def _jwks(self) -> Response:
        try:
            await self.starter.ensure_started()
            # A key scheduled by another instance is published here before it signs.
            await self.runtime.keys.maybe_refresh()
            document = self.runtime.keys.jwks()
        except StoreUnavailable as exc:
            return oauth_error_response(store_unavailable(exc), realm=self.realm)
        except Exception as exc:  # noqa: BLE001 - a bug must not become a leak
            _log_bug(exc)
            return JSONResponse({"error": "server_error"}, status_code=500, headers=NO_STORE)
        headers = {
            "Cache-Control": self.runtime.keys.jwks_cache_control(),
            "X-Content-Type-Options": "nosniff",
        }
        return JSONResponse(document, headers=headers)

    async def _metadata(self) -> Response:
        # No ID tokens are issued yet: the document has no userinfo_endpoint,
        # id_token_signing_alg_values_supported or subject_types_supported, and
        # `/.well-known/openid-configuration` serves it for discovery by other
        # apps' resource servers (OIDCProvider), not for OpenID Connect logins.
        return JSONResponse(
            self.runtime.metadata(),
            headers={
                "Cache-Control": METADATA_CACHE_CONTROL,
                "X-Content-Type-Options": "nosniff",
            },
        )


async def _method_not_allowed() -> Response:
    error = _invalid("method_not_allowed", "Use POST", status=405)
    return JSONResponse(error.body(), status_code=405, headers={**NO_STORE, "Allow": "POST"})


def _unavailable(exc: ProviderUnavailable) -> OAuthError:
    return OAuthError(
        "temporarily_unavailable",
        "The authorization server is temporarily unavailable",
        reason=f"unavailable:{exc.reason}",
        status=503,
        retry_after=exc.retry_after or START_RETRY_COOLDOWN,
    )


def _log_bug(exc: Exception) -> None:
    # The type and where it was raised, never its message (it may hold a
    # request value, a secret, a connection URL).
    frames = exc.__traceback__
    where = "?"
    while frames is not None:
        code = frames.tb_frame.f_code
        where = f"{code.co_filename}:{frames.tb_lineno} in {code.co_name}"
        frames = frames.tb_next
    logger.error("The app's issuer failed on a request: %s at %s", type(exc).__name__, where)
