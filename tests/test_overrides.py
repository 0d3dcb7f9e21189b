"""override_auth: one call swaps every authbridge dependency of an app, and restores them."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Security
from fastapi.security.base import SecurityBase
from fastapi.testclient import TestClient

from authbridge import AuthBridge, OIDCProvider, Principal
from authbridge.testing import FakeIssuer, override_auth

ISSUER = "https://sso.example.com/"


class Production:
    """The app as it is imported: its AuthBridge trusts a provider the tests cannot reach."""

    def __init__(self) -> None:
        self.outbound: list[str] = []
        self.auth = AuthBridge(
            providers=[OIDCProvider("sso", issuer=ISSUER, audience="items-api")],
            transport=httpx.MockTransport(self.unreachable),
        )
        self.app = FastAPI()
        auth = self.auth

        @self.app.get("/items")
        async def items(user: Principal = Security(auth.principal, scopes=["items:read"])) -> dict:
            return {"owner": user.subject}

        @self.app.get("/hello")
        async def hello(user: Principal | None = Security(auth.optional_principal)) -> dict:
            return {"hello": user.subject if user else None}

        @self.app.get("/pay")
        async def pay(user: Principal = Security(auth.active_principal)) -> dict:
            return {"payer": user.subject}

    def unreachable(self, request: httpx.Request) -> httpx.Response:
        self.outbound.append(str(request.url))
        raise httpx.ConnectError("no network in tests", request=request)


@pytest.fixture
def production() -> Production:
    return Production()


@pytest.fixture
def fake(authbridge_signing_key) -> FakeIssuer:
    return FakeIssuer(issuer=ISSUER, audience="items-api", key=authbridge_signing_key)


@pytest.fixture
def test_auth(fake: FakeIssuer) -> AuthBridge:
    return AuthBridge(providers=[fake.provider("sso")], transport=fake.transport)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_overriding_principal_alone_leaves_the_others_live(
    production: Production, fake: FakeIssuer, test_auth: AuthBridge
) -> None:
    # The problem override_auth solves: the optional dependency still asks the real provider.
    production.app.dependency_overrides[production.auth.principal] = test_auth.principal
    client = TestClient(production.app)
    token = fake.token(subject="alice", scopes=["items:read"])
    assert client.get("/items", headers=bearer(token)).status_code == 200
    assert client.get("/hello", headers=bearer(token)).status_code == 503
    assert production.outbound


def test_every_dependency_is_overridden(
    production: Production, fake: FakeIssuer, test_auth: AuthBridge
) -> None:
    token = fake.token(subject="alice", scopes=["items:read"])
    with override_auth(production.app, production.auth, with_=test_auth):
        client = TestClient(production.app)  # no `with`: the production lifespan is not run
        assert client.get("/items", headers=bearer(token)).json() == {"owner": "alice"}
        assert client.get("/hello", headers=bearer(token)).json() == {"hello": "alice"}
        assert client.get("/hello").json() == {"hello": None}
        # active_principal is test_auth's: its provider has no introspection, so it says so.
        assert client.get("/pay", headers=bearer(token)).status_code == 401
    assert production.outbound == []  # the real provider was never asked


def test_checks_still_run_on_real_tokens(
    production: Production, fake: FakeIssuer, test_auth: AuthBridge
) -> None:
    with override_auth(production.app, production.auth, with_=test_auth):
        client = TestClient(production.app)
        no_scope = client.get("/items", headers=bearer(fake.token(scopes=[])))
        assert no_scope.status_code == 403
        assert 'scope="items:read"' in no_scope.headers["www-authenticate"]
        for name, token in fake.bad.all().items():
            assert client.get("/items", headers=bearer(token)).status_code == 401, name
            assert client.get("/hello", headers=bearer(token)).status_code == 401, name


def test_leaving_the_block_restores_the_app(
    production: Production, test_auth: AuthBridge, fake: FakeIssuer
) -> None:
    app, auth = production.app, production.auth

    async def other() -> None:
        return None

    async def earlier(token: str = "") -> Principal:
        raise AssertionError("not called")

    app.dependency_overrides[other] = other
    app.dependency_overrides[auth.principal] = earlier
    before = dict(app.dependency_overrides)
    with override_auth(app, auth, with_=test_auth) as override:
        assert set(override.dependencies) == set(auth.dependencies.values())
        for name, dependency in auth.dependencies.items():
            assert app.dependency_overrides[dependency] is test_auth.dependencies[name]
        app.dependency_overrides[str] = str  # made meanwhile: kept
    assert app.dependency_overrides == {**before, str: str}
    override.restore()  # twice is harmless
    assert app.dependency_overrides == {**before, str: str}


def test_without_a_block(production: Production, test_auth: AuthBridge, fake: FakeIssuer) -> None:
    override = override_auth(production.app, production.auth, with_=test_auth)
    client = TestClient(production.app)
    assert client.get("/hello", headers=bearer(fake.token(subject="bo"))).json() == {"hello": "bo"}
    override.restore()
    assert production.app.dependency_overrides == {}


def test_nested_overrides_unwind_in_order(
    production: Production, test_auth: AuthBridge, fake: FakeIssuer
) -> None:
    second = AuthBridge(providers=[fake.provider("sso")], transport=fake.transport)
    app, auth = production.app, production.auth
    with override_auth(app, auth, with_=test_auth):
        with override_auth(app, auth, with_=second):
            assert app.dependency_overrides[auth.principal] is second.principal
        assert app.dependency_overrides[auth.principal] is test_auth.principal
    assert app.dependency_overrides == {}


def test_the_bridge_lists_every_dependency_it_exposes(production: Production) -> None:
    auth = production.auth
    exposed = {name: value for name, value in vars(auth).items() if isinstance(value, SecurityBase)}
    assert exposed == auth.dependencies
    assert set(exposed) == {
        "principal",
        "optional_principal",
        "active_principal",
        "direct_principal",
    }
