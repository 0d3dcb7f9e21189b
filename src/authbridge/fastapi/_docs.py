"""Swagger UI served from the package: no CDN, so it works offline and in locked-down networks.

The Swagger UI files (a current ``swagger-ui-dist`` build, Apache-2.0) come from
the ``fastapi-offline`` distribution (MIT); we only serve them. See
``docs/decisions.md``.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# Pages that may carry an authorization code in their URL must not leak it.
_NO_REFERRER = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@functools.cache
def _asset(name: str) -> bytes:
    # Read once (1.5 MB for the bundle), not on every request from the event loop.
    return (files("fastapi_offline") / "static" / name).read_bytes()


def swagger_ui_router(
    *,
    docs_url: str = "/docs",
    openapi_url: str = "/openapi.json",
    title: str = "API docs",
    init_oauth: dict[str, Any] | None = None,
    swagger_ui_parameters: dict[str, Any] | None = None,
) -> APIRouter:
    """Routes serving Swagger UI at ``docs_url`` with its assets and OAuth2 redirect page.

    Create the app with ``FastAPI(docs_url=None)`` and include this router (or
    call ``auth.install(app)``, which does it for you).
    """
    router = APIRouter(include_in_schema=False)
    static = f"{docs_url}/static"
    redirect = f"{docs_url}/oauth2-redirect"

    @router.get(docs_url, response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{static}/swagger-ui.css",
            swagger_favicon_url=f"{root}{static}/favicon.png",
            oauth2_redirect_url=root + redirect,
            init_oauth=init_oauth,
            swagger_ui_parameters=swagger_ui_parameters,
        )
        page.headers.update(_NO_REFERRER)
        return page

    @router.get(redirect, response_class=HTMLResponse)
    async def oauth2_redirect() -> HTMLResponse:
        page = get_swagger_ui_oauth2_redirect_html()
        page.headers.update(_NO_REFERRER)
        return page

    @router.get(static + "/{name}")
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404)
        return Response(
            _asset(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router
