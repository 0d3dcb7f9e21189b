"""The app's authorization endpoint and the providers' callback.

- ``GET {prefix}/authorize``: the authorization request of one of the app's
  clients (authorization code + PKCE S256). A request that names no valid
  client or redirect URI gets an escaped 400 page, never a redirect; other
  errors go back to the client's registered redirect URI. ``idp=<name>``
  goes straight to that provider; otherwise the login chooser: the password
  form and one link per provider.
- ``POST {prefix}/authorize``: the chooser's password form (CSRF token bound
  to the browser cookie), then 303 to the client with a code.
- ``GET|POST {prefix}/callback``: a provider's answer. A POST (``form_post``)
  is kept in the store for a minute under a random id and answered with 303
  to the GET naming only that id, so that the ``SameSite=Lax`` browser cookie
  comes along while the code and what the provider posted (Apple's ``user``:
  a name and an address) stay out of URLs and access logs; such posts are
  counted per client address. The GET finishes the login
  (``LoginClient.finish``: state, browser binding, ``iss``, code, identity)
  and continues by the transaction's purpose: the client's code, a session,
  or a new link.

A refused callback is a 400 page naming the reason code; nothing is created
and the transaction is consumed. A store or provider that is down is a 503
page. No page, redirect or log line carries a code, token, verifier or cookie.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import URL

from ..errors import LoginError
from ..issuer import OAuthError, _ratelimit
from ..issuer._authorize import (
    AuthorizeError,
    AuthorizeRequest,
    complete,
    error_redirect,
    parse_authorize,
)
from ._browser_login import BrowserLogin, see_other
from ._cookies import same_token
from ._issuer import read_form
from ._local_password import INVALID_CREDENTIALS, check_password
from ._pages import PasswordForm, ProviderChoice, html_page, render_chooser, with_query
from ._session_routes import finish_session

logger = logging.getLogger("authbridge.fastapi")

FORM_FIELDS = frozenset({"username", "password", "csrf_token"})
"""Fields of the chooser's form that are not authorization parameters."""

FEDERATED_AMR = "fed"
"""``amr`` of a login at a provider (the local password is ``pwd``)."""


def login_router(login: BrowserLogin) -> APIRouter:
    """The authorization endpoint and the callback of ``login``."""
    router = APIRouter(include_in_schema=False)
    authorize, callback = login.path("authorize"), login.path("callback")

    @router.get(authorize)
    async def authorize_get(request: Request) -> Response:
        return await login.guarded(request, lambda: _authorize(login, request))

    @router.post(authorize)
    async def authorize_post(request: Request) -> Response:
        return await login.guarded(request, lambda: _password(login, request))

    @router.get(callback)
    async def callback_get(request: Request) -> Response:
        return await login.guarded(request, lambda: _callback(login, request))

    @router.post(callback)
    async def callback_post(request: Request) -> Response:
        # form_post (Apple): the browser cookie is not sent on a cross-site POST
        # with SameSite=Lax; the GET that follows this redirect carries it.
        try:
            form = await read_form(request)
        except OAuthError as exc:
            return login.error_page(request, exc.reason, status_code=exc.status)
        return await login.guarded(request, lambda: _stash_form_post(login, request, form))

    return router


FORM_POST_KIND = "form_post"
"""Kind of the store's one-time values holding a posted callback until its GET."""

FORM_POST_TTL = 60.0
"""Seconds a posted callback waits for the browser's GET."""

FORM_POST_PER_ADDRESS = 30
"""Posted callbacks kept per client address (IPv6: per /64) per `FORM_POST_TTL`."""


