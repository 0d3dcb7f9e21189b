"""A session login of a server-rendered page in a real browser, with FakeGoogle as provider.

``GET /auth/login?next=/page`` shows the app's chooser; "Continue with Google" goes to
FakeGoogle's account chooser (served on loopback), approved in Chromium, back through
``/oauth/callback`` to ``/page``, which names the logged-in user. The page's form (with the
session's CSRF token) saves; the same POST without the token, or with a token from script
that is not the session's, is refused; logout ends the session on the server, so the old
cookie opens nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from authbridge import GoogleProvider
from authbridge.testing import FakeGoogle

from .chromium import REQUIRE_BROWSER, browser_missing
from .login_support import (
    LocalUser,
    assert_clean,
    build_login_app,
    chromium,
    loopback_socket,
    open_context,
    populate,
    served,
    sqlite_url,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

    from .conftest import BrowserLog

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

ALICE = LocalUser("user-alice", "alice", "correct horse battery staple")
GOOGLE_EMAIL = "grace@example.test"
SESSION_COOKIE = "authbridge_session"


@dataclass(frozen=True)
class LiveApp:
    url: str
    google: FakeGoogle
    google_sub: str


@pytest.fixture(scope="module")
def live(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The app (SQLite store with alice) and FakeGoogle, each on its own loopback port."""
    store_url = sqlite_url(tmp_path_factory.mktemp("session-login"))
    populate(store_url, [ALICE])
    with loopback_socket() as (sock, origin):
        google = FakeGoogle(redirect_uris=[f"{origin}/oauth/callback"])
        sub = google.add_user(GOOGLE_EMAIL, name="Grace Hopper")
        with google.serve():
            provider = GoogleProvider(
                google.client_id,
                client_secret=google.client_secret,
                authorization_endpoint=google.authorization_endpoint,
                token_endpoint=google.token_endpoint,
                userinfo_endpoint=google.userinfo_endpoint,
                tokeninfo_url=google.tokeninfo_url,
                jwks_uri=google.jwks_uri,
            )
            app, _ = build_login_app(origin, store_url, [provider])
            with served(app, sock):
                yield LiveApp(origin, google, sub)


def session_cookie(page: Page) -> str | None:
    values = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(values) <= 1
    return values[0] if values else None


