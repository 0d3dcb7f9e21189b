"""Swagger UI served from the package: no CDN, so it works offline and in locked-down networks.

The Swagger UI files (a current ``swagger-ui-dist`` build, Apache-2.0) come from
the ``fastapi-offline`` distribution (MIT); we only serve them. See
``docs/decisions.md``.

The page is rendered here, not by FastAPI's ``get_swagger_ui_html``, because
its URLs carry the request's ``root_path``, which a templated mount
(``app.mount("/{tenant}", api)``) takes from the request line: every value is
escaped for the context it lands in, the settings travel as a JSON data block
(never executed), and the only scripts are files served from the package, so
the page can send a strict Content-Security-Policy.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Callable, Iterable
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse, Response

_JS = "text/javascript; charset=utf-8"
# name -> (package whose static/ folder holds it, media type)
_ASSETS = {
    "swagger-ui-bundle.js": ("fastapi_offline", _JS),
    "swagger-ui.css": ("fastapi_offline", "text/css; charset=utf-8"),
    "favicon.png": ("fastapi_offline", "image/png"),
    "swagger-ui-init.js": ("authbridge.fastapi", _JS),
    "oauth2-redirect.js": ("authbridge.fastapi", _JS),
}

SWAGGER_UI_DEFAULTS: dict[str, Any] = {
    **swagger_ui_default_parameters,
    # Keep the token across reloads (in the browser's localStorage).
    "persistAuthorization": True,
    # Swagger UI would otherwise send the document's URL to validator.swagger.io.
    "validatorUrl": None,
}
"""Swagger UI settings authbridge starts from; ``swagger_ui_parameters`` override them."""

# Sent with every response of these routes (pages and assets).
_COMMON_HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
# Pages may carry an authorization code in their URL: never cached, never referred.
_PAGE_HEADERS = {**_COMMON_HEADERS, "Cache-Control": "no-store"}
_LOCKED = "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
ASSET_CSP = f"default-src 'none'; {_LOCKED}; form-action 'none'"
REDIRECT_CSP = f"default-src 'none'; script-src 'self'; {_LOCKED}; form-action 'none'"

# An origin as it may appear in a CSP source list: scheme://host[:port], nothing else.
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)


def docs_csp(connect_origins: Iterable[str] = ()) -> str:
    """The Content-Security-Policy of the Swagger UI page.

    Args:
        connect_origins: Origins (or URLs, reduced to their origin) the page
            may call besides its own: the provider's token endpoint and
            discovery document for Swagger login, and the OpenAPI ``servers``.
            Anything that is not a plain http(s) origin is left out.
    """
    connect = ["'self'"]
    for value in connect_origins:
        origin = csp_origin(value)
        if origin is not None and origin not in connect:
            connect.append(origin)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob:; font-src 'self' data:; "
        f"connect-src {' '.join(connect)}; {_LOCKED}; form-action 'self'"
    )


def csp_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or ``None`` if it cannot go in a CSP."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc.lower()}"
    return origin if _ORIGIN.fullmatch(origin) else None


def base_path(root_path: str) -> str:
    """``root_path`` as a URL path prefix: percent-encoded, one leading slash, no trailing one.

    The result has only unreserved characters, ``%`` escapes and ``/``, so it is
    a plain path in every context (no scheme, no host, no quote, no ``<``), and
    ``//host`` or ``/\\host`` cannot turn it into another origin.
    """
    quoted = quote(root_path, safe="/-._~").strip("/")
    return "/" + re.sub("/{2,}", "/", quoted) if quoted else ""


def json_for_html(value: Any) -> str:
    """JSON safe inside an HTML ``<script>`` element: no ``<``, ``>``, ``&``, U+2028/U+2029."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    # ensure_ascii already escaped U+2028/U+2029 (and every other non-ASCII character).
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_swagger_ui(
    *,
    base: str,
    docs_url: str,
    openapi_url: str,
    title: str,
    init_oauth: dict[str, Any] | None,
    parameters: dict[str, Any],
) -> str:
    """The Swagger UI page; ``base`` comes from `base_path`, the rest from the app."""
    static = f"{base}{docs_url}/static"
    config = {
        "options": {**parameters, "url": base + openapi_url},
        "oauth2RedirectPath": f"{base}{docs_url}/oauth2-redirect",
        "initOAuth": init_oauth,
    }

    def attr(url: str) -> str:
        return html.escape(url, quote=True)

    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f'<link rel="stylesheet" href="{attr(static + "/swagger-ui.css")}">\n'
        f'<link rel="icon" href="{attr(static + "/favicon.png")}">\n'
        f"<title>{html.escape(title, quote=False)}</title>\n"
        "</head>\n<body>\n"
        '<div id="swagger-ui"></div>\n'
        '<script id="authbridge-swagger-ui-config" type="application/json">'
        f"{json_for_html(jsonable_encoder(config))}</script>\n"
        f'<script src="{attr(static + "/swagger-ui-bundle.js")}"></script>\n'
        f'<script src="{attr(static + "/swagger-ui-init.js")}"></script>\n'
        "</body>\n</html>\n"
    )


