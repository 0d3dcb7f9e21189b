"""The demo API behind ``python -m authbridge demo``: no external service needed.

Two kinds of tokens are accepted:

- tokens of an embedded test issuer (`FakeIssuer`), fetched over real HTTP
  (discovery + JWKS), as from any external provider;
- the demo API's own tokens: it is an authorization server too
  ([AppIssuer][authbridge.AppIssuer]) on an embedded SQLite store (or
  PostgreSQL, with Redis beside it), with two local users, a machine client,
  a robot that acts for users and a public command-line client
  (`prepare_demo_store`).

With its store, the demo also logs people in: at the embedded test issuer
(its OpenID Connect web login, two users, the demo registered there as a
confidential client: `prepare_demo_provider`) or with a local password, from
Swagger UI's **AppLogin** box, from the server-rendered page ``/demo``
(a session cookie), and by exchanging the test issuer's tokens at
``/oauth/token`` (RFC 8693). A user lets the garage robot act for her: she
mints it a delegated token at ``/me/delegations``, which the garage route
accepts (naming who acts for whom) and a route for people in person refuses.

The page ``/demo`` shows the guide of `_demo_guide` (every flow, its curl
lines and its Swagger UI way); the accounts and clients are in
`_demo_accounts`.
"""

from __future__ import annotations

import html
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request, Security, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ._demo_accounts import (
    CLI_CLIENT,
    DEMO_AUDIENCE,
    DEMO_PAGE,
    DEMO_SCOPES,
    DEMO_USERS,
    GARAGE_CLIENT,
    GARAGE_SCOPE,
    LOCAL_USERS,
    LOGIN_CLIENT,
    MACHINE_CLIENT,
    PROVIDER,
    PROVIDER_LABEL,
    DemoCredentials,
    demo_login_settings,
    demo_store,
    demo_tokens,
    first_login,
    prepare_demo_provider,
    prepare_demo_store,
)
from ._demo_guide import (
    GARAGE_CODE,
    GARAGE_OPEN,
    GUIDE_CSS,
    HIDDEN,
    Section,
    demo_guide,
    guide_html,
    guide_text,
)
from .fastapi import AuthBridge
from .issuer import AppIssuer
from .resource.principal import Principal
from .store import Store
from .testing import FakeIssuer

__all__ = [
    "CLI_CLIENT",
    "DEMO_AUDIENCE",
    "DEMO_PAGE",
    "DEMO_USERS",
    "GARAGE_CLIENT",
    "LOCAL_USERS",
    "LOGIN_CLIENT",
    "MACHINE_CLIENT",
    "PROVIDER",
    "PROVIDER_LABEL",
    "DemoCredentials",
    "create_demo_app",
    "demo_guide",
    "demo_store",
    "demo_tokens",
    "first_login",
    "guide_text",
    "prepare_demo_provider",
    "prepare_demo_store",
]

GARAGE_LOG_SIZE = 20
"""How many garage events the page shows (the oldest are forgotten)."""


def create_demo_app(
    issuer: FakeIssuer,
    *,
    resource: str = "http://127.0.0.1:8000",
    store: str | Store | None = None,
    credentials: DemoCredentials | None = None,
) -> tuple[FastAPI, AuthBridge]:
    """Build the demo API trusting ``issuer`` (discovery + JWKS fetched over HTTP).

    With a ``store`` (a URL, or a store object such as `demo_store` makes),
    the API is an authorization server too, its issuer URL being
    ``resource`` (development mode: its signing keys are kept in the store
    unencrypted); fill the store with `prepare_demo_store`. With
    ``credentials`` too, it logs people in (at ``issuer``, registered there
    by `prepare_demo_provider`, or with a local password) and serves the
    page `DEMO_PAGE`, with the guide to every flow. Swagger UI at ``/docs``
    is served from the package (works offline), and the API publishes RFC
    9728 metadata naming ``resource``.
    """
    login = store is not None and credentials is not None
    options: dict[str, Any] = {}
    if login and credentials is not None:
        prepare_demo_provider(issuer, credentials, resource=resource)
        options = {
            "client_id": LOGIN_CLIENT,
            "client_secret": credentials.login_secret,
            "display_name": PROVIDER_LABEL,
        }
    # The API's URL is an accepted audience too: RFC 9728 clients ask for tokens for it.
    provider = issuer.provider(
        PROVIDER, token_type="strict", audience=[DEMO_AUDIENCE, resource], **options
    )
    own = None
    if store is not None:
        # No key-encryption key, and none read from the app's environment
        # (AUTHBRIDGE_KEY_ENCRYPTION_KEY is the app's, not the demo's).
        own = AppIssuer(
            resource, store=store, scopes=DEMO_SCOPES, development=True, key_encryption_key=()
        )
    auth = AuthBridge(
        providers=[provider],
        issuer=own,
        resource=resource,
        login=demo_login_settings() if login else None,
    )
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="authbridge demo",
        description=_description(own is not None, login),
        lifespan=auth.lifespan,
    )
    items: list[dict[str, Any]] = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "saw"}]
    garage: deque[str] = deque(maxlen=GARAGE_LOG_SIZE)
    _add_item_routes(app, auth, items)
    if own is not None:
        _add_garage_routes(app, auth, garage)
    if login and credentials is not None and own is not None:
        sections = demo_guide(
            resource,
            credentials,
            token_path=urlsplit(own.endpoint("token")).path,
            provider_issuer=issuer.issuer,
            provider_token="",
            reveal=HIDDEN,
        )
        _add_demo_page(app, auth, items, garage, sections, provider_origin=issuer.issuer)
    auth.install(app)
    return app, auth


