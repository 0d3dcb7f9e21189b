"""The login pages: escaping of every reflected value, headers, no script, the stylesheet;
the return-path rule; the OpenAPI document and Swagger UI's client with login."""

from __future__ import annotations

from pathlib import Path

import pytest
from openapi_spec_validator import validate

from authbridge.fastapi._pages import page_csp
from authbridge.fastapi._return_path import is_safe_return_path

from .support import PASSWORD, SPA, Page, authorize_params, pkce_pair, running

EVIL = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"


def assert_page_headers(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    csp = h["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'self'")
    assert "frame-ancestors 'none'" in csp
    assert "base-uri 'none'" in csp
    assert "script-src" not in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-store"


def assert_no_markup_from(text: str, page: Page) -> None:
    assert page.scripts == 0
    assert page.styles == 0
    assert page.inline_handlers == []
    assert page.style_attributes == 0
    assert "<script>" not in text
    assert "<img" not in text


async def test_every_reflected_value_of_the_chooser_is_escaped(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        params = authorize_params(challenge, state=EVIL, login_hint=EVIL, nonce=EVIL)
        params[EVIL] = EVIL  # an unknown parameter travels in the hidden fields too
        response = await h.client.get("/oauth/authorize", params=params)
        assert response.status_code == 200, response.text
        assert_page_headers(response.headers)
        page = Page(response.text)
        assert_no_markup_from(response.text, page)
        # Escaped, not dropped: the hidden fields give back exactly what was sent.
        fields = page.forms[0]["fields"]
        assert fields["state"] == EVIL
        assert fields[EVIL] == EVIL
        for link in page.links:
            assert "<" not in link
            assert '"' not in link


async def test_root_path_is_escaped_in_the_stylesheet_link(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        h.app.root_path = '/x"><script>alert(1)</script>'
        response = await h.client.get("/oauth/authorize", params=authorize_params(challenge))
        page = Page(response.text)
        assert page.scripts == 0
        assert page.stylesheets[0].endswith("/auth/static/login.css")
        assert "<script>" not in response.text


async def test_the_form_may_lead_to_the_clients_redirect_uri_only(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        response = await h.client.get("/oauth/authorize", params=authorize_params(challenge))
        csp = response.headers["content-security-policy"]
        assert "form-action 'self' http://127.0.0.1:9999 https://idp.test;" in csp


def test_form_action_sources() -> None:
    assert "form-action 'self' com.example.app:;" in page_csp(["com.example.app:/cb"])
    assert "javascript" not in page_csp(["javascript:alert(1)"])
    assert page_csp(["https://a.example/x?y", "https://a.example/z"]).count("a.example") == 1
    assert "evil" not in page_csp(["https://user@evil.example/"])


async def test_error_pages_and_stylesheet(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        answer = await h.client.get("/auth/login", params={"next": "//evil.example"})
        assert answer.status_code == 400
        assert_page_headers(answer.headers)
        assert "unsafe_return_path" in answer.text
        assert "evil.example" not in answer.text
        css = await h.client.get("/auth/static/login.css")
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert css.headers["x-content-type-options"] == "nosniff"
        missing = await h.client.get("/auth/static/other.css")
        assert missing.status_code == 404


SAFE = ["/", "/items", "/items?page=2&sort=name", "/a/b#frag", "/@user", "/caf%C3%A9"]
UNSAFE = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/%2F%2Fevil.example",
    "/%2fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "//user@evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/x\r\nSet-Cookie: a=b",
    "/%0d%0aSet-Cookie:a=b",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "/javascript:alert(1)//%0a",
    "data:text/html,<script>",
    "\uff0f\uff0fevil.example",
    "/\uff0fevil.example",
    "/\uff3cevil.example",
    "/%EF%BC%8Fevil.example",
    "/%E2%80%AEelpmaxe.live",
    "/..//evil.example",
    "/./evil",
    "/%2e%2e//evil.example",
    "evil.example",
    " /items",
    "/items ",
    "/\x00",
    "https:evil.example",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("value", SAFE)
def test_safe_return_paths(value: str) -> None:
    assert is_safe_return_path(value)


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_return_paths(value: str) -> None:
    assert not is_safe_return_path(value)


@pytest.mark.parametrize("value", UNSAFE[:12])
async def test_open_redirects_are_refused_by_the_routes(tmp_path: Path, value: str) -> None:
    async with running(tmp_path) as h:
        for path in ("/auth/login", "/auth/login/stub"):
            answer = await h.client.get(path, params={"next": value})
            assert answer.status_code == 400, (path, value)
            assert "location" not in answer.headers
        assert h.upstream.requests == []


async def test_openapi_document_shows_app_login(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        document = (await h.client.get("/openapi.json")).json()
        validate(document)
        schemes = document["components"]["securitySchemes"]
        flow = schemes["AppLogin"]["flows"]["authorizationCode"]
        assert flow["authorizationUrl"] == "/oauth/authorize"
        assert flow["tokenUrl"] == "/oauth/token"
        assert flow["refreshUrl"] == "/oauth/token"
        assert {"AppPassword", "AppClientCredentials", "BearerToken"} <= schemes.keys()
        security = document["paths"]["/items"]["get"]["security"]
        assert {"AppLogin": ["items:read"]} in security
        assert {"BearerToken": ["items:read"]} in security
        assert h.auth.swagger_ui_init_oauth == {
            "clientId": "swagger-ui",
            "usePkceWithAuthorizationCodeGrant": True,
        }
        # No login route appears as an operation.
        assert not any(p.startswith(("/auth", "/oauth")) for p in document["paths"])


async def test_swagger_ui_logs_in_through_the_authorization_endpoint(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with running(tmp_path) as h:
        client = await h.runtime.client("swagger-ui")
        assert client is not None
        assert "authorization_code" in client.grant_types
        assert client.redirect_uris == ("http://127.0.0.1:8000/docs/oauth2-redirect",)
        params = authorize_params(
            challenge, client_id="swagger-ui", redirect_uri=client.redirect_uris[0]
        )
        page = Page((await h.client.get("/oauth/authorize", params=params)).text)
        assert "Swagger UI" in page.all_text
        fields = {**page.forms[0]["fields"], "username": "alice", "password": PASSWORD}
        assert fields["client_id"] == "swagger-ui"
        assert SPA not in fields.values()
        answer = await h.client.post("/oauth/authorize", data=fields)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(client.redirect_uris[0] + "?code=")
