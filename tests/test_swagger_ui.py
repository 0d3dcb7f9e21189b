"""Swagger UI served from the package, and RFC 9728 protected resource metadata."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from authbridge import AuthBridge, ConfigurationError, Principal, SwaggerLogin
from authbridge.fastapi._docs import base_path, csp_origin, docs_csp, json_for_html
from authbridge.testing import FakeIssuer


def build(fake: FakeIssuer, **kwargs: object) -> tuple[FastAPI, AuthBridge]:
    auth = AuthBridge(providers=[fake.provider("hydra")], transport=fake.transport, **kwargs)  # type: ignore[arg-type]
    app = FastAPI(title="Items", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"subject": user.subject}

    @app.post("/items")
    async def add(user: Principal = Security(auth.principal, scopes=["items:write"])) -> dict:
        return {}

    auth.install(app)
    return app, auth


def test_docs_page_uses_packaged_assets(fake_issuer: FakeIssuer) -> None:
    app, _ = build(
        fake_issuer, swagger_login=SwaggerLogin("hydra", client_id="docs", scopes=["items:read"])
    )
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["referrer-policy"] == "no-referrer"
        html = page.text
        assert "cdn.jsdelivr.net" not in html
        parsed = parse_page(html)
        assert parsed.scripts == [
            "/docs/static/swagger-ui-bundle.js",
            "/docs/static/swagger-ui-init.js",
        ]
        config = parsed.config
        assert config["initOAuth"]["usePkceWithAuthorizationCodeGrant"] is True
        assert config["initOAuth"]["clientId"] == "docs"
        assert config["oauth2RedirectPath"] == "/docs/oauth2-redirect"
        assert config["options"]["url"] == "/openapi.json"
        assert config["options"]["persistAuthorization"] is True
        assert config["options"]["validatorUrl"] is None  # no call to validator.swagger.io
        assert client.get("/docs/static/swagger-ui-init.js").status_code == 200
        bundle = client.get("/docs/static/swagger-ui-bundle.js")
        assert bundle.status_code == 200
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert len(bundle.content) > 500_000
        assert client.get("/docs/static/swagger-ui.css").status_code == 200
        assert client.get("/docs/static/favicon.png").status_code == 200
        for name in ("../__init__.py", "redoc.standalone.js", "%2e%2e%2fcore.py"):
            assert client.get(f"/docs/static/{name}").status_code == 404
        redirect = client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert redirect.headers["referrer-policy"] == "no-referrer"
        assert parse_page(redirect.text).scripts == ["/docs/static/oauth2-redirect.js"]
        assert "swaggerUIRedirectOauth2" in client.get("/docs/static/oauth2-redirect.js").text


def test_docs_page_honours_root_path(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer)
    with TestClient(app, root_path="/api") as client:
        page = parse_page(client.get("/docs").text)
        assert page.scripts[0] == "/api/docs/static/swagger-ui-bundle.js"
        assert page.config["options"]["url"] == "/api/openapi.json"
        assert page.config["oauth2RedirectPath"] == "/api/docs/oauth2-redirect"
        redirect = parse_page(client.get("/docs/oauth2-redirect").text)
        assert redirect.scripts == ["/api/docs/static/oauth2-redirect.js"]


def test_swagger_ui_parameters_override_the_defaults(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    app = FastAPI(
        docs_url=None, redoc_url=None, swagger_ui_parameters={"persistAuthorization": False}
    )
    auth.install(app)
    options = parse_page(TestClient(app).get("/docs").text).config["options"]
    assert options["persistAuthorization"] is False
    assert options["deepLinking"] is True  # FastAPI's defaults are kept


# --- Item: the page never lets a request-derived value out of its context -------------------


class Page(HTMLParser):
    """Every tag, attribute and script body of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        self._in_title = tag == "title"
        if self._in_script:
            self.script_bodies.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies[-1] += data
        if self._in_title:
            self.title += data

    @property
    def scripts(self) -> list[str]:
        return [str(a["src"]) for t, a in self.tags if t == "script" and "src" in a]

    @property
    def config(self) -> dict[str, Any]:
        [body] = [b for b in self.script_bodies if b]
        return json.loads(body)


def parse_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