def login_with_google(page: Page, live: LiveApp, *, fresh: bool = True) -> None:
    """/auth/login?next=/page → "Continue with Google" → approve → /page."""
    url = live.url
    page.goto(f"{url}/auth/login?next=/page")
    assert page.get_by_role("heading", name="Log in").is_visible()
    link = page.get_by_role("link", name="Continue with Google")
    assert link.get_attribute("href") == "/auth/login/google?next=%2Fpage"
    link.click()
    page.wait_for_url(f"{live.google.authorization_endpoint}?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["redirect_uri"] == [f"{url}/oauth/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"]
    assert (session_cookie(page) is None) is fresh
    page.locator("input[name=user]").fill(GOOGLE_EMAIL)
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{url}/page")


def test_google_session_login_csrf_and_logout(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    login_with_google(page, live)
    assert page.locator("#username").inner_text() == "grace"
    subject = page.locator("#subject").inner_text()
    assert subject != ALICE.id
    cookie = session_cookie(page)
    assert cookie is not None
    attributes = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert attributes["httpOnly"] is True
    assert attributes["sameSite"] == "Lax"

    # The identity behind the session is Google's, keyed by its issuer and sub.
    session = page.request.get(f"{url}/auth/session").json()
    assert session["user"]["id"] == subject
    assert session["provider"] == "google"
    assert [(i["issuer"], i["subject"]) for i in session["identities"]] == [
        ("https://accounts.google.com", live.google_sub)
    ]

    # The page's own form carries the session's CSRF token: saved.
    page.locator("#note-text").fill("from the form")
    with page.expect_response(f"{url}/notes") as saved:
        page.locator("#note-submit").click()
    assert saved.value.status == 200
    assert page.locator("#saved-text").inner_text() == "from the form"
    assert page.locator("#saved-by").inner_text() == subject

    # The same form without the token: the cookie alone authorizes nothing.
    page.go_back()
    page.locator("#forged-text").fill("forged")
    with page.expect_response(f"{url}/notes") as forged:
        page.locator("#forged-submit").click()
    assert forged.value.status == 403
    assert "forged" not in page.content()

    # From script: the session's token in X-CSRF-Token works, another value does not.
    token = session["csrf_token"]
    statuses = page.evaluate(
        """async (token) => {
            const post = (value) => fetch("/notes", {
                method: "POST",
                headers: {"X-CSRF-Token": value,
                          "Content-Type": "application/x-www-form-urlencoded"},
                body: "text=scripted",
            }).then((r) => r.status);
            return [await post(token), await post(token.slice(0, -2) + "AA")];
        }""",
        token,
    )
    assert statuses == [200, 403]

    # Log out: the session ends on the server, the cookie is dropped, the old one is dead.
    page.goto(f"{url}/page")
    page.locator("#logout-submit").click()
    page.wait_for_url(f"{url}/")
    assert session_cookie(page) is None
    page.goto(f"{url}/page")
    assert page.locator("#anonymous").is_visible()
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": url}])
    page.goto(f"{url}/page")
    assert page.locator("#anonymous").is_visible()
    assert page.request.get(f"{url}/auth/session").status == 401
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_a_second_login_rotates_the_session(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    login_with_google(page, live)
    first = session_cookie(page)
    login_with_google(page, live, fresh=False)
    second = session_cookie(page)
    assert first is not None
    assert second is not None
    assert first != second
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": first, "url": live.url}])
    page.goto(f"{live.url}/page")
    assert page.locator("#anonymous").is_visible()  # the replaced session ended
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


@pytest.mark.parametrize(
    "unsafe",
    ["https://evil.example/", "//evil.example/page", "/\\evil.example", "/%2F%2Fevil.example"],
)
def test_an_unsafe_next_is_refused_before_any_provider(
    page: Page, live: LiveApp, browser_log: BrowserLog, unsafe: str
) -> None:
    before = len(live.google.requests)
    response = page.goto(f"{live.url}/auth/login/google?next={unsafe}")
    assert response is not None
    assert response.status == 400
    assert page.url.startswith(live.url)
    assert "unsafe_return_path" in page.locator("code").all_inner_texts()
    assert len(live.google.requests) == before
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def _reason(page: Page) -> list[str]:
    return page.locator("p.reason code").all_inner_texts()


def test_a_replayed_callback_is_refused_and_the_session_kept(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    with page.expect_request(lambda r: r.url.startswith(f"{url}/oauth/callback?")) as callback:
        login_with_google(page, live)
    cookie = session_cookie(page)
    response = page.goto(callback.value.url)
    assert response is not None
    assert response.status == 400
    assert _reason(page) == ["state_unknown"]
    assert session_cookie(page) == cookie  # a refused callback changes nothing
    page.goto(f"{url}/page")
    assert page.locator("#username").inner_text() == "grace"
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_a_callback_opened_in_another_browser_logs_nobody_in(
    live: LiveApp, chromium_path: Path
) -> None:
    """Login CSRF: the callback URL of one browser's login, opened by another browser."""
    url = live.url
    with chromium(chromium_path) as browser:
        own, own_log = open_context(browser)
        page = own.new_page()
        # Stop at the provider's answer: keep its redirect to the callback, do not follow it.
        held: list[str] = []

        def hold(route: Route) -> None:
            if route.request.method != "POST":
                route.continue_()
                return
            answer = route.fetch(max_redirects=0)
            held.append(answer.headers["location"])
            route.fulfill(status=200, content_type="text/plain", body="held")

        authorize = live.google.authorization_endpoint
        page.route(lambda u: u.startswith(authorize), hold)
        page.goto(f"{url}/auth/login/google?next=/page")
        page.locator("input[name=user]").fill(GOOGLE_EMAIL)
        page.get_by_role("button", name="Approve").click()
        page.get_by_text("held").wait_for()
        page.unroute_all()
        (callback,) = held
        assert callback.startswith(f"{url}/oauth/callback?")

        other, other_log = open_context(browser)
        victim = other.new_page()
        response = victim.goto(callback)
        assert response is not None
        assert response.status == 400
        assert _reason(victim) == ["browser_mismatch"]
        assert session_cookie(victim) is None
        victim.goto(f"{url}/page")
        assert victim.locator("#anonymous").is_visible()

        # That attempt consumed the transaction: its own browser cannot finish it now.
        response = page.goto(callback)
        assert response is not None
        assert response.status == 400
        assert _reason(page) == ["state_unknown"]
        assert session_cookie(page) is None
        assert_clean(own_log.csp_violations + other_log.csp_violations, own_log.page_errors)
        assert other_log.page_errors == []
