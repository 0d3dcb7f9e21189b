"""The OpenAPI document: a bearer scheme Swagger's Authorize accepts, scopes per route.

The document is compared with a committed snapshot and validated against the
OpenAPI specification. Set ``AUTHBRIDGE_UPDATE_SNAPSHOTS=1`` to rewrite it after an
intended change (and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Security
from openapi_spec_validator import validate

from authbridge import (
    AuthBridge,
    GitHubProvider,
    GoogleProvider,
    Introspection,
    OIDCProvider,
    Principal,
    SwaggerLogin,
)

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"


def build_app() -> FastAPI:
    auth = AuthBridge(
        providers=[
            OIDCProvider(
                "hydra", issuer="https://auth.example.org/", audience="https://api.example.org"
            ),
            OIDCProvider(
                "auth0", issuer="https://tenant.eu.auth0.com/", audience="https://api.example.org"
            ),
        ]
    )
    app = FastAPI(title="snapshot", version="1", lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        return user

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {}

    @app.get("/public")
    async def public() -> dict:
        return {}

    return app


def test_openapi_matches_snapshot_and_spec() -> None:
    document = build_app().openapi()
    validate(document)
    rendered = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if os.environ.get("AUTHBRIDGE_UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    assert rendered == SNAPSHOT.read_text(encoding="utf-8")


def test_security_scheme_is_http_bearer() -> None:
    document = build_app().openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "BearerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "Paste an access token issued by: hydra (https://auth.example.org/), "
                "auth0 (https://tenant.eu.auth0.com/)"
            ),
        }
    }
    paths = document["paths"]
    assert paths["/items"]["get"]["security"] == [{"BearerToken": ["items:read"]}]
    assert paths["/me"]["get"]["security"] == [{"BearerToken": []}]
    assert "security" not in paths["/public"]["get"]


SNAPSHOT_LOGIN = Path(__file__).parent / "snapshots" / "openapi_login.json"


def build_login_app() -> tuple[FastAPI, AuthBridge]:
    hydra = OIDCProvider(
        "hydra", issuer="https://auth.example.org/", audience="https://api.example.org"
    )
    auth = AuthBridge(
        providers=[hydra],
        swagger_login=SwaggerLogin(
            "hydra",
            client_id="api-docs",
            scopes={"openid": "Sign in", "items:read": "Read items"},
            authorization_url="https://auth.example.org/oauth2/auth",
            token_url="https://auth.example.org/oauth2/token",
            extra_params={"audience": "https://api.example.org"},
        ),
        resource="https://api.example.org",
    )
    app = FastAPI(title="login", version="1", docs_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {}

    auth.install(app)
    return app, auth


def test_login_schemes_are_alternatives() -> None:
    app, _ = build_login_app()
    document = app.openapi()
    validate(document)
    rendered = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if os.environ.get("AUTHBRIDGE_UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT_LOGIN.exists():
        SNAPSHOT_LOGIN.write_text(rendered, encoding="utf-8")
    assert rendered == SNAPSHOT_LOGIN.read_text(encoding="utf-8")
    # Separate requirement objects: any ONE of them is enough (OR, not AND).
    assert document["paths"]["/items"]["get"]["security"] == [
        {"BearerToken": ["items:read"]},
        {"hydra": ["items:read"]},
        {"hydra-oidc": ["items:read"]},
    ]
    schemes = document["components"]["securitySchemes"]
    assert schemes["hydra"]["type"] == "oauth2"
    flow = schemes["hydra"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == "https://auth.example.org/oauth2/auth"
    assert flow["tokenUrl"] == "https://auth.example.org/oauth2/token"
    assert flow["scopes"] == {"openid": "Sign in", "items:read": "Read items"}
    assert schemes["hydra-oidc"] == {
        "type": "openIdConnect",
        "openIdConnectUrl": "https://auth.example.org/.well-known/openid-configuration",
        "description": "OpenID Connect discovery of hydra",
    }


def test_swagger_ui_init_oauth_uses_pkce_without_a_secret() -> None:
    _, auth = build_login_app()
    assert auth.swagger_ui_init_oauth == {
        "clientId": "api-docs",
        "usePkceWithAuthorizationCodeGrant": True,
        "scopes": "openid items:read",
        "additionalQueryStringParams": {"audience": "https://api.example.org"},
    }
    assert "clientSecret" not in json.dumps(auth.swagger_ui_init_oauth)


def test_several_sources_are_listed_as_alternatives() -> None:
    auth = AuthBridge(
        providers=[
            OIDCProvider(
                "hydra",
                issuer="https://auth.example.org/",
                audience="https://api.example.org",
                introspection=Introspection(client_id="api", client_secret="secret"),
            ),
            GitHubProvider(),
            GoogleProvider(client_ids=["web.apps.googleusercontent.com"]),
        ],
        swagger_login=SwaggerLogin(
            "hydra",
            client_id="docs",
            authorization_url="https://auth.example.org/oauth2/auth",
            token_url="https://auth.example.org/oauth2/token",
        ),
    )
    app = FastAPI(docs_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/public")
    async def public() -> dict:
        return {}

    auth.install(app)
    document = app.openapi()
    validate(document)
    assert document["paths"]["/items"]["get"]["security"] == [
        {"BearerToken": ["items:read"]},
        {"github": ["items:read"]},
        {"google": ["items:read"]},
        {"hydra": ["items:read"]},
        {"hydra-oidc": ["items:read"]},
    ]
    assert "security" not in document["paths"]["/public"]["get"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["github"] == {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A GitHub token (ghp_..., gho_..., ghu_..., ghs_..., ghr_..., github_pat_...)"
        ),
    }
    assert schemes["google"]["description"] == "A Google ID token or access token (ya29.)"
    assert schemes["hydra"]["type"] == "oauth2"  # the login scheme, not a second paste box
    # Built once; the routes' own requirement objects are not duplicated on rebuilds.
    assert app.openapi() is document
    app.openapi_schema = None
    assert (
        app.openapi()["paths"]["/items"]["get"]["security"]
        == document["paths"]["/items"]["get"]["security"]
    )