DOCS_TAGS = [
    ("html", {"lang"}),
    ("head", set()),
    ("meta", {"charset"}),
    ("meta", {"name", "content"}),
    ("link", {"rel", "href"}),
    ("link", {"rel", "href"}),
    ("title", set()),
    ("body", set()),
    ("div", {"id"}),
    ("script", {"id", "type"}),
    ("script", {"src"}),
    ("script", {"src"}),
]

HOSTILE_ROOT_PATHS = [
    "/x'\"</script><script>alert(1)</script>",
    '/"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "/javascript:alert(1)//",
    "//evil.example",
    "///evil.example/x",
    "/\\evil.example",
    "\\evil.example",
    "/a\u2028b\u2029c",
    "/<!--",
    "/&lt;script&gt;",
    "/%2e%2e/%00",
    "/\u0000\n\r\t",
    "/ ",
]


def assert_confined(html: str, root_path: str) -> None:
    """Every root_path-derived value is a same-origin path, in its expected place only."""
    page = parse_page(html)
    assert [(tag, set(attrs)) for tag, attrs in page.tags] == DOCS_TAGS
    assert page.title == "Items - Swagger UI"
    expected_root = base_path(root_path)
    # The path, once decoded, is the root path (slashes normalised); nothing more.
    segments = [segment for segment in root_path.split("/") if segment]
    assert unquote(expected_root) == ("/" + "/".join(segments) if segments else "")
    urls = [
        str(attrs.get("href") or attrs.get("src"))
        for tag, attrs in page.tags
        if tag in ("link", "script") and ("href" in attrs or "src" in attrs)
    ]
    config = page.config
    urls += [config["options"]["url"], config["oauth2RedirectPath"]]
    suffixes = [
        "/docs/static/swagger-ui.css",
        "/docs/static/favicon.png",
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui-init.js",
        "/openapi.json",
        "/docs/oauth2-redirect",
    ]
    for url, suffix in zip(urls, suffixes, strict=True):
        assert url == expected_root + suffix
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("", "", "", "")
        assert url.startswith("/")
        assert not url.startswith(("//", "/\\"))
        assert all(c.isascii() and c.isprintable() and c not in "\"'<>\\ " for c in url)
    # The JSON data block: nothing a tokenizer could end the element with.
    raw = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    assert not set(raw) & set("<>&\u2028\u2029")


@pytest.mark.parametrize("root_path", HOSTILE_ROOT_PATHS)
def test_a_hostile_root_path_stays_in_its_context(fake_issuer: FakeIssuer, root_path: str) -> None:
    app, _ = build(fake_issuer, swagger_login=SwaggerLogin("hydra", client_id="docs"))
    response = TestClient(app, root_path=root_path).get("/docs")
    assert response.status_code == 200
    assert_confined(response.text, root_path)
    redirect = TestClient(app, root_path=root_path).get("/docs/oauth2-redirect")
    [script] = parse_page(redirect.text).scripts
    assert script == base_path(root_path) + "/docs/static/oauth2-redirect.js"


@pytest.fixture(scope="module")
def login_app(authbridge_signing_key: Any) -> FastAPI:
    app, _ = build(
        FakeIssuer(key=authbridge_signing_key),
        swagger_login=SwaggerLogin("hydra", client_id="docs"),
    )
    return app


@settings(max_examples=150, deadline=None)
@given(root_path=st.text(max_size=40))
def test_any_root_path_stays_in_its_context(login_app: FastAPI, root_path: str) -> None:
    response = TestClient(login_app, root_path=root_path).get("/docs")
    assert response.status_code == 200
    assert_confined(response.text, root_path)


def test_a_templated_mount_reflects_nothing(fake_issuer: FakeIssuer) -> None:
    api, _ = build(fake_issuer)
    outer = FastAPI(docs_url=None, openapi_url=None)
    outer.mount("/{tenant}", api)
    tenant = '"><img src=x onerror=alert(1)>'
    response = TestClient(outer).get(f"/{tenant}/docs")
    assert response.status_code == 200
    assert tenant not in response.text
    assert_confined(response.text, "/" + tenant)


@given(value=st.recursive(st.none() | st.booleans() | st.text(), st.lists))
def test_json_for_html_round_trips_and_stays_inert(value: Any) -> None:
    text = json_for_html({"v": value})
    assert json.loads(text) == {"v": value}
    assert not set(text) & set("<>&\u2028\u2029")
    assert text.isascii()


