"""An app with its own issuer, a robot client and two users, served through httpx's ASGI transport.

`running(store_url, fake)` starts the app's lifespan on a real store (SQLite
file or PostgreSQL database) and registers:

- users ``user-alice`` (every scope but ``admin``) and ``user-bob``
  (``items:read``), both with `PASSWORD` (a cheap hash: the tests log in often);
- ``garage-robot``: a confidential client (client_secret_basic) with the
  refresh_token and token-exchange grants, scopes ``garage:open`` and
  ``items:read``; ``hub``: another confidential client; ``public-app``: a
  public one; ``spa``: the public client users log in with (password grant).

Routes: ``/garage`` (``auth.active_principal``: revocation seen at once) and
``/garage/cached`` (``auth.principal``), both requiring ``garage:open``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Security
from pwdlib.hashers.argon2 import Argon2Hasher

from authbridge import AppIssuer, AuthBridge, Principal
from authbridge.client._settings import LoginSettings
from authbridge.issuer import TOKEN_EXCHANGE, IssuerRuntime
from authbridge.issuer._kek import new_kek
from authbridge.issuer._passwords import hash_password
from authbridge.issuer._secrets import CLIENT_SECRET_PREFIX, hash_secret, new_secret
from authbridge.store import ClientRecord, UserRecord
from authbridge.testing import FakeIssuer

ISSUER = "https://api.example.test"
SCOPES = {
    "garage:open": "Open the garage",
    "items:read": "Read items",
    "items:write": "Change items",
    "admin": "Administer",
}
PASSWORD = "correct horse battery staple"
ALICE, BOB = "user-alice", "user-bob"
ROBOT, HUB = "garage-robot", "hub"
REFRESH = "refresh_token"
CHEAP = Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD_HASH = hash_password(PASSWORD, hasher=CHEAP)


@dataclass
class Harness:
    app: FastAPI
    auth: AuthBridge
    client: httpx.AsyncClient
    fake: FakeIssuer
    robot_secret: str
    hub_secret: str

    @property
    def runtime(self) -> IssuerRuntime:
        assert self.auth.issuer is not None
        return self.auth.issuer

    def own_token(
        self, user: str = ALICE, scopes: set[str] | None = None, client: str = "spa"
    ) -> str:
        """One of the app's own access tokens for ``user`` (as a password login gives)."""
        scopes = scopes if scopes is not None else {"garage:open", "items:read", "items:write"}
        token, _ = self.runtime.mint_access_token(
            subject=user,
            client_id=client,
            scopes=scopes,
            audiences=(self.runtime.config.audience,),
        )
        return token

    async def create(self, token: str | None, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body.setdefault("actor", ROBOT)
        body.setdefault("expires_in", 3600)
        return await self.client.post("/me/delegations", json=body, headers=headers)

    async def post_raw(
        self, token: str, content: bytes, content_type: str = "application/json"
    ) -> httpx.Response:
        return await self.client.post(
            "/me/delegations",
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )

    async def listed(self, token: str, **params: str) -> httpx.Response:
        return await self.client.get(
            "/me/delegations", params=params, headers={"Authorization": f"Bearer {token}"}
        )

    async def revoke(self, token: str, delegation_id: str) -> httpx.Response:
        return await self.client.delete(
            f"/me/delegations/{delegation_id}", headers={"Authorization": f"Bearer {token}"}
        )

    async def refresh(self, refresh_token: str, *, secret: str | None = None) -> httpx.Response:
        """The robot refreshes with its own client secret."""
        return await self.client.post(
            "/oauth/token",
            data={"grant_type": REFRESH, "refresh_token": refresh_token},
            auth=(ROBOT, secret or self.robot_secret),
        )

    async def garage(self, token: str, *, active: bool = True) -> httpx.Response:
        path = "/garage" if active else "/garage/cached"
        return await self.client.get(path, headers={"Authorization": f"Bearer {token}"})

    async def session(self, username: str = "alice") -> str:
        """Log in with the password form (a session cookie); the session's CSRF token."""
        page = await self.client.get("/auth/login")
        assert page.status_code == 200, page.text
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = await self.client.post(
            "/auth/login",
            data={"csrf_token": csrf, "username": username, "password": PASSWORD},
        )
        assert answer.status_code == 303, answer.text
        session = (await self.client.get("/auth/session")).json()
        return str(session["csrf_token"])


def build(store_url: str, fake: FakeIssuer, **options: Any) -> tuple[FastAPI, AuthBridge]:
    issuer_options = options.pop("issuer_options", {})
    auth = AuthBridge(
        [fake.provider("sso")],
        issuer=AppIssuer(
            ISSUER,
            store=store_url,
            scopes=SCOPES,
            key_encryption_key=new_kek(),
            **issuer_options,
        ),
        transport=fake.transport,
        **options,
    )
    app = FastAPI(
        title="garage", version="1", docs_url=None, redoc_url=None, lifespan=auth.lifespan
    )

    @app.get("/garage")
    async def garage(
        user: Principal = Security(auth.active_principal, scopes=["garage:open"]),
    ) -> dict[str, Any]:
        return {"user": user.subject, "client": user.client_id, "actors": list(user.actors)}

    @app.get("/garage/cached")
    async def garage_cached(
        user: Principal = Security(auth.principal, scopes=["garage:open"]),
    ) -> dict[str, Any]:
        return {"user": user.subject, "actors": list(user.actors)}

    auth.install(app, docs_url=None)
    return app, auth


def confidential(client_id: str, secret: str, scopes: set[str], grants: set[str]) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secret_hash=hash_secret(secret, "client_secret"),
        grant_types=frozenset(grants),
        scopes=frozenset(scopes),
    )


async def register(runtime: IssuerRuntime) -> tuple[str, str]:
    """The users and clients of the module's description; the robot's and the hub's secrets."""
    store = runtime.store
    for user_id, username, scopes in (
        (ALICE, "alice", {"garage:open", "items:read", "items:write"}),
        (BOB, "bob", {"items:read"}),
    ):
        await store.users.add(
            UserRecord(
                id=user_id,
                username=username,
                password_hash=PASSWORD_HASH,
                scopes=frozenset(scopes),
            )
        )
    robot_secret, hub_secret = new_secret(CLIENT_SECRET_PREFIX), new_secret(CLIENT_SECRET_PREFIX)
    await store.clients.add(
        confidential(
            ROBOT,
            robot_secret,
            {"garage:open", "items:read"},
            {REFRESH, TOKEN_EXCHANGE, "client_credentials"},
        )
    )
    await store.clients.add(
        confidential(HUB, hub_secret, {"garage:open", "items:read"}, {TOKEN_EXCHANGE})
    )
    for client_id in ("public-app", "spa"):
        await store.clients.add(
            ClientRecord(
                client_id=client_id,
                auth_method="none",
                grant_types=frozenset({"password", REFRESH}),
                scopes=frozenset(SCOPES),
            )
        )
    return robot_secret, hub_secret


@asynccontextmanager
async def running(
    store_url: str, fake: FakeIssuer, *, login: bool = False, **options: Any
) -> AsyncIterator[Harness]:
    if login:
        options["login"] = LoginSettings()
    app, auth = build(store_url, fake, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            assert auth.issuer is not None
            robot_secret, hub_secret = await register(auth.issuer)
            yield Harness(app, auth, client, fake, robot_secret, hub_secret)


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (the tests look at what the app minted)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]
