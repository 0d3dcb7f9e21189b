"""Small apps with browser login for the login tests, served by uvicorn on 127.0.0.1.

* `loopback_socket`: a bound socket, so an app's origin (its issuer URL, its callback URL)
  is known before the app and its providers are configured.
* `build_login_app`: an app whose own issuer ([AppIssuer]) logs people in (the local
  password and the given providers), with:
  ``GET /items`` (``items:read``: the caller's principal as JSON), ``GET /page`` (a
  server-rendered page naming the session's user, with a CSRF-protected form posting to
  ``POST /notes`` and a logout form) and ``GET /`` (a plain landing page).
* `populate`: the store's schema and local users with passwords.
* `served`: the app served by uvicorn in a thread on that socket, stopped at the end.
* `browser_context`: a fresh Chromium context (optionally with JavaScript off) whose CSP
  violations and uncaught script errors are collected, like the ``page`` fixture's.
* `jwt_claims`, `assert_no_violation` and the Swagger UI helpers the tests share.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from fastapi import FastAPI, Request, Security
from fastapi.responses import HTMLResponse

from authbridge import AppIssuer, AuthBridge, LoginSettings, Principal
from authbridge.client import AccountPolicy
from authbridge.issuer._passwords import hash_password
from authbridge.resource.base import Provider
from authbridge.store import UserRecord, open_store

from .chromium import CHROMIUM_ARGS
from .conftest import ACTION_TIMEOUT_MS, SERVER_START_TIMEOUT, SERVER_STOP_TIMEOUT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

SCOPES = {"items:read": "Read items", "items:write": "Change items"}
ITEMS_OPERATION = "#operations-default-items_items_get"
NEW_ACCOUNT_SCOPES = frozenset({"items:read", "items:write"})


@dataclass(frozen=True)
class LocalUser:
    """A user of the app's store who logs in with a password."""

    id: str
    username: str
    password: str
    scopes: frozenset[str] = NEW_ACCOUNT_SCOPES


@contextlib.contextmanager
def loopback_socket() -> Iterator[tuple[socket.socket, str]]:
    """A socket bound to a free port of 127.0.0.1 and its origin (``http://127.0.0.1:PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        yield sock, f"http://{host}:{port}"


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'authbridge.db'}"


async def _populate(store_url: str, users: Sequence[LocalUser]) -> None:
    store = open_store(store_url)
    await store.start()  # creates the schema
    try:
        for user in users:
            await store.users.add(
                UserRecord(
                    id=user.id,
                    username=user.username,
                    password_hash=hash_password(user.password),
                    scopes=user.scopes,
                )
            )
    finally:
        await store.aclose()


def populate(store_url: str, users: Sequence[LocalUser] = ()) -> None:
    """Create the store's schema and add ``users``."""
    asyncio.run(_populate(store_url, users))


def _page(title: str, body: str) -> HTMLResponse:
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(text, headers={"Cache-Control": "no-store"})


def build_login_app(
    origin: str,
    store_url: str,
    providers: Sequence[Provider] = (),
    *,
    settings: LoginSettings | None = None,
) -> tuple[FastAPI, AuthBridge]:
    """The app under test: its issuer at ``origin``, login at every login-enabled provider."""
    login = settings or LoginSettings(accounts=AccountPolicy(default_scopes=NEW_ACCOUNT_SCOPES))
    auth = AuthBridge(
        list(providers),
        issuer=AppIssuer(origin, store=store_url, scopes=SCOPES),
        login=login,
    )
    app = FastAPI(title="Items", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict[str, Any]:
        return {
            "provider": user.provider,
            "issuer": user.issuer,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
        }

    @app.get("/", include_in_schema=False)
    async def home() -> HTMLResponse:
        return _page("Home", '<h1 id="home">Home</h1>')

    @app.get("/page", include_in_schema=False)
    async def page(
        request: Request, user: Principal | None = Security(auth.optional_principal)
    ) -> HTMLResponse:
        if user is None:
            body = '<p id="anonymous"><a href="/auth/login?next=/page">Log in</a></p>'
            return _page("Page", body)
        csrf = _csrf_token(auth, request)
        account = await _account(auth, user.subject)
        name = html.escape(account.username if account is not None else user.subject)
        token = html.escape(csrf, quote=True)
        body = (
            f'<p id="user">Logged in as <span id="username">{name}</span>'
            f' (<span id="subject">{html.escape(user.subject)}</span>)</p>\n'
            '<form id="note" method="post" action="/notes">\n'
            f'<input type="hidden" name="csrf_token" value="{token}">\n'
            '<input type="text" name="text" id="note-text">\n'
            '<button type="submit" id="note-submit">Save</button>\n</form>\n'
            '<form id="note-forged" method="post" action="/notes">\n'
            '<input type="text" name="text" id="forged-text">\n'
            '<button type="submit" id="forged-submit">Save without token</button>\n</form>\n'
            '<form id="logout" method="post" action="/auth/logout">\n'
            f'<input type="hidden" name="csrf_token" value="{token}">\n'
            '<button type="submit" id="logout-submit">Log out</button>\n</form>'
        )
        return _page("Page", body)

    @app.post("/notes", include_in_schema=False)
    async def notes(
        request: Request,
        user: Principal = Security(auth.principal, scopes=["items:write"]),
    ) -> HTMLResponse:
        text = parse_qs((await request.body()).decode()).get("text", [""])[0]
        body = (
            f'<p id="saved">Saved <span id="saved-text">{html.escape(text)}</span>'
            f' for <span id="saved-by">{html.escape(user.subject)}</span></p>'
        )
        return _page("Saved", body)

    auth.install(app)
    return app, auth


def _csrf_token(auth: AuthBridge, request: Request) -> str:
    """The session's CSRF token, for a form of a server-rendered page."""
    login = auth.browser_login
    assert login is not None
    cookie = login.cookies.session(request)
    assert cookie is not None
    return login.sessions.csrf_token(cookie)


async def _account(auth: AuthBridge, user_id: str) -> UserRecord | None:
    runtime = auth.issuer
    assert runtime is not None
    return await runtime.users.get(user_id)


@contextlib.contextmanager
def served(app: FastAPI, sock: socket.socket) -> Iterator[None]:
    """Serve ``app`` with uvicorn in a thread on ``sock`` (lifespan on) inside the block."""
    config = uvicorn.Config(app, lifespan="on", ws="none", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)  # uvicorn exposes a flag, not an event, for "listening"
        if not server.started:
            pytest.fail(f"uvicorn did not start the app within {SERVER_START_TIMEOUT:.0f} s")
        yield
    finally:
        server.should_exit = True
        thread.join(SERVER_STOP_TIMEOUT)


# -- the browser -----------------------------------------------------------------------------

# As the ``page`` fixture: every CSP violation becomes a console message.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`);
});
"""
_VIOLATION = "CSP violation: "
# Chromium's own console line for a violation (seen even where no script runs).
_REFUSED = re.compile(r"^Refused to ")


@dataclass
class ContextLog:
    """What went wrong in the pages of one browser context."""

    csp_violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def chromium(chromium_path: Path) -> Iterator[Browser]:
    """Headless Chromium (one process) for tests that need several fresh profiles."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only with the package

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