def render_oauth2_redirect(*, base: str, docs_url: str) -> str:
    """The page the provider redirects to after a Swagger login; its script is a file."""
    src = html.escape(f"{base}{docs_url}/static/oauth2-redirect.js", quote=True)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Swagger UI: OAuth2 Redirect</title>\n</head>\n<body>\n"
        f'<script src="{src}"></script>\n'
        "</body>\n</html>\n"
    )


@functools.cache
def _asset(name: str) -> bytes:
    # Read once (1.5 MB for the bundle), not on every request from the event loop.
    package, _ = _ASSETS[name]
    return (files(package) / "static" / name).read_bytes()


def swagger_ui_router(
    *,
    docs_url: str = "/docs",
    openapi_url: str = "/openapi.json",
    title: str = "API docs",
    init_oauth: dict[str, Any] | None = None,
    swagger_ui_parameters: dict[str, Any] | None = None,
    connect_src: Iterable[str] | Callable[[], Iterable[str]] = (),
) -> APIRouter:
    """Routes serving Swagger UI at ``docs_url`` with its assets and OAuth2 redirect page.

    Create the app with ``FastAPI(docs_url=None, redoc_url=None)`` (FastAPI's own
    pages would share the origin where this one keeps the token) and include this
    router, or call ``auth.install(app)``, which does it for you.

    Every response carries ``Content-Security-Policy`` (scripts only from these
    routes, no inline script, no plug-ins, no framing, no ``<base>``),
    ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.

    Args:
        docs_url: Path of the page.
        openapi_url: Path of the OpenAPI document.
        title: The page's title.
        init_oauth: Swagger UI's ``initOAuth`` settings.
        swagger_ui_parameters: Swagger UI settings, over `SWAGGER_UI_DEFAULTS`
            (which turn ``persistAuthorization`` on).
        connect_src: Origins the page may call besides its own (``connect-src``
            of its CSP), or a function returning them on each request: the
            token endpoint of a Swagger login, API servers on other origins.
    """
    router = APIRouter(include_in_schema=False)
    static = f"{docs_url}/static"
    redirect = f"{docs_url}/oauth2-redirect"
    parameters = {**SWAGGER_UI_DEFAULTS, **(swagger_ui_parameters or {})}

    def origins() -> Iterable[str]:
        return connect_src() if callable(connect_src) else connect_src

    @router.get(docs_url, response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        page = render_swagger_ui(
            base=base_path(request.scope.get("root_path", "")),
            docs_url=docs_url,
            openapi_url=openapi_url,
            title=title,
            init_oauth=init_oauth,
            parameters=parameters,
        )
        headers = {**_PAGE_HEADERS, "Content-Security-Policy": docs_csp(origins())}
        return HTMLResponse(page, headers=headers)

    @router.get(redirect, response_class=HTMLResponse)
    async def oauth2_redirect(request: Request) -> HTMLResponse:
        page = render_oauth2_redirect(
            base=base_path(request.scope.get("root_path", "")), docs_url=docs_url
        )
        return HTMLResponse(
            page, headers={**_PAGE_HEADERS, "Content-Security-Policy": REDIRECT_CSP}
        )

    @router.get(static + "/{name}")
    async def asset(name: str) -> Response:
        found = _ASSETS.get(name)
        if found is None:
            raise HTTPException(status_code=404)
        return Response(
            _asset(name),
            media_type=found[1],
            headers={
                **_COMMON_HEADERS,
                "Content-Security-Policy": ASSET_CSP,
                "Cache-Control": "public, max-age=86400",
            },
        )

    return router
