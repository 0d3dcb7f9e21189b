"""The login pages with JavaScript turned off in the browser: plain forms and links suffice.

Chromium with ``java_script_enabled=False``: the session chooser and its password form, a
wrong password, the app's authorization endpoint for a client (the code then redeemed with
its PKCE verifier), and a provider's link (FakeGitHub's own page is plain HTML too). The
chooser carries no script at all.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from authbridge import GitHubProvider
from authbridge.testing import FakeGitHub

from .chromium import REQUIRE_BROWSER, browser_missing
from .login_support import (
    ContextLog,
    LocalUser,
    assert_clean,
    browser_context,
    build_login_app,
    jwt_claims,
    loopback_socket,
    populate,
    served,
    sqlite_url,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

ALICE = LocalUser("user-alice", "alice", "correct horse battery staple")
SESSION_COOKIE = "authbridge_session"


@dataclass(frozen=True)
class LiveApp:
    url: str
    github: FakeGitHub


@pytest.fixture(scope="module")
def live(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    store_url = sqlite_url(tmp_path_factory.mktemp("nojs-login"))
    populate(store_url, [ALICE])
    with loopback_socket() as (sock, origin):
        github = FakeGitHub(callback_url=f"{origin}/oauth/callback")
        github.add_user("octocat", 583231, name="The Octocat", email="octocat@example.test")
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


@pytest.fixture
def nojs(chromium_path: Path) -> Iterator[tuple[Page, ContextLog]]:
    """A page of a fresh Chromium context with JavaScript disabled."""
    with browser_context(chromium_path, javascript=False) as (context, log):
        yield context.new_page(), log


def session_cookie(page: Page) -> str | None:
    values = [c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    return values[0] if len(values) == 1 else None


def assert_scriptless_chooser(page: Page) -> None:
    assert page.locator("script").count() == 0
    assert page.get_by_role("heading", name="Log in").is_visible()
    assert page.get_by_role("link", name="Continue with GitHub").is_visible()


def test_password_session_login_and_logout_without_javascript(
    nojs: tuple[Page, ContextLog], live: LiveApp
) -> None:
    page, log = nojs
    url = live.url
    page.goto(f"{url}/auth/login?next=/page")
    assert_scriptless_chooser(page)
    page.get_by_label("Username").fill(ALICE.username)
    page.get_by_label("Password").fill(ALICE.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/page")
    assert page.locator("#username").inner_text() == ALICE.username
    assert page.locator("#subject").inner_text() == ALICE.id
    assert session_cookie(page) is not None

    page.locator("#note-text").fill("no script needed")
    page.locator("#note-submit").click()
    assert page.locator("#saved-text").inner_text() == "no script needed"

    page.goto(f"{url}/page")
    page.locator("#logout-submit").click()
    page.wait_for_url(f"{url}/")
    assert session_cookie(page) is None
    page.goto(f"{url}/page")
    assert page.locator("#anonymous").is_visible()
    assert_clean(log.csp_violations, log.page_errors)


def test_wrong_password_without_javascript_opens_no_session(
    nojs: tuple[Page, ContextLog], live: LiveApp
) -> None:
    page, log = nojs
    url = live.url
    page.goto(f"{url}/auth/login?next=/page")
    page.get_by_label("Username").fill(ALICE.username)
    page.get_by_label("Password").fill("not the password")
    with page.expect_response(f"{url}/auth/login") as answered:
        page.get_by_role("button", name="Log in").click()
    assert answered.value.status == 400
    assert page.get_by_role("alert").inner_text() == "Invalid username or password"
    assert session_cookie(page) is None
    page.goto(f"{url}/page")
    assert page.locator("#anonymous").is_visible()
    assert_clean(log.csp_violations, log.page_errors)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def test_authorization_endpoint_password_without_javascript(
    nojs: tuple[Page, ContextLog], live: LiveApp
) -> None:
    page, log = nojs
    url = live.url
    redirect_uri = f"{url}/docs/oauth2-redirect"
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": "swagger-ui",
        "redirect_uri": redirect_uri,
        "scope": "items:read",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page.goto(f"{url}/oauth/authorize?{urlencode(query)}")
    assert_scriptless_chooser(page)
    page.get_by_label("Username").fill(ALICE.username)
    page.get_by_label("Password").fill(ALICE.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{redirect_uri}?*")
    answer = parse_qs(urlsplit(page.url).query)
    assert answer["state"] == [state]
    assert answer["iss"] == [url]  # RFC 9207

    token = httpx.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": redirect_uri,
            "client_id": "swagger-ui",
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    claims = jwt_claims(token.json()["access_token"])
    assert claims["iss"] == url
    assert claims["sub"] == ALICE.id
    assert claims["scope"] == "items:read"
    assert_clean(log.csp_violations, log.page_errors)


def test_provider_link_without_javascript(nojs: tuple[Page, ContextLog], live: LiveApp) -> None:
    page, log = nojs
    url = live.url
    page.goto(f"{url}/auth/login?next=/page")
    page.get_by_role("link", name="Continue with GitHub").click()
    page.wait_for_url(f"{live.github.web_base}/login/oauth/authorize?*")
    page.locator("input[name=user]").fill("octocat")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{url}/page")
    assert page.locator("#username").inner_text() == "octocat"
    assert_clean(log.csp_violations, log.page_errors)


def test_the_context_really_runs_no_script(nojs: tuple[Page, ContextLog], live: LiveApp) -> None:
    page, _ = nojs
    page.goto(f"{live.url}/docs")
    page.wait_for_load_state("load")
    # Swagger UI is all script: without it, not one operation is rendered.
    assert page.locator("#swagger-ui").count() == 1
    assert page.locator(".opblock").count() == 0
