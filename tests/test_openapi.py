"""The OpenAPI document: a bearer scheme Swagger's Authorize accepts, scopes per route.

The document is compared with a committed snapshot and validated against the
OpenAPI specification. Set ``AUTHBRIDGE_UPDATE_SNAPSHOTS=1`` to rewrite it after an
intended change (and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Security
from openapi_spec_validator import validate
from pydantic import BaseModel

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
                "Paste an access token from any of these sources:\n\n"
                "- **hydra**: An access token (JWT) issued by https://auth.example.org/\n"
                "- **auth0**: An access token (JWT) issued by https://tenant.eu.auth0.com/"
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
    app = FastAPI(title="login", version="1", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {}

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict:
        """Who you are."""
        return {}

    @app.get("/public")
    async def public() -> dict:
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
    ]
    # Optional: an empty requirement too, so anonymous calls are documented as fine.
    assert document["paths"]["/maybe"]["get"]["security"] == [
        {"BearerToken": []},
        {"hydra": []},
        {},
    ]
    schemes = document["components"]["securitySchemes"]
    assert schemes["hydra"]["type"] == "oauth2"
    flow = schemes["hydra"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == "https://auth.example.org/oauth2/auth"
    assert flow["tokenUrl"] == "https://auth.example.org/oauth2/token"
    assert flow["scopes"] == {"openid": "Sign in", "items:read": "Read items"}
    # No openIdConnect scheme: Swagger UI would show a box per grant of the discovery document.
    assert set(schemes) == {"BearerToken", "hydra"}


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
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {}

    @app.get("/public")
    async def public() -> dict:
        return {}

    auth.install(app)
    document = app.openapi()
    validate(document)
    # One paste-a-token box for every source; the login schemes as alternatives.
    assert document["paths"]["/items"]["get"]["security"] == [
        {"BearerToken": ["items:read"]},
        {"hydra": ["items:read"]},
    ]
    assert "security" not in document["paths"]["/public"]["get"]
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"BearerToken", "hydra"}
    assert schemes["BearerToken"]["description"].splitlines() == [
        "Paste an access token from any of these sources:",
        "",
        "- **hydra**: An access token (JWT or opaque) issued by https://auth.example.org/",
        "- **github**: A GitHub token "
        "(ghp_..., gho_..., ghu_..., ghs_..., ghr_..., github_pat_...)",
        "- **google**: A Google ID token or access token (ya29.)",
    ]
    assert schemes["hydra"]["type"] == "oauth2"  # the login scheme
    # Built once; the routes' own requirement objects are not duplicated on rebuilds.
    assert app.openapi() is document
    app.openapi_schema = None
    assert (
        app.openapi()["paths"]["/items"]["get"]["security"]
        == document["paths"]["/items"]["get"]["security"]
    )


# --- What install() adds to each protected operation ---------------------------------------


def installed(build_routes) -> FastAPI:
    auth = AuthBridge(
        providers=[
            OIDCProvider(
                "hydra", issuer="https://auth.example.org/", audience="https://api.example.org"
            )
        ]
    )
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)
    build_routes(app, auth)
    auth.install(app)
    return app


def test_refusals_are_declared_with_their_headers() -> None:
    def routes(app: FastAPI, auth: AuthBridge) -> None:
        @app.get("/items")
        async def items(
            user: Principal = Security(auth.principal, scopes=["items:read", "items:write"]),
        ) -> dict:
            return {}

        @app.get("/me")
        async def me(user: Principal = Security(auth.principal)) -> dict:
            return {}

        @app.get("/public")
        async def public() -> dict:
            return {}

    document = installed(routes).openapi()
    validate(document)
    items = document["paths"]["/items"]["get"]["responses"]
    assert set(items) == {"200", "401", "403", "503"}
    assert "WWW-Authenticate" in items["401"]["headers"]
    forbidden = items["403"]
    assert forbidden["description"] == (
        "The token lacks a required scope: `items:read`, `items:write`"
    )
    assert (
        'scope="items:read items:write"' in forbidden["headers"]["WWW-Authenticate"]["description"]
    )
    assert items["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    me = document["paths"]["/me"]["get"]["responses"]
    assert set(me) == {"200", "401", "503"}  # no scope, no 403
    assert set(document["paths"]["/public"]["get"]["responses"]) == {"200"}


def test_scopes_are_in_the_description() -> None:
    def routes(app: FastAPI, auth: AuthBridge) -> None:
        @app.get("/items")
        async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
            """List the items."""
            return {}

        @app.get("/me", description="Who you are.")
        async def me(user: Principal = Security(auth.principal)) -> dict:
            return {}

        @app.get("/maybe")
        async def maybe(
            user: Principal | None = Security(auth.optional_principal, scopes=["items:read"]),
        ) -> dict:
            return {}

        @app.get("/hello")
        async def hello(user: Principal | None = Security(auth.optional_principal)) -> dict:
            return {}

    app = installed(routes)
    paths = app.openapi()["paths"]
    assert paths["/items"]["get"]["description"] == (
        "List the items.\n\nRequires scopes: `items:read`."
    )
    assert paths["/me"]["get"]["description"] == "Who you are."
    assert paths["/maybe"]["get"]["description"] == (
        "Access token optional; when one is sent, it requires scopes: `items:read`."
    )
    assert paths["/hello"]["get"]["description"] == "Access token optional."
    assert {} in paths["/hello"]["get"]["security"]
    assert "403" not in paths["/hello"]["get"]["responses"]
    # Rebuilding the document adds nothing twice.
    app.openapi_schema = None
    again = app.openapi()["paths"]
    assert again == paths


def test_router_scopes_add_up_and_prefixes_are_followed() -> None:
    def routes(app: FastAPI, auth: AuthBridge) -> None:
        admin = APIRouter(dependencies=[Security(auth.principal, scopes=["admin"])])

        @admin.get("/items")
        async def admin_items(
            user: Principal = Security(auth.principal, scopes=["items:read"]),
        ) -> dict:
            return {}

        inner = APIRouter()

        @inner.get("/maybe")
        async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
            return {}

        app.include_router(admin, prefix="/admin")
        app.include_router(inner, prefix="/v1")

    document = installed(routes).openapi()
    validate(document)
    operation = document["paths"]["/admin/items"]["get"]
    assert operation["description"] == "Requires scopes: `admin`, `items:read`."
    assert "`admin`, `items:read`" in operation["responses"]["403"]["description"]
    assert {} not in operation["security"]
    assert {} in document["paths"]["/v1/maybe"]["get"]["security"]


def test_responses_the_app_declares_are_kept() -> None:
    def routes(app: FastAPI, auth: AuthBridge) -> None:
        @app.get("/items", responses={401: {"description": "Log in first"}})
        async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
            return {}

    responses = installed(routes).openapi()["paths"]["/items"]["get"]["responses"]
    assert responses["401"] == {"description": "Log in first"}
    assert "403" in responses


class AuthRefusal(BaseModel):
    code: int


def test_an_app_model_named_like_the_refusal_schema_is_left_alone() -> None:
    def routes(app: FastAPI, auth: AuthBridge) -> None:
        @app.get("/items")
        async def items(
            user: Principal = Security(auth.principal, scopes=["items:read"]),
        ) -> AuthRefusal:
            return AuthRefusal(code=1)

    document = installed(routes).openapi()
    validate(document)
    assert document["components"]["schemas"]["AuthRefusal"]["properties"] == {
        "code": {"title": "Code", "type": "integer"}
    }
    body = document["paths"]["/items"]["get"]["responses"]["401"]["content"]
    assert body["application/json"]["schema"]["required"] == ["detail"]  # inlined
