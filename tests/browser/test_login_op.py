"""Browser login with the real OpenID Provider ``oidc-provider`` (npm) as the app's upstream.

The app's [OIDCProvider] has a confidential login client (``client_id``/``client_secret``,
``client_secret_basic``) registered at the provider with the app's ``/oauth/callback`` and a
post-logout redirect URI. In headless Chromium:

* Swagger UI's ``AppLogin`` box → the app's chooser → the provider's own login and consent
  pages, filled in the browser → ``/oauth/callback`` → Swagger UI holds the app's token →
  "Try it out" with it; no CSP violation on Swagger UI or the chooser.
* A session login of a server-rendered page at the provider, a CSRF-protected POST, then
  logout: the session ends here, and RP-initiated logout reaches the provider's
  ``end_session_endpoint`` with the ID token as hint, whose confirmation returns the browser
  to the app; the provider then asks for the password again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from authbridge import OIDCProvider
from interop.op import JWT_RESOURCE, OidcProvider, default_config, ensure_oidc_provider_installed

from .chromium import REQUIRE_BROWSER, browser_missing
from .login_support import (
    assert_clean,
    auth_container,
    build_login_app,
    choose_scopes,
    close_authorize_dialog,
    jwt_claims,
    loopback_socket,
    open_authorize_dialog,
    open_docs,
    populate,
    served,
    sqlite_url,
    try_it_out,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import BrowserLog

pytestmark = [
    pytest.mark.browser,
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

CLIENT_ID = "app-login"
CLIENT_SECRET = "app-login-secret-0123456789abcdef"  # a fixed test credential
DISPLAY_NAME = "Example OP"
SESSION_COOKIE = "authbridge_session"


@dataclass(frozen=True)
class LiveApp:
    url: str
    op: OidcProvider


def _require_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"these tests need Node.js ({', '.join(missing)} not on PATH)"
        if REQUIRE_BROWSER or os.environ.get("AUTHBRIDGE_REQUIRE_INTEROP") == "1":
            pytest.fail(message)
        pytest.skip(message)


def login_client(origin: str) -> dict[str, Any]:
    """The app at the provider: a confidential web client (code flow, client_secret_basic)."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [f"{origin}/oauth/callback"],
        "post_logout_redirect_uris": [f"{origin}/"],
    }


@pytest.fixture(scope="module")
def live(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """oidc-provider, and the app logging in there, each on its own loopback port."""
    _require_node()
    install_dir = ensure_oidc_provider_installed()
    store_url = sqlite_url(tmp_path_factory.mktemp("op-login"))
    populate(store_url)
    with loopback_socket() as (sock, origin):
        base = default_config()
        config = base.replace(clients=(*base.clients, login_client(origin)))
        with OidcProvider(tmp_path_factory.mktemp("login-op"), install_dir=install_dir) as op:
            op.start(config)
            provider = OIDCProvider(
                "op",
                issuer=op.issuer,
                audience=JWT_RESOURCE,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                display_name=DISPLAY_NAME,
            )
            app, _ = build_login_app(origin, store_url, [provider])
            with served(app, sock):
                yield LiveApp(origin, op)


def sign_in_at_op(page: Page, op: OidcProvider) -> None:
    """The provider's login page (alice), then its consent page, as a person fills them."""
    page.wait_for_url(f"{op.issuer}/interaction/*")
    page.locator("#login-username").fill("alice")
    page.locator("#login-password").fill("wonderland")
    page.locator("#login-submit").click()
    page.locator("#consent-submit").wait_for()


def test_op_login_from_swagger_then_try_it_out(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url, op = live.url, live.op
    operation = open_docs(page, url)
    open_authorize_dialog(page)
    box = auth_container(page, "AppLogin")
    choose_scopes(box, ["items:read"])
    with page.expect_popup() as opened:
        box.locator("button.authorize").click()
    popup = opened.value
    popup.get_by_role("link", name=f"Continue with {DISPLAY_NAME}").click()
    popup.wait_for_url(f"{op.issuer}/**")
    sign_in_at_op(popup, op)
    with (
        popup.expect_event("close"),
        page.expect_response(lambda r: r.url == f"{url}/oauth/token") as exchanged,
    ):
        popup.locator("#consent-submit").click()
    assert exchanged.value.status == 200, exchanged.value.text()
    token: dict[str, Any] = exchanged.value.json()
    claims = jwt_claims(token["access_token"])
    assert claims["iss"] == url  # the app's token; the provider's stayed on the server

    box.locator("button", has_text="Logout").wait_for()
    close_authorize_dialog(page)
    authorization, body = try_it_out(page, operation, f"{url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body["provider"] == "app"
    assert body["issuer"] == url
    assert body["subject"] == claims["sub"]
    assert body["client_id"] == "swagger-ui"
    assert body["scopes"] == ["items:read"]
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_op_session_login_csrf_and_rp_initiated_logout(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url, op = live.url, live.op
    page.goto(f"{url}/auth/login?next=/page")
    page.get_by_role("link", name=f"Continue with {DISPLAY_NAME}").click()
    sign_in_at_op(page, op)
    page.locator("#consent-submit").click()
    page.wait_for_url(f"{url}/page")
    assert page.locator("#username").inner_text() == "alice"
    session = page.request.get(f"{url}/auth/session").json()
    assert session["provider"] == "op"
    assert [(i["issuer"], i["subject"]) for i in session["identities"]] == [(op.issuer, "alice")]

    page.locator("#note-text").fill("hello")
    page.locator("#note-submit").click()
    assert page.locator("#saved-text").inner_text() == "hello"
    page.go_back()
    page.locator("#forged-text").fill("forged")
    with page.expect_response(f"{url}/notes") as forged:
        page.locator("#forged-submit").click()
    assert forged.value.status == 403

    # Logout: the app ends its session, then sends the browser to the provider's
    # end_session_endpoint with the ID token as hint and the registered return address.
    page.goto(f"{url}/page")
    with page.expect_request(lambda r: r.url.startswith(f"{op.issuer}/session/end")) as ended:
        page.locator("#logout-submit").click()
    query = parse_qs(urlsplit(ended.value.url).query)
    assert query["post_logout_redirect_uri"] == [f"{url}/"]
    assert query["client_id"] == [CLIENT_ID]
    hint = jwt_claims(query["id_token_hint"][0])
    assert hint["iss"] == op.issuer
    assert hint["aud"] == CLIENT_ID
    assert hint["sub"] == "alice"
    assert query["state"]
    assert page.request.get(f"{url}/auth/session").status == 401  # already ended here
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{url}/?*")
    assert parse_qs(urlsplit(page.url).query)["state"] == query["state"]
    assert page.locator("#home").is_visible()

    # The provider's session ended too: logging in again asks for the password.
    page.goto(f"{url}/auth/login/op?next=/page")
    page.wait_for_url(f"{op.issuer}/interaction/*")
    assert page.locator("#login-password").is_visible()
    assert_clean(browser_log.csp_violations, browser_log.page_errors)
