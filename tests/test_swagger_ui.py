"""Swagger UI served from the package, and RFC 9728 protected resource metadata."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

from authbridge import AuthBridge, ConfigurationError, Principal, SwaggerLogin
from authbridge.testing import FakeIssuer


def build(fake: FakeIssuer, **kwargs: object) -> tuple[FastAPI, AuthBridge]:
    auth = AuthBridge(providers=[fake.provider("hydra")], transport=fake.transport, **kwargs)  # type: ignore[arg-type]
    app = FastAPI(title="Items", docs_url=None, lifespan=auth.lifespan)

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
        assert "/docs/static/swagger-ui-bundle.js" in html
        assert '"usePkceWithAuthorizationCodeGrant": true' in html
        assert '"clientId": "docs"' in html
        assert "/docs/oauth2-redirect" in html
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
        assert "oauth2" in redirect.text.lower()


def test_docs_page_honours_root_path(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer)
    with TestClient(app, root_path="/api") as client:
        html = client.get("/docs").text
        assert "/api/docs/static/swagger-ui-bundle.js" in html
        assert "/api/openapi.json" in html


def test_install_refuses_a_cdn_docs_page_on_the_same_path(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    with pytest.raises(ConfigurationError):
        auth.install(FastAPI())  # FastAPI's default docs_url is /docs
    auth.install(FastAPI(), docs_url="/swagger")  # another path is fine


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
