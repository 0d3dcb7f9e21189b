"""The FastAPI dependency: challenges, scopes, optional mode, WebSockets, failures."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from authbridge import AuthBridge, Introspection, Principal
from authbridge.testing import FakeIssuer


def make_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/me", response_model=Principal)
    async def me(user: Principal = Security(auth.principal)) -> Principal:
        return user

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
        return {"subject": user.subject}

    @app.get("/both")
    async def both(
        user: Principal = Security(auth.principal, scopes=["items:read", "items:write"]),
    ) -> dict:
        return {"subject": user.subject}

    @app.get("/maybe")
    async def maybe(user: Principal | None = Security(auth.optional_principal)) -> dict:
        return {"subject": user.subject if user else None}

    admin = APIRouter(dependencies=[Security(auth.principal, scopes=["admin"])])

    @admin.get("/admin/items")
    async def admin_items(
        user: Principal = Security(auth.principal, scopes=["items:read"]),
    ) -> dict:
        return {"subject": user.subject}

    app.include_router(admin)

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket, user: Principal = Security(auth.principal, scopes=["items:read"])
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": user.subject})
        await websocket.close()

    return app


@pytest.fixture
def auth(fake_issuer: FakeIssuer) -> AuthBridge:
    return AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)


@pytest.fixture
def client(auth: AuthBridge):
    with TestClient(make_app(auth)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_gives_the_principal(client: TestClient, fake_issuer: FakeIssuer) -> None:
    token = fake_issuer.token(subject="alice", scopes=["items:read", "extra"])
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "fake"
    assert body["issuer"] == fake_issuer.issuer
    assert body["subject"] == "alice"
    assert body["client_id"] == "test-client"
    assert sorted(body["scopes"]) == ["extra", "items:read"]
    assert body["claims"]["sub"] == "alice"
    assert body["expires_at"] is not None
    assert client.get("/items", headers=bearer(token)).json() == {"subject": "alice"}


def test_missing_credentials_get_a_bare_challenge(client: TestClient) -> None:
    response = client.get("/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


def test_other_schemes_are_no_credentials(client: TestClient) -> None:
    response = client.get("/items", headers={"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_scheme_is_case_insensitive(
    client: TestClient, fake_issuer: FakeIssuer, scheme: str
) -> None:
    token = fake_issuer.token(scopes=["items:read"])
    response = client.get("/items", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer tok,en", "Bearer ☃"])
def test_malformed_credentials_are_invalid(client: TestClient, value: str) -> None:
    response = client.get("/items", headers={"Authorization": value.encode("utf-8")})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_repeated_authorization_header_is_refused(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(scopes=["items:read"])
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = client.get("/items", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_insufficient_scope_is_403_with_the_needed_scopes(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    token = fake_issuer.token(scopes=["items:read"])
    response = client.get("/both", headers=bearer(token))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="items:read items:write"' in challenge


def test_router_and_route_scopes_accumulate(client: TestClient, fake_issuer: FakeIssuer) -> None:
    reader = fake_issuer.token(scopes=["items:read"])
    admin = fake_issuer.token(scopes=["items:read", "admin"])
    assert client.get("/admin/items", headers=bearer(reader)).status_code == 403
    assert client.get("/admin/items", headers=bearer(admin)).status_code == 200


def test_every_bad_token_is_a_clean_401(client: TestClient, fake_issuer: FakeIssuer) -> None:
    for name, token in fake_issuer.bad.all().items():
        response = client.get("/items", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert response.json() == {"detail": "Invalid or expired access token"}


def test_optional_principal(client: TestClient, fake_issuer: FakeIssuer) -> None:
    assert client.get("/maybe").json() == {"subject": None}
    token = fake_issuer.token(subject="bob")
    assert client.get("/maybe", headers=bearer(token)).json() == {"subject": "bob"}
    # A presented but bad token is refused, not treated as anonymous.
    assert client.get("/maybe", headers=bearer(fake_issuer.bad.expired())).status_code == 401


def test_query_token_only_when_enabled(fake_issuer: FakeIssuer) -> None:
    token = fake_issuer.token(scopes=["items:read"])
    default = AuthBridge(providers=[fake_issuer.provider()], transport=fake_issuer.transport)
    with TestClient(make_app(default)) as client:
        assert client.get("/items", params={"access_token": token}).status_code == 401
    enabled = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, allow_query_token=True
    )
    with TestClient(make_app(enabled)) as client:
        assert client.get("/items", params={"access_token": token}).status_code == 200
        twice = [("access_token", token), ("access_token", token)]
        assert client.get("/items", params=twice).status_code == 401


def test_realm_in_challenges(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, realm='my "api"'
    )
    with TestClient(make_app(auth)) as client:
        assert client.get("/items").headers["www-authenticate"] == 'Bearer realm="my \\"api\\""'


def test_websocket_accepts_a_valid_token(client: TestClient, fake_issuer: FakeIssuer) -> None:
    token = fake_issuer.token(subject="carol", scopes=["items:read"])
    with client.websocket_connect("/ws", headers=bearer(token)) as websocket:
        assert websocket.receive_json() == {"subject": "carol"}


@pytest.mark.parametrize("kind", ["missing", "expired", "scope"])
def test_websocket_refusals_close_with_1008(
    client: TestClient, fake_issuer: FakeIssuer, kind: str
) -> None:
    headers = {
        "missing": {},
        "expired": bearer(fake_issuer.bad.expired()),
        "scope": bearer(fake_issuer.token(scopes=["other"])),
    }[kind]
    with (
        pytest.raises(WebSocketDisconnect) as excinfo,
        client.websocket_connect("/ws", headers=headers),
    ):
        pass
    assert excinfo.value.code == 1008


def test_provider_down_is_503_never_500(fake_issuer: FakeIssuer) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    auth = AuthBridge(providers=[fake_issuer.provider()], transport=httpx.MockTransport(down))
    with TestClient(make_app(auth), raise_server_exceptions=False) as client:
        token = fake_issuer.token(scopes=["items:read"])
        response = client.get("/items", headers=bearer(token))
        assert response.status_code == 503
        assert response.json() == {"detail": "Authentication temporarily unavailable"}
        # Without credentials the answer does not depend on the provider.
        assert client.get("/items").status_code == 401


def test_app_without_lifespan_still_works(auth: AuthBridge, fake_issuer: FakeIssuer) -> None:
    client = TestClient(make_app(auth))  # no `with`: lifespan never runs
    token = fake_issuer.token(scopes=["items:read"])
    assert client.get("/items", headers=bearer(token)).status_code == 200


# --- auth.active_principal: a revoked JWT is refused before its exp -------------------------


class Introspector:
    """An introspection endpoint next to the fake issuer; it knows which tokens are revoked."""

    def __init__(self, fake: FakeIssuer) -> None:
        self.fake = fake
        self.revoked: set[str] = set()
        self.calls = 0
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/introspect":
            return self.fake.transport.handler(request)
        self.calls += 1
        if self.down:
            return httpx.Response(502)
        token = dict(httpx.QueryParams(request.content.decode()))["token"]
        return httpx.Response(200, json={"active": token not in self.revoked})


def active_app(auth: AuthBridge) -> FastAPI:
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/pay")
    async def pay(user: Principal = Security(auth.active_principal, scopes=["pay"])) -> dict:
        return {"subject": user.subject}

    @app.get("/items")
    async def items(user: Principal = Security(auth.principal)) -> dict:
        return {"subject": user.subject}

    return app


@pytest.fixture
def introspector(fake_issuer: FakeIssuer) -> Introspector:
    return Introspector(fake_issuer)


@pytest.fixture
def active_auth(fake_issuer: FakeIssuer, introspector: Introspector) -> AuthBridge:
    provider = fake_issuer.provider(
        introspection=Introspection(
            client_id="api", client_secret="s3cret", endpoint=f"{fake_issuer.issuer}/introspect"
        )
    )
    return AuthBridge(
        providers=[provider],
        transport=httpx.MockTransport(introspector.handle),
        explain_refusals=True,
    )


def test_active_principal_refuses_a_revoked_jwt(
    active_auth: AuthBridge, fake_issuer: FakeIssuer, introspector: Introspector
) -> None:
    good = fake_issuer.token(subject="alice", scopes=["pay"])
    revoked = fake_issuer.token(subject="mallory", scopes=["pay"])
    introspector.revoked.add(revoked)
    with TestClient(active_app(active_auth)) as client:
        assert client.get("/pay", headers=bearer(good)).json() == {"subject": "alice"}
        assert client.get("/pay", headers=bearer(good)).status_code == 200
        assert introspector.calls == 1  # cached, like every outbound call
        refused = client.get("/pay", headers=bearer(revoked))
        assert refused.status_code == 401
        assert refused.json()["detail"]["reason"] == "revoked"
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        # The plain dependency checks locally only: the revoked JWT is valid until its exp.
        assert client.get("/items", headers=bearer(revoked)).status_code == 200
        # Scopes are still enforced, after the token is known to be active.
        no_scope = client.get("/pay", headers=bearer(fake_issuer.token(scopes=["other"])))
        assert no_scope.status_code == 403
        assert client.get("/pay").status_code == 401


def test_active_principal_fails_closed(
    active_auth: AuthBridge, fake_issuer: FakeIssuer, introspector: Introspector
) -> None:
    introspector.down = True
    with TestClient(active_app(active_auth)) as client:
        response = client.get("/pay", headers=bearer(fake_issuer.token(scopes=["pay"])))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1


def test_active_principal_without_introspection_is_refused(fake_issuer: FakeIssuer) -> None:
    auth = AuthBridge(
        providers=[fake_issuer.provider()], transport=fake_issuer.transport, explain_refusals=True
    )
    with TestClient(active_app(auth)) as client:
        response = client.get("/pay", headers=bearer(fake_issuer.token(scopes=["pay"])))
    assert response.status_code == 401
    assert response.json()["detail"]["reason"] == "revocation_check_unavailable"
