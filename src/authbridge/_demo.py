"""The demo API behind ``python -m authbridge demo``: no external service needed.

Two kinds of tokens are accepted:

- tokens of an embedded test issuer (`FakeIssuer`), fetched over real HTTP
  (discovery + JWKS), as from any external provider;
- the demo API's own tokens: it is an authorization server too
  ([AppIssuer][authbridge.AppIssuer]) on an embedded SQLite store, with two
  local users, a machine client and a public command-line client
  (`prepare_demo_store`).

With its store, the demo also logs people in: at the embedded test issuer
(its OpenID Connect web login, two users, the demo registered there as a
confidential client: `prepare_demo_provider`) or with a local password, from
Swagger UI's **AppLogin** box, from the server-rendered page ``/demo``
(a session cookie), and by exchanging the test issuer's tokens at
``/oauth/token`` (RFC 8693).
"""

from __future__ import annotations

import html
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Security, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .client import AccountPolicy, ExternalIdentity, LoginSettings
from .fastapi import AuthBridge
from .issuer import TOKEN_EXCHANGE, AppIssuer
from .issuer._passwords import hash_password
from .issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from .resource.principal import Principal
from .store import ClientRecord, Store, UserRecord
from .testing import FakeIssuer

DEMO_AUDIENCE = "https://demo-api.example.test"

DEMO_USERS: dict[str, tuple[str, ...]] = {
    "reader": ("items:read",),
    "writer": ("items:read", "items:write"),
    "admin": ("items:read", "items:write", "admin"),
}
"""The test issuer's demo subjects and their scopes (pre-minted tokens)."""

DEMO_SCOPES: dict[str, str] = {
    "items:read": "Read the items",
    "items:write": "Add items",
    "admin": "The administrators' route",
}
"""The scopes the demo API's own issuer grants."""

LOCAL_USERS: dict[str, tuple[str, ...]] = {
    "alice": ("items:read", "items:write"),
    "bob": ("items:read",),
}
"""The demo's local accounts (password grant) and the scopes each may be granted."""

CLI_CLIENT = "demo-cli"
"""A public client (no secret) with the password and refresh-token grants, for curl."""

MACHINE_CLIENT = "robot"
"""A confidential machine client (client credentials)."""

MACHINE_SCOPES: tuple[str, ...] = ("items:read",)

PROVIDER = "demo"
"""The embedded test issuer's name: ``Principal.provider`` of its tokens, its login's key."""

PROVIDER_LABEL = "Demo provider (embedded)"
"""Its button on the login chooser."""

LOGIN_CLIENT = "demo-api"
"""The demo API's client id at the embedded test issuer (confidential: it has a secret)."""

PROVIDER_USERS: dict[str, tuple[str, bool]] = {
    "carol": ("carol@demo.example", True),
    "dave": ("dave@demo.example", False),
}
"""The embedded provider's users who log in with a password: username → (email, verified)."""

PROVIDER_DEFAULT_SCOPES = frozenset({"items:read"})
"""Scopes of an account made at a first login at the provider."""

WRITER_DOMAIN = "@demo.example"
"""A first login with a *verified* address in this domain also gets ``items:write``."""