async def _stash_form_post(login: BrowserLogin, request: Request, form: dict[str, str]) -> Response:
    runtime = login.endpoints.runtime
    now = login.clock()
    address = request.client.host if request.client else "unknown"
    try:
        await _ratelimit.count(
            runtime.store.rate_limits,
            "form_post:" + _ratelimit.address_key(address),
            limit=FORM_POST_PER_ADDRESS,
            window=FORM_POST_TTL,
            now=now,
            reason="rate_limited_form_post",
        )
    except OAuthError as exc:
        logger.info("Posted callback refused: %s", exc.reason)
        return login.error_page(
            request,
            "rate_limited",
            status_code=429,
            headers={"Retry-After": str(int(exc.retry_after or FORM_POST_TTL))},
        )
    reference = secrets.token_urlsafe(32)
    value = json.dumps(list(form.items()), separators=(",", ":")).encode("utf-8")
    await runtime.store.one_time.put(
        FORM_POST_KIND, _form_post_key(reference), value, expires_at=now + FORM_POST_TTL
    )
    return see_other(with_query(login.path("callback"), [("form_post", reference)]))


def _form_post_key(reference: str) -> str:
    return hashlib.sha256(b"authbridge form_post\x00" + reference.encode("ascii")).hexdigest()


async def _callback_params(login: BrowserLogin, request: Request) -> list[tuple[str, str]]:
    """The callback's parameters: the query, or the posted ones its ``form_post`` id names."""
    params = _query(request)
    references = [v for k, v in params if k == "form_post"]
    if not references:
        return params
    reference = references[0]
    if len(params) != 1 or not (0 < len(reference) <= 64 and reference.isascii()):
        raise LoginError("duplicate_parameter")
    stored = await login.endpoints.runtime.store.one_time.take(
        FORM_POST_KIND, _form_post_key(reference), now=login.clock()
    )
    if stored is None:
        raise LoginError("state_unknown")
    return [(str(k), str(v)) for k, v in json.loads(stored)]


