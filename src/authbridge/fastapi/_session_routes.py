"""Server-side sessions (the BFF pattern): ``/auth/*``.

- ``GET /auth/login``: the chooser for a session (``next=``: a same-origin
  path to return to; anything else is refused, see ``_return_path``).
- ``POST /auth/login``: its password form (CSRF token bound to the browser).
- ``GET /auth/login/{provider}``: log in at a provider for a session.
- ``POST /auth/logout``: end the session (CSRF), then RP-initiated logout at
  the provider when it supports it.
- ``GET /auth/session``: the session's account, identities and CSRF token (JSON).
- ``POST /auth/link/{provider}``: link another provider's identity to the
  session's account (CSRF).
- ``POST /auth/unlink``: remove one (``issuer`` and ``subject`` form fields;
  CSRF); never the last way in.

A login rotates the session: the previous session cookie's session ends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..errors import LoginError
from ..issuer import OAuthError
from ..store import UserRecord
from ._browser_login import BrowserLogin, see_other
from ._cookies import same_token
from ._issuer import read_form
from ._local_password import INVALID_CREDENTIALS, check_password
from ._pages import PasswordForm, ProviderChoice, html_page, render_chooser, with_query
from ._return_path import safe_return_path

logger = logging.getLogger("authbridge.fastapi")

PREFIX = "/auth"
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


async def finish_session(
    login: BrowserLogin,
    request: Request,
    user: UserRecord,
    *,
    provider: str | None,
    id_token: str | None,
    return_to: str,
) -> Response:
    """Open a session for ``user`` (ending the browser's previous one); 303 to ``return_to``."""
    previous = login.cookies.session(request)
    cookie, _csrf = await login.sessions.create(
        user.id, provider=provider, id_token=id_token, replacing=previous
    )
    response = see_other(return_to)
    login.cookies.set_session(response, cookie, max_age=login.settings.session_ttl)
    return response


def session_router(login: BrowserLogin) -> APIRouter:
    """The ``/auth/*`` routes of ``login``."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        return await login.guarded(request, lambda: _chooser(login, request))

    @router.post("/login")
    async def login_password(request: Request) -> Response:
        return await login.guarded(request, lambda: _password(login, request))

    @router.get("/login/{provider}")
    async def login_at(provider: str, request: Request) -> Response:
        return await login.guarded(request, lambda: _start(login, request, provider))

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        return await login.guarded(request, lambda: _logout(login, request))

    @router.get("/session")
    async def session(request: Request) -> Response:
        return await login.guarded(request, lambda: _describe(login, request))

    @router.post("/link/{provider}")
    async def link(provider: str, request: Request) -> Response:
        return await login.guarded(request, lambda: _link(login, request, provider))

    @router.post("/unlink")
    async def unlink(request: Request) -> Response:
        return await login.guarded(request, lambda: _unlink(login, request))

    return router


def _next(login: BrowserLogin, value: str | None) -> str:
    return safe_return_path(value, default=login.settings.after_login)


async def _chooser(
    login: BrowserLogin,
    request: Request,
    *,
    return_to: str | None = None,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
) -> Response:
    if return_to is None:
        nexts = request.query_params.getlist("next")
        if len(nexts) > 1:
            raise LoginError("duplicate_parameter")
        return_to = _next(login, nexts[0] if nexts else None)
    browser, new = login.browser(request)
    keep = [("next", return_to)] if return_to != login.settings.after_login else []
    password = (
        PasswordForm(
            action=f"{PREFIX}/login",
            hidden=[*keep, ("csrf_token", login.form_csrf(browser))],
            username=username,
        )
        if login.settings.local_password
        else None
    )
    choices = [
        ProviderChoice(label=runtime.display_name, href=with_query(f"{PREFIX}/login/{name}", keep))
        for name, runtime in login.logins.items()
    ]
    page = render_chooser(
        title=login.settings.title,
        static=login.static(request),
        password=password,
        providers=choices,
        error=error,
    )
    response = html_page(page, status=status_code, form_targets=login.form_targets())
    if new:
        login.cookies.set_browser(response, browser)
    return response


async def _password(login: BrowserLogin, request: Request) -> Response:
    try:
        form = await read_form(request)
    except OAuthError as exc:
        return login.error_page(request, exc.reason, status_code=exc.status)
    return_to = _next(login, form.get("next"))
    if not login.settings.local_password:
        return login.error_page(request, "password_login_disabled", status_code=404)
    browser = login.cookies.browser(request)
    if browser is None or not same_token(form.get("csrf_token"), login.form_csrf(browser)):
        logger.info("Password login refused: csrf_mismatch")
        return login.error_page(request, "csrf_mismatch", again=f"{PREFIX}/login")
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
            reason = "rate_limited" if exc.status == 429 else "unavailable"
            retry = {"Retry-After": str(int(exc.retry_after or 1))}
            return login.error_page(request, reason, status_code=exc.status, headers=retry)
        return await _chooser(
            login,
            request,
            return_to=return_to,
            error=INVALID_CREDENTIALS,
            username=username if len(username) <= 256 else "",
            status_code=400,
        )
    return await finish_session(
        login, request, user, provider=None, id_token=None, return_to=return_to
    )


def _provider(login: BrowserLogin, name: str) -> str:
    if name not in login.logins:
        raise LoginError("unknown_provider")
    return name


async def _start(login: BrowserLogin, request: Request, provider: str) -> Response:
    name = _provider(login, provider)
    nexts = request.query_params.getlist("next")
    if len(nexts) > 1:
        raise LoginError("duplicate_parameter")
    return_to = _next(login, nexts[0] if nexts else None)
    limited = await login.limit_starts(request)
    if limited is not None:
        return limited
    browser, new = login.browser(request)
    url = await login.client.start(name, browser=browser, purpose="session", return_to=return_to)
    response = see_other(url)
    if new:
        login.cookies.set_browser(response, browser)
    return response


async def _form(request: Request) -> Mapping[str, str]:
    media = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return {}
    return await read_form(request)


def _not_logged_in() -> Response:
    return JSONResponse({"detail": "Not authenticated"}, status_code=401, headers=JSON_HEADERS)


def _refused(reason: str, status_code: int = 400) -> Response:
    return JSONResponse(
        {"detail": "Refused", "reason": reason}, status_code=status_code, headers=JSON_HEADERS
    )


async def _session_for_change(
    login: BrowserLogin, request: Request
) -> tuple[str, UserRecord, Mapping[str, str]] | Response:
    """The session, account and form of an unsafe session request, after its CSRF check."""
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _refused(exc.reason, exc.status)
    found = await login.session_user(request)
    if found is None:
        return _not_logged_in()
    cookie, user = found
    await login.check_csrf(request, cookie, form=form)
    return cookie, user, form


async def _logout(login: BrowserLogin, request: Request) -> Response:
    after = login.settings.after_logout
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _refused(exc.reason, exc.status)
    cookie = login.cookies.session(request)
    found = await login.session_of(request) if cookie is not None else None
    target = after
    if found is not None:
        cookie = found[0]
        await login.check_csrf(request, cookie, form=form)
        ended = await login.sessions.end(cookie)
        target = await _provider_logout(login, cookie, ended) or after
    response = see_other(target)
    login.cookies.clear_session(response)
    return response


async def _provider_logout(login: BrowserLogin, cookie: str, ended: Any) -> str | None:
    """The provider's RP-initiated logout URL for an ended session, if it has one."""
    if ended is None or ended.provider is None:
        return None
    runtime = login.logins.get(ended.provider)
    if runtime is None or not runtime.supports_logout:
        return None
    id_token = login.sessions.id_token_hint(cookie, ended)
    return await runtime.logout_url(
        id_token_hint=id_token,
        post_logout_redirect_uri=login.origin + login.settings.after_logout,
        state=secrets.token_urlsafe(16),
    )


async def _describe(login: BrowserLogin, request: Request) -> Response:
    found = await login.session_of(request)
    if found is None:
        return _not_logged_in()
    cookie, record = found
    user = await login.endpoints.runtime.users.get(record.user_id)
    if user is None or user.disabled:
        return _not_logged_in()
    identities = await login.accounts.identities(user.id)
    principal = login.principal_of(user)
    body = {
        "user": {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "email_verified": user.email_verified,
            "scopes": sorted(principal.scopes),
        },
        "identities": [
            {
                "issuer": identity.issuer,
                "subject": identity.subject,
                "email": identity.email,
                "email_verified": identity.email_verified,
            }
            for identity in identities
        ],
        "provider": record.provider,
        "expires_at": record.expires_at,
        "csrf_token": login.sessions.csrf_token(cookie),
    }
    return JSONResponse(body, headers=JSON_HEADERS)


async def _link(login: BrowserLogin, request: Request, provider: str) -> Response:
    checked = await _session_for_change(login, request)
    if isinstance(checked, Response):
        return checked
    _cookie, user, form = checked
    name = _provider(login, provider)
    return_to = _next(login, form.get("next"))
    limited = await login.limit_starts(request)
    if limited is not None:
        return limited
    browser, new = login.browser(request)
    url = await login.client.start(
        name, browser=browser, purpose="link", return_to=return_to, link_user=user.id
    )
    response = see_other(url)
    if new:
        login.cookies.set_browser(response, browser)
    return response


async def _unlink(login: BrowserLogin, request: Request) -> Response:
    checked = await _session_for_change(login, request)
    if isinstance(checked, Response):
        return checked
    _cookie, user, form = checked
    issuer, subject = form.get("issuer"), form.get("subject")
    if not issuer or not subject:
        return _refused("issuer_and_subject_required")
    try:
        removed = await login.accounts.unlink(user.id, issuer, subject)
    except LoginError as exc:
        logger.info("Unlink refused: %s", exc.reason)
        return _refused(exc.reason)
    return JSONResponse({"unlinked": removed}, headers=JSON_HEADERS)
