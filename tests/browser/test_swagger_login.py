"""Swagger UI's "Authorize" in a real browser: log in at a real OpenID Provider, call the API.

Headless Debian Chromium (Playwright) opens the packaged Swagger UI served by uvicorn. The login
popup shows the real ``oidc-provider`` login and consent pages, and the page itself redeems the
code at the provider's token endpoint (public client, PKCE, cross-origin with CORS). All of it
under the pages' Content-Security-Policy, with no violation reported.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from interop.op import CC_CLIENT_ID, JWT_RESOURCE, SWAGGER_CLIENT_ID, OidcProvider

from .chromium import REQUIRE_BROWSER, browser_missing

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from .conftest import BrowserLog

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        browser_missing() is not None and not REQUIRE_BROWSER,
        reason=f"browser tests need Chromium and Playwright: {browser_missing()}",
    ),
]

ITEMS_OPERATION = "#operations-default-items_items_get"


def open_docs(page: Page, api_url: str) -> Locator:
    """Load Swagger UI; the GET /items operation once the OpenAPI document is rendered."""
    page.goto(f"{api_url}/docs")
    operation = page.locator(ITEMS_OPERATION)
    operation.wait_for()
    return operation


def lock_of(operation: Locator, state: str) -> Locator:
    """The operation's padlock in ``state`` ("locked": Swagger holds credentials for it)."""
    return operation.get_by_label(f"authorization button {state}", exact=True)


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


def assert_no_violation(log: BrowserLog) -> None:
    assert log.csp_violations == []
    assert log.page_errors == []


def test_login_in_the_popup_then_try_it_out(
    page: Page, api_url: str, swagger_op: OidcProvider, browser_log: BrowserLog
) -> None:
    operation = open_docs(page, api_url)
    lock_of(operation, "unlocked").wait_for()
    open_authorize_dialog(page)
    login = auth_container(page, "op")
    assert login.locator("input[data-name=clientId]").input_value() == SWAGGER_CLIENT_ID

    with page.expect_popup() as opened:
        login.locator("button.authorize").click()
    popup = opened.value
    popup.locator("#login-username").fill("alice")
    popup.locator("#login-password").fill("wonderland")
    popup.locator("#login-submit").click()

    # After consent the popup lands on /docs/oauth2-redirect, hands the code to the page and
    # closes; the page posts the code and its PKCE verifier cross-origin to the token endpoint
    # (Swagger UI appends `additionalQueryStringParams`, here the resource, to that URL too).
    token_endpoint = f"{swagger_op.issuer}/token"
    with (
        popup.expect_event("close"),
        page.expect_response(lambda r: r.url.split("?")[0] == token_endpoint) as exchanged,
    ):
        popup.locator("#consent-submit").click()
    assert exchanged.value.status == 200
    form = exchanged.value.request.post_data_json or {}
    assert form["grant_type"] == "authorization_code"
    assert form["client_id"] == SWAGGER_CLIENT_ID
    assert form["code_verifier"]  # PKCE
    assert "client_secret" not in form  # a public client: no secret in the browser
    token = exchanged.value.json()
    assert {"access_token", "id_token"} <= token.keys()

    login.locator("button", has_text="Logout").wait_for()  # the scheme is authorized
    close_authorize_dialog(page)
    lock_of(operation, "locked").wait_for()

    authorization, body = try_it_out(page, operation, f"{api_url}/items")
    assert authorization == f"Bearer {token['access_token']}"
    assert body == {
        "provider": "op",
        "subject": "alice",
        "client_id": SWAGGER_CLIENT_ID,
        "scopes": ["items:read"],
    }
    assert_no_violation(browser_log)


def test_pasted_bearer_token_then_try_it_out(
    page: Page, api_url: str, swagger_op: OidcProvider, browser_log: BrowserLog
) -> None:
    token = swagger_op.client_credentials_token(JWT_RESOURCE, "items:read")["access_token"]
    operation = open_docs(page, api_url)
    open_authorize_dialog(page)
    bearer = auth_container(page, "BearerToken")
    bearer.get_by_role("textbox").fill(token)
    bearer.locator("button.authorize").click()
    bearer.locator("button", has_text="Logout").wait_for()
    close_authorize_dialog(page)
    lock_of(operation, "locked").wait_for()

    authorization, body = try_it_out(page, operation, f"{api_url}/items")
    assert authorization == f"Bearer {token}"
    assert body == {
        "provider": "op",
        "subject": CC_CLIENT_ID,
        "client_id": CC_CLIENT_ID,
        "scopes": ["items:read"],
    }
    assert_no_violation(browser_log)


def test_authorization_persists_across_a_reload(
    page: Page, api_url: str, swagger_op: OidcProvider, browser_log: BrowserLog
) -> None:
    token = swagger_op.client_credentials_token(JWT_RESOURCE, "items:read")["access_token"]
    open_docs(page, api_url)
    open_authorize_dialog(page)
    bearer = auth_container(page, "BearerToken")
    bearer.get_by_role("textbox").fill(token)
    bearer.locator("button.authorize").click()
    close_authorize_dialog(page)

    operation = open_docs(page, api_url)  # a new page load: persistAuthorization is on
    lock_of(operation, "locked").wait_for()
    authorization, _ = try_it_out(page, operation, f"{api_url}/items")
    assert authorization == f"Bearer {token}"
    assert_no_violation(browser_log)


def test_the_policy_is_enforced(page: Page, api_url: str, browser_log: BrowserLog) -> None:
    open_docs(page, api_url)
    # page.evaluate itself is not subject to the policy; the script element it adds is.
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.append(script);
        }"""
    )
    page.wait_for_function("() => document.readyState === 'complete'")
    assert page.evaluate("() => window.injected === undefined")
    assert any("script-src" in v for v in browser_log.csp_violations)


# Each would run script if pasted unescaped into the page (no "/": the tenant is one segment).
HOSTILE_TENANTS = [
    '"><img src=x onerror="window.pwned=1">',
    "';window.pwned=1;'",
    "javascript:window.pwned=1",
    "\u2028window.pwned=1\u2029",
]


@pytest.mark.parametrize("tenant", HOSTILE_TENANTS)
def test_a_hostile_root_path_stays_in_its_context(
    page: Page, api_url: str, browser_log: BrowserLog, tenant: str
) -> None:
    # A templated mount: the tenant segment, chosen by whoever wrote the link, is the root_path.
    base = f"{api_url}/tenants/{quote(tenant, safe='')}"
    with page.expect_response(lambda r: r.url.endswith("/swagger-ui-bundle.js")) as bundle:
        operation = open_docs(page, base)
    assert bundle.value.status == 200  # the escaped asset URLs still lead to the assets
    lock_of(operation, "unlocked").wait_for()
    assert page.evaluate("() => window.pwned === undefined")
    assert_no_violation(browser_log)