def open_context(browser: Browser, *, javascript: bool = True) -> tuple[BrowserContext, ContextLog]:
    """A fresh profile of ``browser``; its pages' CSP violations and script errors."""
    log = ContextLog()
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1280, "height": 1000}
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.add_init_script(_REPORT_CSP_VIOLATIONS)

    def on_console(message: Any) -> None:
        if message.text.startswith(_VIOLATION) or _REFUSED.match(message.text):
            log.csp_violations.append(message.text)

    context.on("console", on_console)
    context.on("weberror", lambda error: log.page_errors.append(str(error.error)))
    return context, log


@contextlib.contextmanager
def browser_context(
    chromium_path: Path, *, javascript: bool = True
) -> Iterator[tuple[BrowserContext, ContextLog]]:
    """A fresh profile in headless Chromium (optionally with JavaScript off)."""
    with chromium(chromium_path) as browser:
        context, log = open_context(browser, javascript=javascript)
        try:
            yield context, log
        finally:
            context.close()


def assert_clean(csp_violations: Sequence[str], page_errors: Sequence[str]) -> None:
    assert list(csp_violations) == []
    assert list(page_errors) == []


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS (not verified: the API verified it)."""
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    claims: dict[str, Any] = json.loads(raw)
    return claims


# -- Swagger UI ------------------------------------------------------------------------------


def open_docs(page: Page, url: str) -> Locator:
    """Load Swagger UI; the GET /items operation once the OpenAPI document is rendered."""
    page.goto(f"{url}/docs")
    operation = page.locator(ITEMS_OPERATION)
    operation.wait_for()
    return operation


def auth_container(page: Page, scheme: str) -> Locator:
    """The Authorize dialog's section for one scheme (its heading: name, then "(type, ...)")."""
    title = re.compile(rf"^\s*{re.escape(scheme)}\s*\(")
    return page.locator(".auth-container", has=page.locator("h4", has_text=title))


def open_authorize_dialog(page: Page) -> None:
    page.locator(".auth-wrapper button.authorize").click()
    page.locator(".dialog-ux .modal-ux").wait_for()


def close_authorize_dialog(page: Page) -> None:
    page.locator(".dialog-ux .modal-ux-header button.close-modal").click()
    page.locator(".dialog-ux .modal-ux").wait_for(state="detached")


def choose_scopes(box: Locator, scopes: Sequence[str]) -> None:
    """Tick ``scopes`` in an OAuth box of the Authorize dialog."""
    for scope in scopes:
        box.locator(f"label[for^='{scope}-']").click()


def try_it_out(page: Page, operation: Locator, url: str) -> tuple[str | None, dict[str, Any]]:
    """Expand the operation, "Try it out", "Execute": the Authorization sent, the JSON shown."""
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    with page.expect_request(url) as sent:
        operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table .response").first
    status = response.locator(".response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = response.locator(".response-col_description pre").first.inner_text()
    return sent.value.headers.get("authorization"), json.loads(body)
