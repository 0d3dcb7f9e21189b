"""An app with browser login, and an upstream provider answering through httpx.MockTransport.

`StubProvider` is a resource-server provider (``UserinfoProvider``) that can
also log people in: static endpoints at ``https://idp.test``, PKCE, and the
identity read from its userinfo endpoint. `Upstream` is that provider's
server side: it issues single-use codes bound to the PKCE challenge and
counts every request to its token endpoint, so a test can assert that a
refused callback never reached it.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
from fastapi import FastAPI, Security

from authbridge import AppIssuer, AuthBridge, Principal
from authbridge._clock import Clock
from authbridge._http import ClientSource, request
from authbridge.client import ExternalIdentity, LoginEndpoints, ProviderLogin, TokenSet
from authbridge.client._settings import LoginSettings
from authbridge.errors import ProviderUnavailable
from authbridge.issuer import IssuerRuntime
from authbridge.issuer._kek import new_kek
from authbridge.providers import UserinfoProvider
from authbridge.store import ClientRecord, UserRecord

ISSUER = "http://127.0.0.1:8000"
IDP = "https://idp.test"
SCOPES = {"items:read": "Read items", "items:write": "Change items"}
PASSWORD = "correct horse battery staple"
SPA = "spa"
SPA_REDIRECT = "http://127.0.0.1:9999/callback"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


@dataclass
class Upstream:
    """The provider's side: authorize (by the test), token and userinfo endpoints."""

    subject: str = "upstream-1"
    email: str | None = "pat@example.org"
    email_verified: bool = True
    iss_supported: bool = False
    down: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_requests: int = 0
    requests: list[httpx.Request] = field(default_factory=list)

    def approve(self, authorization_url: str) -> dict[str, str]:
        """What the provider redirects back with after the person approved: code and state."""
        query = dict(parse_qsl(urlsplit(authorization_url).query))
        code = secrets.token_urlsafe(24)
        self.codes[code] = query
        answer = {"code": code, "state": query["state"]}
        if self.iss_supported:
            answer["iss"] = IDP
        return answer

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            return httpx.Response(503)
        if request.url.path == "/token":
            self.token_requests += 1
            form = dict(parse_qsl(request.content.decode()))
            sent = self.codes.pop(form.get("code", ""), None)
            if sent is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            verifier = form.get("code_verifier", "")
            challenge = b64url(hashlib.sha256(verifier.encode()).digest())
            if (
                challenge != sent.get("code_challenge")
                or form["redirect_uri"] != sent["redirect_uri"]
            ):
                return httpx.Response(400, json={"error": "invalid_grant"})
            token = secrets.token_urlsafe(24)
            self.tokens[token] = self.subject
            return httpx.Response(200, json={"access_token": token, "token_type": "Bearer"})
        if request.url.path == "/userinfo":
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            subject = self.tokens.get(token)
            if subject is None:
                return httpx.Response(401)
            return httpx.Response(
                200,
                json={
                    "sub": subject,
                    "email": self.email,
                    "email_verified": self.email_verified,
                    "name": "Pat <b>Example</b>",
                },
            )
        return httpx.Response(404)


class StubLogin(ProviderLogin):
    """The provider's login runtime: static endpoints, PKCE, identity from userinfo."""

    uses_pkce = True
    supports_logout = True

    def __init__(
        self,
        *,
        name: str,
        iss_supported: bool,
        client: ClientSource,
        clock: Clock,
        timeout: float,
    ) -> None:
        super().__init__(client=client, clock=clock, timeout=timeout, client_secret="s3cret")
        self.name = name
        self.display_name = 'Stub <IdP> & "Co"'
        self.client_id = "our-client"
        self.scopes = ("openid", "email")
        self._iss_supported = iss_supported

    async def endpoints(self) -> LoginEndpoints:
        return LoginEndpoints(
            authorization_endpoint=f"{IDP}/authorize",
            token_endpoint=f"{IDP}/token",
            issuer=IDP,
            iss_parameter_supported=self._iss_supported,
            userinfo_endpoint=f"{IDP}/userinfo",
            end_session_endpoint=f"{IDP}/logout",
        )

    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> ExternalIdentity:
        answer = await request(
            self._client,
            "GET",
            f"{IDP}/userinfo",
            headers={"Authorization": f"Bearer {tokens.access_token}"},
            provider=self.name,
        )
        if answer.status != 200:
            raise ProviderUnavailable(f"http_status:{answer.status}", provider=self.name)
        claims = answer.json_object(provider=self.name)
        return ExternalIdentity(
            provider=self.name,
            issuer=IDP,
            subject=str(claims["sub"]),
            email=claims.get("email"),
            email_verified=bool(claims.get("email_verified")),
            name=claims.get("name"),
            claims=claims,
            id_token="header.payload.signature",
        )

    async def logout_url(
        self, *, id_token_hint: str | None, post_logout_redirect_uri: str, state: str
    ) -> str | None:
        return f"{IDP}/logout?post_logout_redirect_uri={post_logout_redirect_uri}"