def _description(own: bool, login: bool) -> str:
    description = (
        "Routes protected by authbridge. Click **Authorize** and paste one of the tokens "
        "printed in the terminal"
    )
    if own:
        description += (
            ", or log in with a local user in the **AppPassword** box (username and "
            "password printed in the terminal), or as the machine client in "
            "**AppClientCredentials**"
        )
    if login:
        description += (
            ", or log in through the **AppLogin** box: a login page where you choose the "
            "embedded provider or the local password"
        )
    description += (
        ". Then try the routes. Each route says which scopes it requires; a refused request "
        "says why in the terminal."
    )
    if own:
        description += (
            f" As alice, **POST /me/delegations** mints a token for `{GARAGE_CLIENT}` "
            f"(scope `{GARAGE_SCOPE}`): paste it in **BearerToken** and try the garage."
        )
    if login:
        description += (
            f" The page [{DEMO_PAGE}]({DEMO_PAGE}) logs in with a session cookie and shows "
            "every flow with its curl lines."
        )
    return description


def _add_item_routes(app: FastAPI, auth: AuthBridge, items: list[dict[str, Any]]) -> None:
    @app.get("/public")
    async def public() -> dict[str, str]:
        """No token needed."""
        return {"message": "anyone can read this"}

    @app.get("/hello")
    async def hello(user: Principal | None = Security(auth.optional_principal)) -> dict[str, str]:
        """Greets whoever calls."""
        return {"message": f"hello {user.subject if user else 'stranger'}"}

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        """Any valid token: returns who you are (``actors``: who acts for you, if anyone)."""
        return user

    @app.get("/items")
    async def list_items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> list[dict[str, Any]]:
        """List the items."""
        return items

    @app.post("/items", status_code=201)
    async def add_item(
        name: str, user: Principal = Security(auth.principal, scopes=["items:write"])
    ) -> dict[str, Any]:
        """Add an item."""
        item = {"id": len(items) + 1, "name": name, "added_by": user.subject}
        items.append(item)
        return item

    @app.get("/admin")
    async def admin(user: Principal = Security(auth.principal, scopes=["admin"])) -> dict[str, str]:
        """For administrators."""
        return {"message": f"welcome, administrator {user.subject}"}

    @app.websocket("/ws")
    async def echo(
        websocket: WebSocket, user: Principal = Security(auth.principal, scopes=["items:read"])
    ) -> None:
        """A WebSocket echo that needs `items:read` (send the token in the header)."""
        await websocket.accept()
        await websocket.send_json({"hello": user.subject})
        async for message in websocket.iter_text():
            await websocket.send_text(message)


async def _name_of(auth: AuthBridge, user: Principal) -> str:
    """The username of an account of the app's own issuer, else the token's subject."""
    runtime = auth.issuer
    subject = user.subject or ""
    if runtime is not None and user.provider == runtime.config.name and subject:
        account = await runtime.users.get(subject)
        if account is not None:
            return account.username
    return subject


def _add_garage_routes(app: FastAPI, auth: AuthBridge, garage: deque[str]) -> None:
    @app.post(GARAGE_OPEN, tags=["garage"])
    async def open_garage(
        user: Principal = Security(auth.active_principal, scopes=[GARAGE_SCOPE]),
    ) -> dict[str, Any]:
        """Open the garage: its owner, or a robot acting for her with a delegated token.

        Says who acts for whom (``actor``: the robot, ``user``: the person it
        acts for). Checked with the store at every call, so a revoked token or
        delegation is refused at once.
        """
        name = await _name_of(auth, user)
        actors = list(user.actors)
        if actors:
            message = f"{actors[0]} opened the garage, acting for {name}"
        else:
            message = f"{name} opened the garage"
        garage.append(message)
        return {
            "message": message,
            "user": name,
            "actor": actors[0] if actors else None,
            "actors": actors,
        }

    @app.post(GARAGE_CODE, tags=["garage"])
    async def change_code(
        user: Principal = Security(auth.direct_principal, scopes=[GARAGE_SCOPE]),
    ) -> dict[str, str]:
        """Change the garage's door code: the owner in person only.

        A delegated token (a robot acting for her) is refused with 403.
        """
        name = await _name_of(auth, user)
        message = f"{name} changed the door code"
        garage.append(message)
        return {"message": message, "user": name}