DEMO_PAGE = "/demo"
"""The server-rendered page showing the session's account."""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The passwords of the local users and the machine client's secret, new at each start.

    Attributes:
        passwords: Username → password.
        robot_secret: The client secret of `MACHINE_CLIENT`.
        provider_passwords: The embedded provider's users' passwords.
        login_secret: The demo API's client secret at the embedded provider.
    """

    passwords: Mapping[str, str] = field(repr=False)
    robot_secret: str = field(repr=False)
    provider_passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    login_secret: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> DemoCredentials:
        """Random passwords (URL- and shell-safe characters) and generated client secrets."""
        return cls(
            passwords={name: secrets.token_urlsafe(12) for name in LOCAL_USERS},
            robot_secret=new_secret(CLIENT_SECRET_PREFIX),
            provider_passwords={name: secrets.token_urlsafe(12) for name in PROVIDER_USERS},
            login_secret=secrets.token_urlsafe(24),
        )


async def prepare_demo_store(store: Store, credentials: DemoCredentials) -> None:
    """Create the demo's users and clients in ``store``, or reset them if they exist.

    An existing account keeps its id (the ``sub`` of its tokens) and gets the
    new password, its demo scopes and ``disabled=False``; its refresh tokens
    end, as after ``authbridge users passwd``. The clients are registered
    again with the new secret.
    """
    now = time.time()
    for username, scopes in LOCAL_USERS.items():
        password_hash = hash_password(credentials.passwords[username])
        existing = await store.users.by_username(username)
        if existing is None:
            await store.users.add(
                UserRecord(
                    id=secrets.token_urlsafe(16),
                    username=username,
                    password_hash=password_hash,
                    scopes=frozenset(scopes),
                    created_at=now,
                )
            )
            continue
        await store.users.update(
            replace(existing, password_hash=password_hash, scopes=frozenset(scopes), disabled=False)
        )
        await store.refresh.revoke_for(now=now, reason="password_changed", subject=existing.id)
    clients = (
        ClientRecord(
            client_id=CLI_CLIENT,
            name="The demo's command-line client (curl)",
            auth_method="none",
            grant_types=frozenset({"password", "refresh_token", TOKEN_EXCHANGE}),
            scopes=frozenset(DEMO_SCOPES),
            created_at=now,
        ),
        ClientRecord(
            client_id=MACHINE_CLIENT,
            name="A machine client of the demo",
            auth_method="client_secret_basic",
            secret_hash=hash_secret(credentials.robot_secret, "client_secret"),
            grant_types=frozenset({"client_credentials"}),
            scopes=frozenset(MACHINE_SCOPES),
            created_at=now,
        ),
    )
    for client in clients:
        existing_client = await store.clients.get(client.client_id)
        if existing_client is None:
            await store.clients.add(client)
        else:
            await store.clients.update(replace(client, created_at=existing_client.created_at))


def prepare_demo_provider(
    issuer: FakeIssuer, credentials: DemoCredentials, *, resource: str
) -> None:
    """Register the demo API at the embedded test issuer, and its users who log in there.

    The client `LOGIN_CLIENT` (``credentials.login_secret``) may redirect only
    to ``{resource}/oauth/callback`` and, after logging out, to the demo page.
    """
    issuer.add_client(
        LOGIN_CLIENT,
        credentials.login_secret,
        redirect_uris=[f"{resource}/oauth/callback"],
        post_logout_redirect_uris=[f"{resource}{DEMO_PAGE}"],
    )
    for username, (email, verified) in PROVIDER_USERS.items():
        issuer.add_user(
            username,
            credentials.provider_passwords[username],
            email=email,
            email_verified=verified,
            name=username.capitalize(),
        )


async def first_login(identity: ExternalIdentity, proposed: UserRecord) -> UserRecord:
    """The demo's account hook: a verified address in `WRITER_DOMAIN` may also write."""
    email = identity.email or ""
    if identity.email_verified and email.endswith(WRITER_DOMAIN):
        return replace(proposed, scopes=proposed.scopes | {"items:write"})
    return proposed


def demo_login_settings() -> LoginSettings:
    """Browser login of the demo: both ways in, accounts made at first login, the demo page."""
    return LoginSettings(
        accounts=AccountPolicy(default_scopes=PROVIDER_DEFAULT_SCOPES, on_first_login=first_login),
        after_login=DEMO_PAGE,
        after_logout=DEMO_PAGE,
        title="Log in to the authbridge demo",
    )


def create_demo_app(
    issuer: FakeIssuer,
    *,
    resource: str = "http://127.0.0.1:8000",
    store: str | Store | None = None,
    credentials: DemoCredentials | None = None,
) -> tuple[FastAPI, AuthBridge]:
    """Build the demo API trusting ``issuer`` (discovery + JWKS fetched over HTTP).

    With a ``store``, the API is an authorization server too, its issuer URL
    being ``resource`` (development mode: its signing keys are kept in the
    store unencrypted); fill the store with `prepare_demo_store`. With
    ``credentials`` too, it logs people in (at ``issuer``, registered there
    by `prepare_demo_provider`, or with a local password) and serves the
    page `DEMO_PAGE`. Swagger UI at ``/docs`` is served from the package
    (works offline), and the API publishes RFC 9728 metadata naming
    ``resource``.
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
        own = AppIssuer(resource, store=store, scopes=DEMO_SCOPES, development=True)
    auth = AuthBridge(
        providers=[provider],
        issuer=own,
        resource=resource,
        login=demo_login_settings() if login else None,
    )
    description = (
        "Routes protected by authbridge. Click **Authorize** and paste one of the tokens "
        "printed in the terminal"
    )
    if own is not None:
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
    if login:
        description += f" The page [{DEMO_PAGE}]({DEMO_PAGE}) logs in with a session cookie."
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="authbridge demo",
        description=description,
        lifespan=auth.lifespan,
    )
    items: list[dict[str, Any]] = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "saw"}]

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
        """Any valid token: returns who you are."""
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

    if login:
        _add_demo_page(app, auth, items, provider_origin=issuer.issuer)
    auth.install(app)
    return app, auth


_PAGE_STYLE = "/auth/static/login.css"
MAX_PAGE_FORM = 16384
"""Largest body the page's form may send (bytes)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _add_demo_page(
    app: FastAPI, auth: AuthBridge, items: list[dict[str, Any]], *, provider_origin: str
) -> None:
    """``GET /demo``: who is logged in through the session; log in, add an item, log out."""
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

    @app.get(DEMO_PAGE, include_in_schema=False)
    async def demo_page(
        request: Request, user: Principal | None = Security(auth.optional_principal)
    ) -> Response:
        """The demo's server-rendered page (its session, no JavaScript)."""
        body = await _page_body(auth, request, user, items)
        page = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>authbridge demo</title>"
            f'<link rel="stylesheet" href="{_PAGE_STYLE}"></head>\n'
            f"<body><main>\n<h1>authbridge demo</h1>\n{body}</main></body></html>\n"
        )
        return HTMLResponse(page, headers=headers)

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


