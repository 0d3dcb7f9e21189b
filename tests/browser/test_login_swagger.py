"""Swagger UI's ``AppLogin`` box in a real browser: the app's chooser, then GitHub or a password.

Headless Debian Chromium (Playwright) opens the packaged Swagger UI of an app with its own
issuer and ``login=``. "Authorize" in the ``AppLogin`` box (authorization code + PKCE, the
built-in public client ``swagger-ui``) opens the app's login chooser in a popup; from there
either FakeGitHub's authorize page, served on loopback, approved in the browser, back through
``/oauth/callback``, or the chooser's own password form. Swagger UI then redeems the code at
the app's token endpoint and "Try it out" calls a protected route with the app's token. No
page (Swagger UI, the chooser) reports a Content-Security-Policy violation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from authbridge import GitHubProvider
from authbridge.testing import FakeGitHub

from .chromium import REQUIRE_BROWSER, browser_missing
from .login_support import (
    LocalUser,
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
    from playwright.sync_api import Locator, Page, Response

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
OCTOCAT_ID = 583231


@dataclass(frozen=True)
class LiveApp:
    url: str
    github: FakeGitHub


@pytest.fixture(scope="module")
def live(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The app (SQLite store with alice) and FakeGitHub, each on its own loopback port."""
    store_url = sqlite_url(tmp_path_factory.mktemp("swagger-login"))
    populate(store_url, [ALICE])
    with loopback_socket() as (sock, origin):
        github = FakeGitHub(callback_url=f"{origin}/oauth/callback")
        github.add_user("octocat", OCTOCAT_ID, name="The Octocat", email="octocat@example.test")
        with github.serve():
            provider = GitHubProvider(
                client_id=github.client_id,
                client_secret=github.client_secret,
                web_base=github.web_base,
                api_base=github.api_base,
            )
            app, _ = build_login_app(origin, store_url, [provider])
            with served(app, sock):
                yield LiveApp(origin, github)


def _is_token_answer(url: str, response: Response) -> bool:
    return response.url == f"{url}/oauth/token" and response.request.method == "POST"


def start_app_login(page: Page, url: str, scopes: list[str]) -> tuple[Locator, Page]:
    """Swagger UI → Authorize → the AppLogin box → its Authorize: the box and the popup."""
    open_authorize_dialog(page)
    box = auth_container(page, "AppLogin")
    assert box.locator("input[data-name=clientId]").input_value() == "swagger-ui"
    choose_scopes(box, scopes)
    with page.expect_popup() as opened:
        box.locator("button.authorize").click()
    popup = opened.value
    popup.wait_for_load_state()
    return box, popup