def _query(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def _parse(
    login: BrowserLogin, request: Request, params: Sequence[tuple[str, str]]
) -> AuthorizeRequest | Response:
    """The authorization request, or the answer refusing it (page or redirect)."""
    try:
        return await parse_authorize(login.endpoints.runtime, params)
    except AuthorizeError as exc:
        logger.info("Authorization request refused: %s", exc.error)
        if exc.redirect is None:
            return login.error_page(request, f"authorize:{exc.error}")
        return see_other(exc.redirect)


async def _authorize(login: BrowserLogin, request: Request) -> Response:
    params = _query(request)
    parsed = await _parse(login, request, params)
    if isinstance(parsed, Response):
        return parsed
    browser, new = login.browser(request)
    if parsed.idp is not None:
        response = await _to_provider(login, request, parsed, browser)
    else:
        response = await _chooser(login, request, parsed, params, browser)
    if new:
        login.cookies.set_browser(response, browser)
    return response


async def _to_provider(
    login: BrowserLogin, request: Request, parsed: AuthorizeRequest, browser: str
) -> Response:
    name = parsed.idp or ""
    if name not in login.logins:
        return login.error_page(request, "unknown_provider")
    limited = await login.limit_starts(request)
    if limited is not None:
        return limited
    url = await login.client.start(
        name,
        browser=browser,
        purpose="authorize",
        authorize=parsed.to_dict(),
        prompt=parsed.prompt,
        login_hint=parsed.login_hint,
    )
    return see_other(url)


async def _chooser(
    login: BrowserLogin,
    request: Request,
    parsed: AuthorizeRequest,
    params: Sequence[tuple[str, str]],
    browser: str,
    *,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> Response:
    kept = [(k, v) for k, v in params if k not in FORM_FIELDS and k != "idp"]
    authorize = login.path("authorize")
    password = (
        PasswordForm(
            action=authorize,
            hidden=[*kept, ("csrf_token", login.form_csrf(browser))],
            username=username,
        )
        if login.settings.local_password
        else None
    )
    choices = [
        ProviderChoice(
            label=runtime.display_name, href=with_query(authorize, [*kept, ("idp", name)])
        )
        for name, runtime in login.logins.items()
    ]
    client = await login.endpoints.runtime.client(parsed.client_id)
    page = render_chooser(
        title=login.settings.title,
        static=login.static(request),
        password=password,
        providers=choices,
        client_name=(client.name or client.client_id) if client is not None else None,
        error=error,
    )
    return html_page(
        page, status=status_code, form_targets=[parsed.redirect_uri, *login.form_targets()]
    )


async def _password(login: BrowserLogin, request: Request) -> Response:
    try:
        form = await read_form(request)
    except OAuthError as exc:
        return login.error_page(request, exc.reason, status_code=exc.status)
    params = [(k, v) for k, v in form.items() if k not in FORM_FIELDS]
    parsed = await _parse(login, request, params)
    if isinstance(parsed, Response):
        return parsed
    if not login.settings.local_password:
        return login.error_page(request, "password_login_disabled", status_code=404)
    browser = login.cookies.browser(request)
    if browser is None or not same_token(form.get("csrf_token"), login.form_csrf(browser)):
        logger.info("Password login refused: csrf_mismatch")
        return login.error_page(request, "csrf_mismatch", again=_again(request, params))
    username = form.get("username", "")
    try:
        user = await check_password(
            login.endpoints.runtime,
            username,
            form.get("password", ""),
            client_address=request.client.host if request.client else None,
        )
    except OAuthError as exc:
        if exc.status != 400:
            return _limited_page(login, request, exc)
        return await _chooser(
            login,
            request,
            parsed,
            params,
            browser,
            error=INVALID_CREDENTIALS,
            username=username if len(username) <= 256 else "",
            status_code=400,
        )
    url = await complete(login.endpoints.runtime, parsed, user, auth_time=login.clock(), amr="pwd")
    return see_other(url)


def _limited_page(login: BrowserLogin, request: Request, exc: OAuthError) -> Response:
    headers = {"Retry-After": str(int(exc.retry_after or 1))} if exc.retry_after else None
    reason = "rate_limited" if exc.status == 429 else "unavailable"
    return login.error_page(request, reason, status_code=exc.status, headers=headers)


def _again(request: Request, params: Sequence[tuple[str, str]]) -> str:
    return with_query(URL(scope=request.scope).path, list(params))


async def _callback(login: BrowserLogin, request: Request) -> Response:
    browser = login.cookies.browser(request)
    outcome = await login.client.finish(await _callback_params(login, request), browser=browser)
    transaction, identity = outcome.transaction, outcome.identity
    purpose = transaction.purpose
    if purpose == "authorize":
        try:
            parsed = AuthorizeRequest.from_dict(transaction.authorize or {})
        except ValueError:
            raise LoginError("state_unknown") from None
        try:
            user = await login.accounts.resolve(identity)
        except LoginError as exc:
            # The person logged in, but no account of this app may: the client hears
            # access_denied (RFC 6749 §4.1.2.1), the log says why.
            logger.info("Authorization denied: %s", exc.reason)
            return see_other(error_redirect(parsed, "access_denied", "The account may not log in"))
        try:
            url = await complete(
                login.endpoints.runtime,
                parsed,
                user,
                auth_time=login.clock(),
                amr=FEDERATED_AMR,
            )
        except AuthorizeError as exc:
            # The client changed since the login started (disabled, redirect removed).
            logger.info("Authorization not completed: %s", exc.error)
            if exc.redirect is None:
                return login.error_page(request, f"authorize:{exc.error}")
            return see_other(exc.redirect)
        return see_other(url)
    if purpose == "session":
        user = await login.accounts.resolve(identity)
        return await finish_session(
            login,
            request,
            user,
            provider=identity.provider,
            id_token=identity.id_token,
            return_to=transaction.return_to or login.settings.after_login,
        )
    if purpose == "link":
        return await _link(login, request, transaction.link_user, identity, transaction.return_to)
    raise LoginError("state_unknown")


async def _link(
    login: BrowserLogin,
    request: Request,
    user_id: str | None,
    identity: Any,
    return_to: str | None,
) -> Response:
    # The browser must still be logged in as the account that asked for the link.
    found = await login.session_user(request)
    if user_id is None or found is None or found[1].id != user_id:
        raise LoginError("session_required")
    await login.accounts.link(user_id, identity)
    return see_other(return_to or login.settings.after_login)
