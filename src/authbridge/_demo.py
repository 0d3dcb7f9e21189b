"""The demo API behind ``python -m authbridge demo``: no external service needed.

Two kinds of tokens are accepted:

- tokens of an embedded test issuer (`FakeIssuer`), fetched over real HTTP
  (discovery + JWKS), as from any external provider;
- the demo API's own tokens: it is an authorization server too
  ([AppIssuer][authbridge.AppIssuer]) on an embedded SQLite store, with two
  local users, a machine client and a public command-line client
  (`prepare_demo_store`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import FastAPI, Security, WebSocket

from .fastapi import AuthBridge
from .issuer import AppIssuer
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


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The passwords of the local users and the machine client's secret, new at each start.

    Attributes:
        passwords: Username → password.
        robot_secret: The client secret of `MACHINE_CLIENT`.
    """

    passwords: Mapping[str, str] = field(repr=False)
    robot_secret: str = field(repr=False)

    @classmethod
    def generate(cls) -> DemoCredentials:
        """Random passwords (URL- and shell-safe characters) and a generated client secret."""
        return cls(
            passwords={name: secrets.token_urlsafe(12) for name in LOCAL_USERS},
            robot_secret=new_secret(CLIENT_SECRET_PREFIX),
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
            grant_types=frozenset({"password", "refresh_token"}),
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


def create_demo_app(
    issuer: FakeIssuer,
    *,
    resource: str = "http://127.0.0.1:8000",
    store: str | Store | None = None,
) -> tuple[FastAPI, AuthBridge]:
    """Build the demo API trusting ``issuer`` (discovery + JWKS fetched over HTTP).

    With a ``store``, the API is an authorization server too, its issuer URL
    being ``resource`` (development mode: its signing keys are kept in the
    store unencrypted); fill the store with `prepare_demo_store`. Swagger UI
    at ``/docs`` is served from the package (works offline), and the API
    publishes RFC 9728 metadata naming ``resource``.
    """
    # The API's URL is an accepted audience too: RFC 9728 clients ask for tokens for it.
    provider = issuer.provider("demo", token_type="strict", audience=[DEMO_AUDIENCE, resource])
    own = None
    if store is not None:
        own = AppIssuer(resource, store=store, scopes=DEMO_SCOPES, development=True)
    auth = AuthBridge(providers=[provider], issuer=own, resource=resource)
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
    description += (
        ". Then try the routes. Each route says which scopes it requires; a refused request "
        "says why in the terminal."
    )
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

    auth.install(app)
    return app, auth


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
        f"  client {CLI_CLIENT}  public (no secret)   password and refresh_token grants",
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
