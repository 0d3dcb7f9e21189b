"""Fixtures driving the packaged Swagger UI in a real browser against a real OpenID Provider.

* ``chromium_path`` (session): ``/usr/bin/chromium``; skips (or, with
  ``AUTHBRIDGE_REQUIRE_BROWSER=1``, fails) when Chromium or Playwright is missing.
* ``swagger_op`` (module): ``oidc-provider`` whose Swagger client may call its token endpoint
  from the API's origin (CORS).
* ``api_url`` (module): the API (:func:`build_api`) served by uvicorn on 127.0.0.1 in a thread.
* ``api_url`` also serves the API under ``/tenants/{tenant}`` (a templated mount: the tenant
  segment, chosen by whoever writes the URL, becomes the ``root_path``).
* ``page`` (function): a page in a fresh Chromium profile; when the test fails, every open page
  is screenshotted into the test's ``tmp_path`` (the paths are printed with the report).
* ``browser_log`` (function): Content-Security-Policy violations and uncaught script errors of
  every page of that profile (pop-ups included), for tests to assert there are none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.routing import Mount

from authbridge import AuthBridge, OIDCProvider, Principal, SwaggerLogin
from interop.op import (
    JWT_RESOURCE,
    SWAGGER_CLIENT_ID,
    OidcProvider,
    default_config,
    ensure_oidc_provider_installed,
)

from .chromium import CHROMIUM, CHROMIUM_ARGS, REQUIRE_BROWSER, browser_missing

if TYPE_CHECKING:
    from playwright.sync_api import Page

SERVER_START_TIMEOUT = 10.0
SERVER_STOP_TIMEOUT = 10.0
ACTION_TIMEOUT_MS = 10_000

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the ``page`` fixture can tell a failed test."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="module", autouse=True)
def _cheap_password_hashing(cheap_password_hashing: None) -> None:
    """Logins in a browser are tested here, not hashing: cheap argon2id (tests/conftest.py)."""


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    missing = browser_missing()
    if missing is not None:
        message = f"browser tests need Chromium and Playwright: {missing}"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"browser tests need Node.js ({', '.join(missing)} not on PATH)"
        if REQUIRE_BROWSER or os.environ.get("AUTHBRIDGE_REQUIRE_INTEROP") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def api_socket() -> Iterator[socket.socket]:
    """The API's socket, bound before the provider starts so it can allow the API's origin."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture(scope="module")
def api_origin(api_socket: socket.socket) -> str:
    host, port = api_socket.getsockname()
    return f"http://{host}:{port}"


@pytest.fixture(scope="module")
def swagger_op(api_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The real provider; Swagger UI on ``api_origin`` may post to its token endpoint."""
    _require_node()
    install_dir = ensure_oidc_provider_installed()
    config = default_config().with_cors_origin(SWAGGER_CLIENT_ID, api_origin)
    with OidcProvider(tmp_path_factory.mktemp("swagger-op"), install_dir=install_dir) as op:
        op.start(config)
        yield op


def build_api(op: OidcProvider, resource: str) -> FastAPI:
    """The API under test: GET /items (``items:read``), Swagger UI logging in at ``op``."""
    auth = AuthBridge(
        providers=[OIDCProvider("op", issuer=op.issuer, audience=JWT_RESOURCE)],
        swagger_login=SwaggerLogin(
            "op",
            client_id=SWAGGER_CLIENT_ID,
            scopes=["openid", "items:read"],
            extra_params={"resource": JWT_RESOURCE},
        ),
        resource=resource,
    )
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


def serve_with_tenants(api: FastAPI) -> Starlette:
    """``api`` at ``/`` and under the templated mount ``/tenants/{tenant}``, one lifespan."""
    return Starlette(
        routes=[Mount("/tenants/{tenant}", app=api), Mount("/", app=api)],
        lifespan=api.router.lifespan_context,
    )


@pytest.fixture(scope="module")
def api_url(swagger_op: OidcProvider, api_socket: socket.socket, api_origin: str) -> Iterator[str]:
    """The API served by uvicorn in a thread; its lifespan runs discovery at the provider."""
    app = serve_with_tenants(build_api(swagger_op, resource=api_origin))
    config = uvicorn.Config(app, lifespan="on", ws="none", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [api_socket]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)  # uvicorn exposes a flag, not an event, for "listening"
        if not server.started:
            pytest.fail(f"uvicorn did not start the API within {SERVER_START_TIMEOUT:.0f} s")
        yield api_origin
    finally:
        server.should_exit = True
        thread.join(SERVER_STOP_TIMEOUT)


# Reports every CSP violation of a page as a console message (Chromium's own
# "Refused to ..." messages are not console API calls, so Playwright does not see them).
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`);
});
"""
_VIOLATION = "CSP violation: "


@dataclass
class BrowserLog:
    """What went wrong in the pages of one browser profile."""

    csp_violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(
    chromium_path: Path, tmp_path: Path, request: pytest.FixtureRequest, browser_log: BrowserLog
) -> Iterator[Page]:
    """A page in a fresh Chromium profile under ``tmp_path``; screenshots on failure."""
    # Imported here: without the package the tests are skipped (or failed) by chromium_path.
    from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=chromium_path,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1280, "height": 1000},
        )
        context.add_init_script(_REPORT_CSP_VIOLATIONS)
        context.on(
            "console",
            lambda message: (
                browser_log.csp_violations.append(message.text)
                if message.text.startswith(_VIOLATION)
                else None
            ),
        )
        context.on("weberror", lambda error: browser_log.page_errors.append(str(error.error)))
        try:
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            yield context.pages[0] if context.pages else context.new_page()
            reports = request.node.stash.get(_REPORTS, {})
            if any(report.failed for report in reports.values()):
                for number, open_page in enumerate(context.pages):
                    path = tmp_path / f"failure-{number}.png"
                    with contextlib.suppress(PlaywrightError):
                        open_page.screenshot(path=path, full_page=True)
                        print(f"screenshot of {open_page.url}: {path}")
        finally:
            context.close()