# --- Item: a strict Content-Security-Policy and nosniff on every page --------------------


def directives(header: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        assert name not in found
        found[name] = values
    return found


def test_every_page_and_asset_sends_the_security_headers(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer, swagger_login=SwaggerLogin("hydra", client_id="docs"))
    paths = [
        "/docs",
        "/docs/oauth2-redirect",
        *(
            f"/docs/static/{name}"
            for name in (
                "swagger-ui-bundle.js",
                "swagger-ui.css",
                "favicon.png",
                "swagger-ui-init.js",
                "oauth2-redirect.js",
            )
        ),
    ]
    with TestClient(app) as client:
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["referrer-policy"] == "no-referrer", path
            policy = directives(response.headers["content-security-policy"])
            assert policy["default-src"] == ["'none'"], path
            assert policy["frame-ancestors"] == ["'none'"], path
            assert policy["base-uri"] == ["'none'"], path
            assert policy["object-src"] == ["'none'"], path
            assert policy.get("script-src", ["'self'"]) == ["'self'"], path
            text = response.headers["content-security-policy"]
            assert "unsafe" not in text, path
            assert "*" not in text, path
        for page in ("/docs", "/docs/oauth2-redirect"):
            assert client.get(page).headers["cache-control"] == "no-store"


def test_the_docs_page_may_call_the_token_endpoint_only(fake_issuer: FakeIssuer) -> None:
    app, _ = build(
        fake_issuer,
        swagger_login=SwaggerLogin(
            "hydra", client_id="docs", token_url="https://login.example.test:8443/oauth2/token"
        ),
    )
    with TestClient(app) as client:
        policy = directives(client.get("/docs").headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    # Its own origin and the token endpoint: no discovery document, no other origin.
    assert policy["connect-src"] == ["'self'", "https://login.example.test:8443"]


def test_the_openapi_servers_are_reachable_from_the_page(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        servers=[{"url": "https://api.example.test/v1"}, {"url": "/v2"}],
    )
    auth.install(app)
    policy = directives(TestClient(app).get("/docs").headers["content-security-policy"])
    assert policy["connect-src"] == ["'self'", "https://api.example.test"]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://login.example.test/token", "https://login.example.test"),
        ("http://127.0.0.1:9000/t?x=1", "http://127.0.0.1:9000"),
        ("https://[::1]:8443/t", "https://[::1]:8443"),
        ("HTTPS://Login.Example.Test/t", "https://login.example.test"),
        ("https://evil.example; script-src *", None),
        ("https://evil.example/'unsafe-inline'", "https://evil.example"),
        ("https://user:pw@evil.example/", None),
        ("javascript:alert(1)", None),
        ("data:text/html,x", None),
        ("/relative", None),
        ("https://", None),
        ("https://exa mple.test/", None),
        ("https://[::1", None),
    ],
)
def test_csp_origins_are_plain_origins(url: str, origin: str | None) -> None:
    assert csp_origin(url) == origin
    if origin is None:
        assert docs_csp([url]) == docs_csp([])


FASTAPI_PAGES = [None, "/docs", "/redoc", "/swagger", "/api-docs"]


@pytest.mark.parametrize("app_docs_url", FASTAPI_PAGES)
@pytest.mark.parametrize("app_redoc_url", FASTAPI_PAGES)
@pytest.mark.parametrize("docs_url", ["/docs", "/swagger", None])
def test_install_refuses_fastapis_own_pages_next_to_swagger_ui(
    fake_issuer: FakeIssuer,
    app_docs_url: str | None,
    app_redoc_url: str | None,
    docs_url: str | None,
) -> None:
    """FastAPI's docs or ReDoc page on any path, next to authbridge's Swagger UI: refused."""
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    app = FastAPI(docs_url=app_docs_url, redoc_url=app_redoc_url)
    routes, openapi = list(app.routes), app.openapi
    if docs_url is None or (app_docs_url is None and app_redoc_url is None):
        auth.install(app, docs_url=docs_url)  # no Swagger UI of authbridge, or nothing else
        return
    # Without an OpenAPI document FastAPI registers neither page: nothing to refuse.
    auth.install(FastAPI(docs_url=app_docs_url, redoc_url=app_redoc_url, openapi_url=None))
    with pytest.raises(ConfigurationError) as caught:
        auth.install(app, docs_url=docs_url)
    error = caught.value
    assert error.reason == "create_the_app_with_docs_url_none"
    assert "FastAPI(docs_url=None, redoc_url=None)" in error.message  # the fix
    assert "docs_url=None to install()" in error.message  # the other way out
    for name, url in (("docs page", app_docs_url), ("ReDoc page", app_redoc_url)):
        assert (f"{name} at {url}" in error.message) is (url is not None)
    assert (app.routes, app.openapi) == (routes, openapi)  # the app is left as it was


