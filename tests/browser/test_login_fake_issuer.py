"""A session login at the test kit's served FakeIssuer, in a real browser, with its logout.

FakeIssuer's login form (username and password) is filled in Chromium; the app's session
then shows the user on a server-rendered page, a wrong password at the issuer brings its
form back and logs nobody in, and logout at the app ends at the issuer's
``end_session_endpoint``, which returns the browser to the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from authbridge.testing import FakeIssuer, ServedFakeIssuer

from .chromium import REQUIRE_BROWSER, browser_missing
from .login_support import (
    assert_clean,
    build_login_app,
    jwt_claims,
    loopback_socket,
    populate,
    served,
    sqlite_url,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from .conftest import BrowserLog

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

CLIENT_ID = "app-login"
USERNAME = "carol"
PASSWORD = "carol-password-0123"  # a fixed test credential
SESSION_COOKIE = "authbridge_session"


@dataclass(frozen=True)
class LiveApp:
    url: str
    issuer: ServedFakeIssuer


@pytest.fixture(scope="module")
def live(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    store_url = sqlite_url(tmp_path_factory.mktemp("fake-issuer-login"))
    populate(store_url)
    with loopback_socket() as (sock, origin), FakeIssuer.serve() as issuer:
        secret = issuer.add_client(
            CLIENT_ID,
            redirect_uris=[f"{origin}/oauth/callback"],
            post_logout_redirect_uris=[f"{origin}/"],
        )
        issuer.add_user(USERNAME, PASSWORD, email="carol@example.test", name="Carol")
        provider = issuer.provider(
            "issuer", client_id=CLIENT_ID, client_secret=secret, display_name="Test issuer"
        )
        app, _ = build_login_app(origin, store_url, [provider])
        with served(app, sock):
            yield LiveApp(origin, issuer)


def session_cookie(page: Page) -> str | None:
    values = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    return values[0] if len(values) == 1 else None


def to_issuer_form(page: Page, live: LiveApp) -> None:
    page.goto(f"{live.url}/auth/login?next=/page")
    page.get_by_role("link", name="Continue with Test issuer").click()
    page.wait_for_url(f"{live.issuer.authorization_endpoint}?*")


def test_session_login_at_the_issuer_and_logout_there(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    to_issuer_form(page, live)
    page.locator("input[name=username]").fill(USERNAME)
    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{url}/page")
    assert page.locator("#username").inner_text() == USERNAME
    session = page.request.get(f"{url}/auth/session").json()
    assert [(i["issuer"], i["subject"]) for i in session["identities"]] == [
        (live.issuer.issuer, USERNAME)
    ]

    page.locator("#note-text").fill("saved at the app")
    page.locator("#note-submit").click()
    assert page.locator("#saved-text").inner_text() == "saved at the app"

    page.goto(f"{url}/page")
    with page.expect_request(lambda r: r.url.startswith(live.issuer.end_session_endpoint)) as out:
        page.locator("#logout-submit").click()
    page.wait_for_url(f"{url}/?*")
    query = parse_qs(urlsplit(out.value.url).query)
    assert query["post_logout_redirect_uri"] == [f"{url}/"]
    assert query["client_id"] == [CLIENT_ID]
    assert jwt_claims(query["id_token_hint"][0])["sub"] == USERNAME
    assert parse_qs(urlsplit(page.url).query)["state"] == query["state"]
    assert session_cookie(page) is None
    page.goto(f"{url}/page")
    assert page.locator("#anonymous").is_visible()
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_a_wrong_password_at_the_issuer_logs_nobody_in(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    to_issuer_form(page, live)
    page.locator("input[name=username]").fill(USERNAME)
    page.locator("input[name=password]").fill("wrong")
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("alert").wait_for()
    assert page.url.startswith(live.issuer.issuer)
    assert session_cookie(page) is None

    # Deny instead: the issuer's access_denied comes back as the app's error page.
    with page.expect_response(lambda r: r.url.startswith(f"{live.url}/oauth/callback")) as back:
        page.get_by_role("button", name="Deny").click()
    assert back.value.status == 400
    assert page.locator("p.reason code").all_inner_texts() == ["access_denied", "provider_error"]
    assert session_cookie(page) is None
    assert_clean(browser_log.csp_violations, browser_log.page_errors)