_PAGE_STYLES = ("/auth/static/login.css", f"{DEMO_PAGE}/guide.css")
MAX_PAGE_FORM = 16384
"""Largest body the page's form may send (bytes)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _add_demo_page(
    app: FastAPI,
    auth: AuthBridge,
    items: list[dict[str, Any]],
    garage: deque[str],
    sections: tuple[Section, ...],
    *,
    provider_origin: str,
) -> None:
    """``GET /demo``: who is logged in (a session), the guide; log in, add an item, log out."""
    csp = (
        "default-src 'none'; style-src 'self'; "
        f"form-action 'self' {provider_origin}; frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    guide = guide_html(sections)
    styles = "".join(f'<link rel="stylesheet" href="{_e(href)}">' for href in _PAGE_STYLES)

    @app.get(DEMO_PAGE, include_in_schema=False)
    async def demo_page(
        request: Request, user: Principal | None = Security(auth.optional_principal)
    ) -> Response:
        """The demo's server-rendered page (its session, no JavaScript)."""
        body = await _page_body(auth, request, user, items)
        log = "".join(f"<li>{_e(event)}</li>" for event in reversed(garage))
        page = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>authbridge demo</title>{styles}</head>\n"
            f"<body><main>\n<h1>authbridge demo</h1>\n{body}"
            f'<h2>The garage</h2><ul id="garage">{log or "<li>(closed so far)</li>"}</ul>\n'
            f"{guide}</main></body></html>\n"
        )
        return HTMLResponse(page, headers=headers)

    @app.get(f"{DEMO_PAGE}/guide.css", include_in_schema=False)
    async def demo_style() -> Response:
        """The page's stylesheet (a file of its own: the CSP allows no inline style)."""
        return Response(
            GUIDE_CSS,
            media_type="text/css",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"},
        )

    @app.post(f"{DEMO_PAGE}/items", include_in_schema=False)
    async def demo_add(
        request: Request, user: Principal = Security(auth.principal, scopes=["items:write"])
    ) -> Response:
        """The page's form: the session's CSRF token in ``csrf_token``, then back to the page."""
        # The CSRF check read the (bounded) urlencoded body already; Starlette keeps it.
        if not request.headers.get("content-length", "").isdigit():
            return RedirectResponse(DEMO_PAGE, status_code=303)
        if int(request.headers["content-length"]) > MAX_PAGE_FORM:
            return RedirectResponse(DEMO_PAGE, status_code=303)
        names = [
            v
            for k, v in parse_qsl((await request.body()).decode("utf-8", "replace"))
            if k == "name"
        ]
        if len(names) == 1 and 0 < len(names[0]) <= 64:
            items.append({"id": len(items) + 1, "name": names[0], "added_by": user.subject})
        return RedirectResponse(DEMO_PAGE, status_code=303)


async def _page_body(
    auth: AuthBridge, request: Request, user: Principal | None, items: list[dict[str, Any]]
) -> str:
    login = auth.browser_login
    found = await login.session_of(request) if login is not None else None
    if login is None or found is None or user is None:
        return (
            "<p>Nobody is logged in here (no session).</p>\n"
            f'<p><a class="provider" href="/auth/login?next={DEMO_PAGE}">Log in</a></p>\n'
            '<p>Or log in from <a href="/docs">Swagger UI</a> (Authorize, AppLogin).</p>\n'
        )
    record = found[1]
    account = await login.endpoints.runtime.users.get(record.user_id)
    name = account.username if account is not None else user.subject
    via = record.provider or "local password"
    csrf = _e(await auth.csrf_token(request) or "")
    scopes = " ".join(sorted(user.scopes)) or "(none)"
    listed = "".join(f"<li>{_e(item['name'])}</li>" for item in items)
    return (
        f'<p>Logged in as <strong id="username">{_e(name)}</strong> '
        f'through <span id="via">{_e(via)}</span>.</p>\n'
        f'<p>Account <code id="subject">{_e(user.subject)}</code>, '
        f'scopes <span id="scopes">{_e(scopes)}</span>.</p>\n'
        f'<ul id="items">{listed}</ul>\n'
        f'<form class="password" method="post" action="{DEMO_PAGE}/items">'
        f'<input type="hidden" name="csrf_token" value="{csrf}">'
        '<label for="name">Add an item (needs items:write)</label>'
        '<input type="text" id="name" name="name" value="drill">'
        "<button>Add</button></form>\n"
        '<form class="password" method="post" action="/auth/logout">'
        f'<input type="hidden" name="csrf_token" value="{csrf}">'
        "<button>Log out</button></form>\n"
    )