def demo_tokens(issuer: FakeIssuer, *, expires_in: float = 3600) -> dict[str, str]:
    """One token per demo user, valid for ``expires_in`` seconds."""
    return {
        name: issuer.token(subject=name, scopes=scopes, expires_in=expires_in)
        for name, scopes in DEMO_USERS.items()
    }


def own_token_lines(base: str, credentials: DemoCredentials, *, token_path: str) -> list[str]:
    """What the demo prints about its own tokens: accounts, clients, curl commands."""
    token_url = f"{base}{token_path}"
    alice = credentials.passwords["alice"]
    lines = [
        f"The demo API issues its own tokens too (issuer {base}, token endpoint {token_url}).",
        "New passwords and secret at every start (a demo: they are printed):",
    ]
    width = max(len(name) for name in LOCAL_USERS)
    for name, scopes in LOCAL_USERS.items():
        password = credentials.passwords[name]
        lines.append(f"  user {name:<{width}}  password {password}   scopes {' '.join(scopes)}")
    lines += [
        f"  client {MACHINE_CLIENT}  secret {credentials.robot_secret}   client_credentials, "
        f"scopes {' '.join(MACHINE_SCOPES)}",
        f"  client {CLI_CLIENT}  public (no secret)   password, refresh_token and token "
        "exchange grants",
        "",
        "Log in as alice (password grant):",
        f"  curl -s -d grant_type=password -d client_id={CLI_CLIENT} -d username=alice "
        f"-d password={alice} {token_url}",
        "Put the answer's access_token and refresh_token into ACCESS_TOKEN and REFRESH_TOKEN, "
        "then:",
        f'  curl -i -H "Authorization: Bearer $ACCESS_TOKEN" {base}/items   # 200',
        f"  curl -s -d grant_type=refresh_token -d client_id={CLI_CLIENT} "
        f"-d refresh_token=$REFRESH_TOKEN {token_url}   # new tokens (the refresh token rotates)",
        "A machine (client credentials):",
        f"  curl -s -u {MACHINE_CLIENT}:{credentials.robot_secret} "
        f"-d grant_type=client_credentials {token_url}",
        f"Or open {base}/docs -> Authorize -> AppPassword (username alice, password {alice}), "
        f"or AppClientCredentials ({MACHINE_CLIENT} and its secret).",
    ]
    return lines


SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def login_lines(
    base: str, issuer: FakeIssuer, credentials: DemoCredentials, *, token_path: str
) -> list[str]:
    """What the demo prints about logging in: the page, Swagger UI, token exchange."""
    token_url = f"{base}{token_path}"
    carol_token = issuer.token(subject="carol", scopes=(), client_id=LOGIN_CLIENT, expires_in=3600)
    lines = [
        f"Log in (the provider is embedded: {issuer.issuer}, nothing leaves this machine):",
        f"  {PROVIDER_LABEL}, where the demo API is the confidential client {LOGIN_CLIENT}:",
    ]
    for name, (email, verified) in PROVIDER_USERS.items():
        password = credentials.provider_passwords[name]
        state = "verified: may also write" if verified else "not verified: read only"
        lines.append(f"    user {name:<5}  password {password}   email {email} ({state})")
    lines += [
        "  or the local password of alice or bob (above).",
        f"In a browser: open {base}{DEMO_PAGE} -> Log in -> choose, then add an item and "
        "log out (a session cookie, no token in the page).",
        f"In Swagger UI: {base}/docs -> Authorize -> AppLogin (client_id swagger-ui, tick the "
        "scopes) -> the same login page; then Try it out.",
        "Exchange a token of the embedded provider for the API's own tokens (RFC 8693), as a "
        "single-page app holding a provider's token does. Set",
        f"  PROVIDER_TOKEN={carol_token}",
        f"(carol's access token, issued to {LOGIN_CLIENT}; valid 1 hour), then:",
        f"  curl -s -d grant_type={TOKEN_EXCHANGE} -d client_id={CLI_CLIENT} "
        f"-d subject_token=$PROVIDER_TOKEN -d subject_token_type={SUBJECT_TOKEN_TYPE} "
        f"{token_url}   # carol's account: the same one as her browser login",
        "A provider token issued to another client is refused (invalid_request):",
        f"  curl -s -d grant_type={TOKEN_EXCHANGE} -d client_id={CLI_CLIENT} "
        f"-d subject_token=$READER_TOKEN -d subject_token_type={SUBJECT_TOKEN_TYPE} "
        f"{token_url}   # 400",
        "Who is logged in (the session's account, identities and CSRF token, as JSON):",
        f"  curl -i {base}/auth/session   # 401 without a session cookie",
    ]
    return lines