def test_the_documented_app_serves_no_page_of_fastapis_own(fake_issuer: FakeIssuer) -> None:
    """Under a templated mount with a hostile root_path, every HTML page of the app is
    authbridge's: none reflects the path, each sends the strict CSP (FastAPI's ReDoc page
    pasted root_path unescaped, on the origin where Swagger UI keeps the token)."""
    api, _ = build(fake_issuer)
    outer = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    outer.mount("/{tenant}", api)
    tenant = '"><img src=x onerror=alert(1)>'
    client = TestClient(outer)
    # FastAPI's pages and authbridge's, wherever either puts them by default.
    paths = ["/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/items"]
    pages = []
    for path in paths:
        response = client.get(f"/{tenant}{path}")
        if response.headers.get("content-type", "").startswith("text/html"):
            pages.append(path)
            assert tenant not in response.text, path
            assert "default-src 'none'" in response.headers["content-security-policy"], path
    assert pages == ["/docs", "/docs/oauth2-redirect"]  # authbridge's, nothing of FastAPI's
    assert client.get(f"/{tenant}/redoc").status_code == 404


def test_protected_resource_metadata(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer, resource="https://api.example.test")
    with TestClient(app) as client:
        response = client.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200
        assert response.json() == {
            "resource": "https://api.example.test",
            "authorization_servers": [fake_issuer.issuer],
            "scopes_supported": ["items:read", "items:write"],
            "bearer_methods_supported": ["header"],
        }
        challenge = client.get("/items").headers["www-authenticate"]
        assert challenge == (
            'Bearer resource_metadata="https://api.example.test/.well-known/oauth-protected-resource"'
        )
        bad = client.get("/items", headers={"Authorization": "Bearer nope"})
        assert 'resource_metadata="' in bad.headers["www-authenticate"]
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_protected_resource_metadata_for_a_resource_with_a_path(fake_issuer: FakeIssuer) -> None:
    app, auth = build(
        fake_issuer,
        resource="https://example.test/api",
        scopes_supported=["items:read"],
        allow_query_token=True,
    )
    assert (
        auth.resource_metadata_url
        == "https://example.test/.well-known/oauth-protected-resource/api"
    )
    with TestClient(app) as client:
        suffixed = client.get("/.well-known/oauth-protected-resource/api").json()
        assert suffixed["resource"] == "https://example.test/api"
        assert suffixed["scopes_supported"] == ["items:read"]
        assert suffixed["bearer_methods_supported"] == ["header", "query"]
        assert client.get("/.well-known/oauth-protected-resource").json() == suffixed


def test_resource_must_be_a_url(fake_issuer: FakeIssuer) -> None:
    with pytest.raises(ConfigurationError):
        AuthBridge(providers=[fake_issuer.provider()], resource="api")


def test_swagger_login_needs_a_configured_oidc_provider(fake_issuer: FakeIssuer) -> None:
    with pytest.raises(ConfigurationError):
        AuthBridge(
            providers=[fake_issuer.provider()], swagger_login=SwaggerLogin("nope", client_id="x")
        )


class HydraLikeIssuer(FakeIssuer):
    def discovery_document(self) -> dict:
        document = super().discovery_document()
        document["authorization_endpoint"] = f"{self.issuer}/oauth2/auth"
        document["token_endpoint"] = f"{self.issuer}/oauth2/token"
        return document


async def test_login_endpoints_come_from_discovery() -> None:
    fake = HydraLikeIssuer()
    app, auth = build(fake, swagger_login=SwaggerLogin("hydra", client_id="docs"))
    async with auth:
        flow = app.openapi()["components"]["securitySchemes"]["hydra"]["flows"]
    assert flow["authorizationCode"]["authorizationUrl"] == f"{fake.issuer}/oauth2/auth"
    assert flow["authorizationCode"]["tokenUrl"] == f"{fake.issuer}/oauth2/token"
