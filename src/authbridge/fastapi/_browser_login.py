"""Browser login of one app: its parts, bound together, and the session principal.

`BrowserLogin` is what ``AuthBridge(login=LoginSettings(...))`` builds next
to the app's issuer: one login runtime per provider offering login, the
login client (transactions), accounts, sessions, the cookies, and the paths
of the routes. The routes themselves are in ``_login`` (the authorization
endpoint and the provider callback) and ``_session_routes`` (``/auth/*``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import RedirectResponse, Response
from starlette.requests import HTTPConnection, Request

from .._clock import Clock
from .._http import ClientSource
from ..client import LoginProvider, ProviderLogin
from ..client._accounts import AccountPolicy, Accounts
from ..client._exchange import ExchangeProvider, SubjectTokens
from ..client._flow import LoginClient
from ..client._sessions import Sessions
from ..client._settings import LoginSettings
from ..errors import (
    AuthBridgeError,
    ConfigurationError,
    LoginError,
    ProviderUnavailable,
    StoreUnavailable,
)
from ..issuer import IssuerRuntime, OAuthError, _ratelimit
from ..issuer._kek import _parse as parse_kek
from ..resource.base import Provider
from ..resource.principal import Principal
from ..store import SessionRecord, UserRecord
from ._cookies import CookieJar, form_csrf_token, new_cookie_value
from ._docs import base_path
from ._issuer import MAX_FORM_BYTES, IssuerEndpoints, endpoint_path
from ._pages import html_page, render_error
from ._refusals import retry_after

logger = logging.getLogger("authbridge.fastapi")

LOGIN_STARTS_PER_ADDRESS = 60
"""Logins at a provider one client address may start per `LOGIN_STARTS_WINDOW`."""

LOGIN_STARTS_WINDOW = 60.0
"""The window of `LOGIN_STARTS_PER_ADDRESS`, in seconds."""

STATIC_PATH = "/auth/static"
"""Where the login pages' stylesheet is served."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Methods a session may use without a CSRF token."""

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class BrowserLogin:
    """The app's browser login (see [LoginSettings][authbridge.client.LoginSettings]).

    Attributes:
        settings: The configuration.
        endpoints: The issuer's HTTP face (runtime and starter).
        logins: The login runtime of every provider offering login, by name,
            in the chooser's order.
        client: The login client (transactions at the providers).
        accounts: Provider identities → local accounts.
        sessions: Server-side sessions.
        cookies: Names and attributes of the cookies.
        callback_url: The providers' redirect URI (configuration, never ``Host``).
        origin: The issuer's origin (``scheme://host[:port]``).
    """

    def __init__(
        self,
        settings: LoginSettings,
        endpoints: IssuerEndpoints,
        providers: Sequence[Provider],
        *,
        http: ClientSource,
        clock: Clock,
        timeout: float,
        verify: Callable[[str], Awaitable[Principal]],
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        runtime = endpoints.runtime
        config = runtime.config
        self.clock = clock
        self.logins: dict[str, ProviderLogin] = {
            name: provider.bind_login(http, clock, timeout=timeout)
            for name, provider in _login_providers(providers, settings.providers).items()
        }
        issuer = urlsplit(config.issuer)
        self.origin = f"{issuer.scheme}://{issuer.netloc}"
        self.callback_url = config.endpoint("callback")
        self.authorize_url = config.endpoint("authorize")
        self.cookies = CookieJar(
            secure=issuer.scheme == "https",
            session_name=settings.session_cookie,
            same_site=settings.same_site,
        )
        store = runtime.store
        self.client = LoginClient(
            self.logins,
            store.one_time,
            clock=clock,
            callback_url=self.callback_url,
            transaction_ttl=settings.transaction_ttl,
        )
        self.accounts = Accounts(
            store.users, store.identities, clock=clock, policy=settings.accounts
        )
        self.sessions = Sessions(
            store.sessions,
            key=session_key(config.key_encryption_keys),
            clock=clock,
            ttl=settings.session_ttl,
            idle_ttl=settings.session_idle_ttl,
        )
        self.provider_origins: list[str] = []
        self.subject_tokens = SubjectTokens(verify, _exchange_providers(providers), self.accounts)

    # --- paths -------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        """Where the app serves issuer endpoint ``name`` (``authorize``, ``callback``)."""
        return endpoint_path(self.endpoints.runtime.config.endpoint(name))

    def static(self, connection: HTTPConnection) -> str:
        """The static files' path as the browser sees it (``root_path`` applied)."""
        return base_path(connection.scope.get("root_path", "")) + STATIC_PATH

    def form_targets(self) -> Iterable[str]:
        """Where login forms may lead besides this origin: the providers' authorization
        endpoints found so far (a form may answer with a redirect there)."""
        return self.provider_origins

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Find every provider's endpoints; a provider that is down is logged, not fatal."""
        origins: list[str] = []
        for name, login in self.logins.items():
            try:
                endpoints = await login.endpoints()
            except ProviderUnavailable as exc:
                logger.warning("Login at %s not ready at start-up: %s", name, exc.reason)
                continue
            origins.append(endpoints.authorization_endpoint)
        self.provider_origins = origins

    # --- browser binding ---------------------------------------------------------------------

    def browser(self, connection: HTTPConnection) -> tuple[str, bool]:
        """The browser-binding value and whether it is new (then it must be set)."""
        value = self.cookies.browser(connection)
        return (value, False) if value is not None else (new_cookie_value(), True)

    def form_csrf(self, browser: str) -> str:
        """The CSRF token of this browser's login forms."""
        return form_csrf_token(browser)

    # --- pages -------------------------------------------------------------------------------

    def error_page(
        self,
        connection: HTTPConnection,
        reason: str,
        *,
        status_code: int = 400,
        provider_error: str | None = None,
        again: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """The escaped error page of a refused or failed login."""
        response = html_page(
            render_error(
                static=self.static(connection),
                reason=reason,
                provider_error=provider_error,
                again=again,
            ),
            status=status_code,
        )
        if headers:
            response.headers.update(headers)
        return response

    async def guarded(
        self, connection: HTTPConnection, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run one route's work: a refused login is a 400 page, an outage a 503 page.

        The issuer is started first (its store may have been down at start-up).
        """
        try:
            await self.endpoints.starter.ensure_started()
            return await work()
        except StoreUnavailable as exc:
            logger.warning("Login page unavailable: store_unavailable:%s", exc.reason)
            return self.unavailable(connection, exc)
        except ProviderUnavailable as exc:
            logger.warning("Login unavailable at %s: %s", exc.provider, exc.reason)
            return self.unavailable(connection, exc)
        except LoginError as exc:
            logger.info("Login refused at %s: %s", exc.provider or "-", exc.reason)
            value = exc.detail.get("error")
            return self.error_page(
                connection, exc.reason, provider_error=value if isinstance(value, str) else None
            )

    async def limit_starts(self, connection: HTTPConnection) -> Response | None:
        """Count one login start (a stored transaction) of the client address.

        Anyone can start a login, and each start keeps a transaction for
        ``transaction_ttl``: at most `LOGIN_STARTS_PER_ADDRESS` per
        `LOGIN_STARTS_WINDOW` seconds per address (IPv6: per /64), counted in
        the store so every instance shares them. Returns the 429 page beyond
        that, else ``None``.
        """
        address = connection.client.host if connection.client else "unknown"
        try:
            await _ratelimit.count(
                self.endpoints.runtime.store.rate_limits,
                "login_start:" + _ratelimit.address_key(address),
                limit=LOGIN_STARTS_PER_ADDRESS,
                window=LOGIN_STARTS_WINDOW,
                now=self.clock(),
                reason="rate_limited_login_start",
            )
        except OAuthError as exc:
            logger.info("Login start refused: %s", exc.reason)
            return self.error_page(
                connection,
                "rate_limited",
                status_code=429,
                headers={"Retry-After": str(int(exc.retry_after or LOGIN_STARTS_WINDOW))},
            )
        return None

    def unavailable(self, connection: HTTPConnection, exc: AuthBridgeError) -> Response:
        """The 503 page, with ``Retry-After``."""
        return self.error_page(
            connection, "unavailable", status_code=503, headers={"Retry-After": retry_after(exc)}
        )

    # --- sessions as principals ----------------------------------------------------------------

    async def session_of(self, connection: HTTPConnection) -> tuple[str, SessionRecord] | None:
        """The request's live session (cookie value and record), or ``None``."""
        cookie = self.cookies.session(connection)
        if cookie is None:
            return None
        await self.endpoints.starter.ensure_started()
        record = await self.sessions.get(cookie)
        return (cookie, record) if record is not None else None

    async def session_user(self, connection: HTTPConnection) -> tuple[str, UserRecord] | None:
        """The request's session cookie and its (enabled) account, or ``None``."""
        found = await self.session_of(connection)
        if found is None:
            return None
        cookie, record = found
        user = await self.endpoints.runtime.users.get(record.user_id)
        if user is None or user.disabled:
            return None
        return cookie, user

    def principal_of(self, user: UserRecord) -> Principal:
        """The [Principal][authbridge.Principal] of a session's account.

        The shape of the app's own tokens: provider = the issuer's name,
        subject = the account id, scopes = the account's that the issuer grants.
        """
        config = self.endpoints.runtime.config
        scopes = frozenset(user.scopes) & frozenset(config.scopes)
        return Principal(
            provider=config.name,
            issuer=config.issuer,
            subject=user.id,
            scopes=scopes,
            claims={"iss": config.issuer, "sub": user.id, "scope": " ".join(sorted(scopes))},
        )

    async def session_principal(self, connection: HTTPConnection) -> Principal | None:
        """The session's principal, after the CSRF checks of an unsafe request.

        ``None`` when the request has no live session.

        Raises:
            HTTPException: 403 for an unsafe method without the session's CSRF
                token, or from another origin (a WebSocket from another origin too).
            StoreUnavailable: the store is down.
        """
        found = await self.session_user(connection)
        if found is None:
            return None
        cookie, user = found
        await self.check_csrf(connection, cookie)
        return self.principal_of(user)

    async def check_csrf(
        self, connection: HTTPConnection, cookie: str, *, form: Mapping[str, str] | None = None
    ) -> None:
        """Refuse a cross-site use of a session cookie (403).

        Every request: an ``Origin`` other than the issuer's, or ``Sec-Fetch-Site:
        cross-site``. Unsafe methods: also a missing or wrong CSRF token
        (``X-CSRF-Token`` header, or the ``csrf_token`` field of a form:
        ``form`` when the caller already read it).
        WebSockets have no CSRF token but must come from this origin.
        """
        headers = connection.headers
        origin = headers.get("origin")
        websocket = connection.scope["type"] == "websocket"
        if (origin is not None and origin != self.origin) or (websocket and origin is None):
            raise _forbidden("cross_origin")
        if headers.get("sec-fetch-site") == "cross-site":
            raise _forbidden("cross_site")
        if websocket or connection.scope.get("method", "GET") in SAFE_METHODS:
            return
        presented = headers.get(CSRF_HEADER)
        if presented is None and form is not None:
            presented = form.get(CSRF_FIELD)
        elif presented is None and isinstance(connection, Request):
            presented = await _form_field(connection, CSRF_FIELD)
        if not self.sessions.check_csrf(cookie, presented):
            raise _forbidden("csrf_mismatch")


def see_other(url: str) -> Response:
    """303 to ``url`` (a browser follows it with GET), never cached, never referred."""
    return RedirectResponse(
        url,
        status_code=status.HTTP_303_SEE_OTHER,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _forbidden(reason: str) -> HTTPException:
    logger.info("Session request refused: %s", reason)
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="CSRF check failed")


async def _form_field(request: Request, name: str) -> str | None:
    """A field of an urlencoded body (read once, cached for the endpoint), at most 16 KiB."""
    media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return None
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        return None
    body = await request.body()  # Starlette keeps it for the endpoint
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except ValueError:
        return None
    values = [value for key, value in pairs if key == name]
    return values[0] if len(values) == 1 else None


def session_key(keks: Sequence[str]) -> bytes:
    """The sessions' server key: derived from the issuer's newest key-encryption key.

    Every instance shares that key, so each opens every session; rotating it
    ends the sessions (as signing keys, it is never in the store). Without
    one (development mode), a key for this process only: sessions end when
    it stops.
    """
    if not keks:
        logger.warning(
            "Browser sessions use a key of this process only (no key-encryption key): "
            "they end at restart and are not shared with other instances"
        )
        return secrets.token_bytes(32)
    return hmac.digest(parse_kek(keks[0], 0), b"authbridge session key", hashlib.sha256)


def _exchange_providers(providers: Sequence[Provider]) -> dict[str, ExchangeProvider]:
    return {p.name: p for p in providers if isinstance(p, ExchangeProvider)}


def subject_tokens(
    runtime: IssuerRuntime,
    providers: Sequence[Provider],
    *,
    verify: Callable[[str], Awaitable[Principal]],
    clock: Clock,
) -> SubjectTokens:
    """Token exchange's subject resolution for an app without browser login (default accounts)."""
    store = runtime.store
    accounts = Accounts(store.users, store.identities, clock=clock, policy=AccountPolicy())
    return SubjectTokens(verify, _exchange_providers(providers), accounts)


def _login_providers(
    providers: Sequence[Provider], names: Sequence[str] | None
) -> dict[str, LoginProvider]:
    """The providers offering login, in order: ``names``, or every login-enabled one."""
    capable: dict[str, LoginProvider] = {
        p.name: p for p in providers if isinstance(p, LoginProvider) and bool(p.login_enabled)
    }
    if names is None:
        return capable
    chosen: dict[str, LoginProvider] = {}
    for name in names:
        provider = capable.get(name)
        if provider is None:
            known = any(p.name == name for p in providers)
            raise ConfigurationError(
                "login_not_configured" if known else "unknown_provider",
                provider=name,
                message=(
                    f"LoginSettings(providers=...) names {name!r}, "
                    + (
                        "which has no login client id configured"
                        if known
                        else "which is not a provider of this AuthBridge"
                    )
                ),
            )
        chosen[name] = provider
    return chosen


def bind_login(
    settings: LoginSettings | None,
    endpoints: IssuerEndpoints | None,
    providers: Sequence[Provider],
    *,
    http: ClientSource,
    clock: Clock,
    timeout: float,
    verify: Callable[[str], Awaitable[Principal]],
) -> BrowserLogin | None:
    """The browser login of an `AuthBridge` (``None`` without ``login=``), and token
    exchange's subject resolution set on its issuer either way.

    Raises:
        ConfigurationError: ``login=`` without an issuer, or naming a provider
            that cannot log people in.
    """
    if endpoints is None:
        if settings is not None:
            raise ConfigurationError(
                "login_needs_an_issuer",
                message="AuthBridge(login=...) needs issuer=AppIssuer(...): logins end "
                "in the app's own tokens or sessions, kept in its store",
            )
        return None
    runtime = endpoints.runtime
    if settings is None:
        runtime.subject_tokens = subject_tokens(runtime, providers, verify=verify, clock=clock)
        return None
    login = BrowserLogin(
        settings, endpoints, providers, http=http, clock=clock, timeout=timeout, verify=verify
    )
    runtime.subject_tokens = login.subject_tokens
    return login


def install_login(app: FastAPI, login: BrowserLogin) -> None:
    """Add the login routes to ``app`` (see ``_login`` and ``_session_routes``)."""
    from ._login import login_router  # noqa: PLC0415 - these modules import this one
    from ._pages import static_router  # noqa: PLC0415 - these modules import this one
    from ._session_routes import session_router  # noqa: PLC0415 - these modules import this one

    app.include_router(static_router(STATIC_PATH))
    app.include_router(login_router(login))
    app.include_router(session_router(login))
