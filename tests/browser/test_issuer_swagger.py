"""Swagger UI's "Authorize" against the app's own issuer, in a real browser.

Headless Debian Chromium (Playwright) opens the packaged Swagger UI of an app
whose [AppIssuer] keeps its users and clients in a SQLite file. The password
box (client id prefilled with the built-in ``swagger-ui`` client) logs in a
local user, the client-credentials box a registered machine client; each then
calls a protected route with the token it got. All under the page's
Content-Security-Policy, with no violation reported.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from fastapi import FastAPI, Security

from authbridge import AppIssuer, AuthBridge, Principal
from authbridge.issuer._passwords import hash_password
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, UserRecord, open_store

from .chromium import REQUIRE_BROWSER, browser_missing
from .conftest import SERVER_START_TIMEOUT, SERVER_STOP_TIMEOUT

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from .conftest import BrowserLog

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

ITEMS_OPERATION = "#operations-default-items_items_get"
SCOPES = {"items:read": "Read items", "items:write": "Change items"}
USERNAME = "alice"
PASSWORD = "correct horse battery staple"
MACHINE = "robot"


def build_api(issuer: str, store: str) -> FastAPI:
    """GET /items (``items:read``); the app's own issuer is the only source of tokens."""
    auth = AuthBridge([], issuer=AppIssuer(issuer, store=store, scopes=SCOPES))
    app = FastAPI(title="Items", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict[str, Any]:
        return {
            "provider": user.provider,
            "subject": user.subject,
            "client_id": user.client_id,
            "scopes": sorted(user.scopes),
        }

    auth.install(app)
    return app


async def _populate(store_url: str, secret: str) -> None:
    store = open_store(store_url)
    await store.start()  # creates the schema
    try:
        await store.users.add(
            UserRecord(
                id="user-alice",
                username=USERNAME,
                password_hash=hash_password(PASSWORD),
                scopes=frozenset({"items:read"}),
            )
        )
        await store.clients.add(
            ClientRecord(
                client_id=MACHINE,
                name="Robot",
                auth_method="client_secret_basic",
                secret_hash=hash_secret(secret, "client_secret"),
                grant_types=frozenset({"client_credentials"}),
                scopes=frozenset({"items:read"}),
            )
        )
    finally:
        await store.aclose()


class Served:
    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.machine_secret = secret


@pytest.fixture(scope="module")
def issuer_api(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API served by uvicorn in a thread, on a SQLite store with a user and a machine."""
    store_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('issuer') / 'authbridge.db'}"
    secret = new_secret(CLIENT_SECRET_PREFIX)
    asyncio.run(_populate(store_url, secret))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        origin = f"http://{host}:{port}"
        app = build_api(origin, store_url)
        config = uvicorn.Config(
            app, lifespan="on", ws="none", log_level="warning", access_log=False
        )
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
                pytest.fail(f"uvicorn did not start the API within {SERVER_START_TIMEOUT:.0f} s")
            yield Served(origin, secret)
        finally:
            server.should_exit = True
            thread.join(SERVER_STOP_TIMEOUT)


def open_docs(page: Page, api_url: str) -> Locator:
    page.goto(f"{api_url}/docs")
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


def authorize(page: Page, box: Locator, token_url: str) -> dict[str, Any]:
    """Click the box's Authorize; the token endpoint's JSON answer (checked to be a 200)."""
    with page.expect_response(lambda r: r.url.split("?")[0] == token_url) as answered:
        box.locator("button.authorize").click()
    assert answered.value.status == 200, answered.value.text()
    box.locator("button", has_text="Logout").wait_for()
    body: dict[str, Any] = answered.value.json()
    return body


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


def test_password_box_logs_in_a_local_user(
    page: Page, issuer_api: Served, browser_log: BrowserLog
) -> None:
    operation = open_docs(page, issuer_api.url)
    open_authorize_dialog(page)
    box = auth_container(page, "AppPassword")
    assert box.locator("input[data-name=clientId]").input_value() == "swagger-ui"
    box.locator("input[data-name=username]").fill(USERNAME)
    box.locator("input[data-name=password]").fill(PASSWORD)
    token = authorize(page, box, f"{issuer_api.url}/oauth/token")
    assert token["token_type"] == "Bearer"
    assert token["refresh_token"].startswith("abrt_")
    close_authorize_dialog(page)

    authorization, body = try_it_out(page, operation, f"{issuer_api.url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body == {
        "provider": "app",
        "subject": "user-alice",
        "client_id": "swagger-ui",
        "scopes": ["items:read"],
    }
    assert browser_log.csp_violations == []
    assert browser_log.page_errors == []


def test_client_credentials_box_logs_in_a_machine(
    page: Page, issuer_api: Served, browser_log: BrowserLog
) -> None:
    operation = open_docs(page, issuer_api.url)
    open_authorize_dialog(page)
    box = auth_container(page, "AppClientCredentials")
    box.locator("input[data-name=clientId]").fill(MACHINE)
    box.locator("input[data-name=clientSecret]").fill(issuer_api.machine_secret)
    token = authorize(page, box, f"{issuer_api.url}/oauth/token")
    assert "refresh_token" not in token
    close_authorize_dialog(page)

    authorization, body = try_it_out(page, operation, f"{issuer_api.url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body["subject"] == MACHINE
    assert body["client_id"] == MACHINE
    assert browser_log.csp_violations == []
    assert browser_log.page_errors == []


def test_a_wrong_password_is_shown_and_nothing_authorized(
    page: Page, issuer_api: Served, browser_log: BrowserLog
) -> None:
    open_docs(page, issuer_api.url)
    open_authorize_dialog(page)
    box = auth_container(page, "AppPassword")
    box.locator("input[data-name=username]").fill(USERNAME)
    box.locator("input[data-name=password]").fill("wrong")
    token_url = f"{issuer_api.url}/oauth/token"
    with page.expect_response(lambda r: r.url.split("?")[0] == token_url) as answered:
        box.locator("button.authorize").click()
    assert answered.value.status == 400
    assert answered.value.json()["error"] == "invalid_grant"
    box.locator(".errors").wait_for()
    assert box.locator("button", has_text="Logout").count() == 0
    assert browser_log.csp_violations == []