class StubProvider(UserinfoProvider):
    """A userinfo-checked token source that also offers login."""

    def __init__(self, name: str = "stub", *, iss_supported: bool = False) -> None:
        super().__init__(name, IDP, userinfo_endpoint=f"{IDP}/userinfo")
        self._iss_supported = iss_supported

    @property
    def login_enabled(self) -> bool:
        return True

    def bind_login(self, client: ClientSource, clock: Clock, *, timeout: float) -> ProviderLogin:
        return StubLogin(
            name=self.name,
            iss_supported=self._iss_supported,
            client=client,
            clock=clock,
            timeout=timeout,
        )


@dataclass
class LoginApp:
    app: FastAPI
    auth: AuthBridge
    client: httpx.AsyncClient
    upstream: Upstream

    @property
    def runtime(self) -> IssuerRuntime:
        assert self.auth.issuer is not None
        return self.auth.issuer

    async def count_users(self) -> int:
        return len(await self.runtime.store.users.list(limit=1000))


def build(
    store: str,
    upstream: Upstream,
    *,
    issuer: str = ISSUER,
    settings: LoginSettings | None = None,
    providers: list[Any] | None = None,
) -> tuple[FastAPI, AuthBridge]:
    kek = None if issuer.startswith("http://127.") else new_kek()
    auth = AuthBridge(
        providers
        if providers is not None
        else [StubProvider(iss_supported=upstream.iss_supported)],
        issuer=AppIssuer(issuer, store=store, scopes=SCOPES, key_encryption_key=kek),
        transport=httpx.MockTransport(upstream.handler),
        login=settings or LoginSettings(),
    )
    app = FastAPI(title="Items", docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"provider": user.provider, "subject": user.subject, "scopes": sorted(user.scopes)}

    @app.post("/items")
    async def add_item(user: Principal = Security(auth.principal, scopes=["items:write"])) -> dict:
        return {"added_by": user.subject}

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {"subject": user.subject if user else None}

    auth.install(app)
    return app, auth


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'authbridge.db'}"


@asynccontextmanager
async def running(
    tmp_path: Path,
    *,
    upstream: Upstream | None = None,
    issuer: str = ISSUER,
    settings: LoginSettings | None = None,
    providers: list[Any] | None = None,
) -> AsyncIterator[LoginApp]:
    upstream = upstream or Upstream()
    app, auth = build(
        sqlite_url(tmp_path), upstream, issuer=issuer, settings=settings, providers=providers
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url=issuer) as client:
            h = LoginApp(app, auth, client, upstream)
            await add_spa(h.runtime)
            await add_user(h.runtime)
            yield h


async def add_spa(runtime: IssuerRuntime) -> None:
    await runtime.store.clients.add(
        ClientRecord(
            client_id=SPA,
            name='The <SPA> & "friends"',
            auth_method="none",
            grant_types=frozenset({"authorization_code", "refresh_token"}),
            scopes=frozenset(SCOPES),
            redirect_uris=(SPA_REDIRECT,),
        )
    )


async def add_user(runtime: IssuerRuntime, username: str = "alice") -> UserRecord:
    return await runtime.store.users.add(
        UserRecord(
            id=f"user-{username}",
            username=username,
            password_hash=await runtime.passwords.hash(PASSWORD),
            scopes=frozenset(SCOPES),
        )
    )


def authorize_params(challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": SPA,
        "redirect_uri": SPA_REDIRECT,
        "state": "client-state-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "items:read",
        **extra,
    }


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


class Page(html.parser.HTMLParser):
    """What a test needs to know of a served page: forms, links, scripts, styles."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.styles = 0
        self.inline_handlers: list[str] = []
        self.style_attributes = 0
        self.stylesheets: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on"):
                self.inline_handlers.append(name)
            if name == "style":
                self.style_attributes += 1
        if tag == "script":
            self.scripts += 1
        elif tag == "style":
            self.styles += 1
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values.get("href") or "")
        elif tag == "form":
            self.forms.append(
                {"action": values.get("action"), "method": values.get("method"), "fields": {}}
            )
        elif tag == "input" and self.forms:
            self.forms[-1]["fields"][values.get("name")] = values.get("value") or ""
        elif tag == "a":
            self.links.append(values.get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
