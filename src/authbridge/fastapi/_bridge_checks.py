"""Parts of ``AuthBridge`` that stand alone: the Swagger login and its scheme, RFC 9728
metadata, and the checks of scope lists and FastAPI's own docs pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.responses import JSONResponse

from ..errors import ConfigurationError
from ..metadata import ProviderMetadata
from ..resource.provider import JWTProvider
from ._schemes import authorization_code_model

PRM_PATH = "/.well-known/oauth-protected-resource"

logger = logging.getLogger("authbridge.fastapi")


@dataclass(frozen=True, slots=True)
class SwaggerLogin:
    """Log in from Swagger UI's "Authorize" at an OpenID provider (authorization code + PKCE).

    Swagger UI acts as a *public* client: register ``client_id`` at the provider
    as a public (no secret) client allowing the authorization code grant with
    PKCE, with ``<your app>/docs/oauth2-redirect`` as redirect URI, and allow
    your app's origin for CORS on its token endpoint.

    Args:
        provider: Name of an [OIDCProvider][authbridge.OIDCProvider] of this
            [AuthBridge][authbridge.AuthBridge].
        client_id: The public client Swagger UI uses.
        scopes: Scopes offered in the dialog (name → description, or a list of
            names); all are pre-selected.
        authorization_url: The authorization endpoint; from discovery if omitted.
        token_url: The token endpoint; from discovery if omitted.
        extra_params: Added to the authorization request, e.g. ``{"audience":
            "https://api.example.org"}`` (Auth0) or ``{"resource": ...}`` (RFC 8707).
    """

    provider: str
    client_id: str
    scopes: Mapping[str, str] | Sequence[str] = ()
    authorization_url: str | None = None
    token_url: str | None = None
    extra_params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_scope_list(self.scopes, "SwaggerLogin(scopes=...)")

    def scope_descriptions(self) -> dict[str, str]:
        """Scopes as the OpenAPI flow object lists them."""
        if isinstance(self.scopes, Mapping):
            return dict(self.scopes)
        return {scope: scope for scope in self.scopes}


def refuse_fastapi_docs_pages(app: FastAPI, docs_url: str) -> None:
    """FastAPI's own pages next to authbridge's Swagger UI are a hole in it.

    They load scripts from a CDN without a Content-Security-Policy, and FastAPI
    pastes ``root_path`` into them unescaped (reflected script under a templated
    mount), on the same origin where authbridge's Swagger UI keeps the bearer
    token in ``localStorage`` (``persistAuthorization``).
    """
    # FastAPI registers them only with an OpenAPI document to show.
    pages = [
        f"{name} at {url}"
        for name, url in (("docs page", app.docs_url), ("ReDoc page", app.redoc_url))
        if url and app.openapi_url
    ]
    if pages:
        raise ConfigurationError(
            "create_the_app_with_docs_url_none",
            message=(
                f"FastAPI's own {' and '.join(pages)} would be served next to authbridge's "
                f"Swagger UI at {docs_url}, on the origin where it keeps the bearer token "
                "(CDN scripts, no Content-Security-Policy, root_path reflected unescaped): "
                "create the app with FastAPI(docs_url=None, redoc_url=None), or pass "
                "docs_url=None to install() to keep FastAPI's pages instead"
            ),
        )


def require_scope_list(scopes: object, where: str) -> None:
    """A string where a list of scopes goes is a mistake, not a list of letters."""
    if isinstance(scopes, str | bytes):
        text = scopes if isinstance(scopes, str) else scopes.decode("latin-1")
        suggestion = [s for s in text.split(" ") if s] or [text]
        raise ConfigurationError(
            "scopes_must_be_a_list",
            message=(
                f"{where} takes a list of scopes, e.g. {suggestion!r}, not the string "
                f"{scopes!r} (which would be read letter by letter)"
            ),
        )


def warn_explaining() -> None:
    logger.warning(
        "authbridge: explain_refusals is ON: 401/403/503 bodies carry refusal reasons and "
        "values taken from tokens. Development only: turn it off in production."
    )


def swagger_login_model(
    provider: JWTProvider, login: SwaggerLogin, metadata: ProviderMetadata | None
) -> OAuth2Model:
    """The authorization-code scheme of a `SwaggerLogin` at ``provider``."""
    # Until discovery ran (in the lifespan), configured or conventional URLs.
    base = provider.issuer.rstrip("/")
    authorization_url = login.authorization_url or (
        (metadata and metadata.authorization_endpoint) or f"{base}/authorize"
    )
    token_url = login.token_url or ((metadata and metadata.token_endpoint) or f"{base}/token")
    return authorization_code_model(
        authorization_url=authorization_url,
        token_url=token_url,
        scopes=login.scope_descriptions(),
        description=f"Log in at {provider.name} (authorization code with PKCE)",
    )


def install_resource_metadata(
    app: FastAPI, resource: str, document: Callable[[], dict[str, Any]]
) -> str:
    """Serve RFC 9728 metadata for ``resource``; return its absolute URL."""
    parts = urlsplit(resource)
    path = PRM_PATH + parts.path.rstrip("/")

    async def protected_resource_metadata() -> JSONResponse:
        return JSONResponse(
            document(),
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    app.add_api_route(path, protected_resource_metadata, include_in_schema=False)
    if path != PRM_PATH:
        # Clients that only know the host look here too.
        app.add_api_route(PRM_PATH, protected_resource_metadata, include_in_schema=False)
    return f"{parts.scheme}://{parts.netloc}{path}"


def resource_metadata(
    app: FastAPI,
    *,
    resource: str,
    scopes_supported: Sequence[str] | None,
    allow_query_token: bool,
    authorization_servers: Sequence[str],
) -> dict[str, Any]:
    """The RFC 9728 document; the scopes are every route's when none are configured."""
    scopes = scopes_supported
    if scopes is None:
        found: set[str] = set()
        for operations in app.openapi().get("paths", {}).values():
            for operation in operations.values():
                for requirement in operation.get("security", ()):
                    for names in requirement.values():
                        found.update(names)
        scopes = tuple(sorted(found))
    return {
        "resource": resource,
        "authorization_servers": list(authorization_servers),
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header", "query"] if allow_query_token else ["header"],
    }
