"""Checks and small configuration objects of ``AuthBridge``: the Swagger login, scope lists,
FastAPI's own docs pages."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI

from ..errors import ConfigurationError

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
