"""The demo API behind ``python -m authbridge demo``: no external service needed."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Security, WebSocket

from .fastapi import AuthBridge
from .resource.principal import Principal
from .testing import FakeIssuer

DEMO_AUDIENCE = "https://demo-api.example.test"

DEMO_USERS: dict[str, tuple[str, ...]] = {
    "reader": ("items:read",),
    "writer": ("items:read", "items:write"),
    "admin": ("items:read", "items:write", "admin"),
}


def create_demo_app(
    issuer: FakeIssuer, *, resource: str = "http://127.0.0.1:8000"
) -> tuple[FastAPI, AuthBridge]:
    """Build the demo API trusting ``issuer`` (discovery + JWKS fetched over HTTP).

    Swagger UI at ``/docs`` is served from the package (works offline), and the
    API publishes RFC 9728 metadata naming ``resource``.
    """
    # The API's URL is an accepted audience too: RFC 9728 clients ask for tokens for it.
    provider = issuer.provider("demo", token_type="strict", audience=[DEMO_AUDIENCE, resource])
    auth = AuthBridge(providers=[provider], resource=resource)
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="authbridge demo",
        description=(
            "Routes protected by authbridge. Click **Authorize**, paste one of the tokens "
            "printed in the terminal, then try the routes. Each route says which scopes it "
            "requires; a refused request says why in the terminal."
        ),
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