def assert_chooser(popup: Page, url: str) -> dict[str, list[str]]:
    """The popup shows the app's chooser for Swagger UI's request; that request's query."""
    parts = urlsplit(popup.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{url}/oauth/authorize"
    query = parse_qs(parts.query)
    assert query["client_id"] == ["swagger-ui"]
    assert query["redirect_uri"] == [f"{url}/docs/oauth2-redirect"]
    assert query["code_challenge_method"] == ["S256"]
    assert popup.get_by_role("heading", name="Log in").is_visible()
    assert popup.locator("form.password").is_visible()
    assert popup.get_by_role("link", name="Continue with GitHub").is_visible()
    return query


def test_github_login_from_swagger_then_try_it_out(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    operation = open_docs(page, url)
    box, popup = start_app_login(page, url, ["items:read"])
    assert_chooser(popup, url)

    popup.get_by_role("link", name="Continue with GitHub").click()
    popup.wait_for_url(f"{live.github.web_base}/login/oauth/authorize?*")
    github_query = parse_qs(urlsplit(popup.url).query)
    assert github_query["client_id"] == [live.github.client_id]
    assert github_query["redirect_uri"] == [f"{url}/oauth/callback"]
    assert github_query["code_challenge_method"] == ["S256"]  # the app's own PKCE at GitHub
    popup.locator("input[name=user]").fill("octocat")

    # Approve: GitHub → /oauth/callback → /docs/oauth2-redirect, which hands the code to the
    # page and closes; the page redeems it with its PKCE verifier at the app's token endpoint.
    with (
        popup.expect_event("close"),
        page.expect_response(lambda r: _is_token_answer(url, r)) as exchanged,
    ):
        popup.get_by_role("button", name="Approve").click()
    assert exchanged.value.status == 200, exchanged.value.text()
    form = parse_qs(exchanged.value.request.post_data or "")
    assert form["grant_type"] == ["authorization_code"]
    assert form["client_id"] == ["swagger-ui"]
    assert form["code_verifier"]
    assert "client_secret" not in form
    token: dict[str, Any] = exchanged.value.json()
    claims = jwt_claims(token["access_token"])
    assert claims["iss"] == url  # the app's token, not GitHub's
    assert claims["scope"] == "items:read"

    box.locator("button", has_text="Logout").wait_for()
    close_authorize_dialog(page)
    authorization, body = try_it_out(page, operation, f"{url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body["provider"] == "app"
    assert body["issuer"] == url
    assert body["subject"] == claims["sub"]
    assert body["subject"] != ALICE.id  # a new account, made by the GitHub login
    assert body["client_id"] == "swagger-ui"
    assert body["scopes"] == ["items:read"]
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_local_password_from_swagger_then_try_it_out(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    operation = open_docs(page, url)
    box, popup = start_app_login(page, url, ["items:read"])
    assert_chooser(popup, url)
    popup.get_by_label("Username").fill(ALICE.username)
    popup.get_by_label("Password").fill(ALICE.password)
    with (
        popup.expect_event("close"),
        page.expect_response(lambda r: _is_token_answer(url, r)) as exchanged,
    ):
        popup.get_by_role("button", name="Log in").click()
    assert exchanged.value.status == 200, exchanged.value.text()
    token: dict[str, Any] = exchanged.value.json()
    assert jwt_claims(token["access_token"])["iss"] == url

    box.locator("button", has_text="Logout").wait_for()
    close_authorize_dialog(page)
    authorization, body = try_it_out(page, operation, f"{url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body == {
        "provider": "app",
        "issuer": url,
        "subject": ALICE.id,
        "client_id": "swagger-ui",
        "scopes": ["items:read"],
    }
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


def test_wrong_password_from_swagger_authorizes_nothing(
    page: Page, live: LiveApp, browser_log: BrowserLog
) -> None:
    url = live.url
    open_docs(page, url)
    box, popup = start_app_login(page, url, ["items:read"])
    assert_chooser(popup, url)
    tokens: list[str] = []
    page.on("request", lambda r: tokens.append(r.url) if r.url.endswith("/oauth/token") else None)
    popup.get_by_label("Username").fill(ALICE.username)
    popup.get_by_label("Password").fill("not the password")
    with popup.expect_response(lambda r: r.request.method == "POST") as answered:
        popup.get_by_role("button", name="Log in").click()
    assert answered.value.status == 400
    assert answered.value.headers.get("location") is None
    # The chooser again, with the one answer for every wrong combination, still in the popup.
    popup.get_by_role("alert").wait_for()
    assert popup.get_by_role("alert").inner_text() == "Invalid username or password"
    assert popup.url.startswith(f"{url}/oauth/authorize")
    assert popup.get_by_label("Username").input_value() == ALICE.username
    assert popup.get_by_label("Password").input_value() == ""
    assert not popup.is_closed()
    popup.close()
    assert tokens == []  # no code reached Swagger UI, so no token request
    assert box.locator("button", has_text="Logout").count() == 0
    assert_clean(browser_log.csp_violations, browser_log.page_errors)


# Each would run script if pasted unescaped into the chooser's hidden fields or links.
HOSTILE_VALUES = [
    '"><img src=x onerror="window.pwned=1">',
    "'><script>window.pwned=1</script>",
    "javascript:window.pwned=1",
]


@pytest.mark.parametrize("hostile", HOSTILE_VALUES)
def test_hostile_authorize_parameters_stay_text_in_the_chooser(
    page: Page, live: LiveApp, browser_log: BrowserLog, hostile: str
) -> None:
    url = live.url
    query = {
        "response_type": "code",
        "client_id": "swagger-ui",
        "redirect_uri": f"{url}/docs/oauth2-redirect",
        "state": hostile,
        "login_hint": hostile,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    response = page.goto(f"{url}/oauth/authorize?{urlencode(query)}")
    assert response is not None
    assert response.status == 200
    assert page.locator("input[type=hidden][name=state]").input_value() == hostile
    link = page.get_by_role("link", name="Continue with GitHub").get_attribute("href") or ""
    assert parse_qs(urlsplit(link).query)["state"] == [hostile]
    assert page.locator("img, script").count() == 0
    assert page.evaluate("() => window.pwned === undefined")
    assert_clean(browser_log.csp_violations, browser_log.page_errors)
