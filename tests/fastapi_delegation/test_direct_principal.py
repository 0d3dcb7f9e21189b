"""auth.direct_principal: the user's own tokens pass, a token someone uses for them does not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Security, WebSocket
from fastapi.security.base import SecurityBase
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from starlette.websockets import WebSocketDisconnect

from authbridge import AuthBridge, Principal
from authbridge.testing import FakeIssuer, override_auth

ROBOT = {"sub": "garage-robot", "client_id": "garage-robot"}
CHAIN = {**ROBOT, "act": {"sub": "home-hub", "client_id": "home-hub"}}


def build(fake: FakeIssuer, **options: Any) -> tuple[FastAPI, AuthBridge]:
    auth = AuthBridge([fake.provider("sso")], transport=fake.transport, **options)
    app = FastAPI(docs_url=None, redoc_url=None, lifespan=auth.lifespan)

    @app.get("/me")
    async def me(user: Principal = Security(auth.principal)) -> dict[str, Any]:
        return {"subject": user.subject, "actors": list(user.actors), "delegated": user.delegated}

    @app.post("/password")
    async def password(
        user: Principal = Security(auth.direct_principal, scopes=["account"]),
    ) -> dict[str, Any]:
        return {"subject": user.subject, "actors": list(user.actors)}

    @app.get("/profile")
    async def profile(user: Principal = Security(auth.direct_principal)) -> dict[str, Any]:
        return {"subject": user.subject}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: Principal = Security(auth.direct_principal)) -> None:
        await websocket.accept()
        await websocket.send_json({"subject": user.subject})
        await websocket.close()

    auth.install(app, docs_url=None)
    return app, auth


@pytest.fixture
def client(fake_issuer: FakeIssuer) -> Iterator[TestClient]:
    app, _ = build(fake_issuer, realm="items")
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_users_own_token_passes_and_a_delegated_one_is_refused(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    own = fake_issuer.token(scopes=["account"])
    robot = fake_issuer.token(scopes=["account"], act=ROBOT)
    assert client.post("/password", headers=bearer(own)).json() == {
        "subject": "alice",
        "actors": [],
    }
    refused = client.post("/password", headers=bearer(robot))
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Delegated tokens are not accepted here"}
    # RFC 6750 has no error code for it: a challenge without one (not insufficient_scope).
    assert refused.headers["www-authenticate"] == 'Bearer realm="items"'
    # auth.principal takes it, and says who acts for whom.
    assert client.get("/me", headers=bearer(robot)).json() == {
        "subject": "alice",
        "actors": ["garage-robot"],
        "delegated": True,
    }
    chain = client.get("/me", headers=bearer(fake_issuer.token(act=CHAIN))).json()
    assert chain["actors"] == ["garage-robot", "home-hub"]
    assert client.get("/profile", headers=bearer(fake_issuer.token(act=CHAIN))).status_code == 403
    assert client.get("/profile", headers=bearer(fake_issuer.token())).status_code == 200


def test_delegated_is_refused_before_scopes_and_scopes_still_count(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    no_scope = client.post("/password", headers=bearer(fake_issuer.token()))
    assert no_scope.status_code == 403
    assert 'error="insufficient_scope"' in no_scope.headers["www-authenticate"]
    robot_no_scope = client.post("/password", headers=bearer(fake_issuer.token(act=ROBOT)))
    assert robot_no_scope.status_code == 403
    assert robot_no_scope.json() == {"detail": "Delegated tokens are not accepted here"}
    assert "insufficient_scope" not in robot_no_scope.headers["www-authenticate"]


@pytest.mark.parametrize(
    "act", ["garage-robot", ["garage-robot"], {"client_id": "garage-robot"}, {"sub": ""}]
)
def test_a_malformed_act_is_an_invalid_token_everywhere(
    client: TestClient, fake_issuer: FakeIssuer, act: Any
) -> None:
    token = fake_issuer.token(scopes=["account"], act=act)
    for answer in (
        client.get("/me", headers=bearer(token)),
        client.get("/profile", headers=bearer(token)),
    ):
        assert answer.status_code == 401
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_no_token_and_bad_tokens_are_401_as_on_every_route(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    assert client.get("/profile").status_code == 401
    assert client.get("/profile").headers["www-authenticate"] == 'Bearer realm="items"'
    expired = client.get("/profile", headers=bearer(fake_issuer.bad.expired()))
    assert expired.status_code == 401


def test_the_refusal_is_logged_with_its_reason_and_never_the_token(
    client: TestClient, fake_issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = fake_issuer.token(act={"sub": "robot-<script>", "client_id": "r"})
    with caplog.at_level(logging.INFO, logger="authbridge"):
        assert client.get("/profile", headers=bearer(token)).status_code == 403
    lines = [r.getMessage() for r in caplog.records]
    assert any("403 delegated_token_refused (delegated_token_refused)" in line for line in lines)
    assert any("provider=sso" in line and "robot-<script>" in line for line in lines), lines
    assert not any(token in line or token.split(".")[2] in line for line in lines)


def test_explained_refusals_name_the_reason_and_the_actors(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer, explain_refusals=True)
    with TestClient(app) as client:
        answer = client.get("/profile", headers=bearer(fake_issuer.token(act=CHAIN)))
    assert answer.status_code == 403
    assert answer.json()["detail"] == {
        "message": "Delegated tokens are not accepted here",
        "error": "delegated_token_refused",
        "reason": "delegated_token_refused",
        "provider": "sso",
        "detail": {"actors": ["garage-robot", "home-hub"]},
    }


def test_websockets_close_with_a_policy_violation(
    client: TestClient, fake_issuer: FakeIssuer
) -> None:
    with client.websocket_connect("/ws", headers=bearer(fake_issuer.token())) as ws:
        assert ws.receive_json() == {"subject": "alice"}
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws", headers=bearer(fake_issuer.token(act=ROBOT))) as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 1008
    assert closed.value.reason == "Delegated tokens are not accepted here"


def test_the_openapi_document_declares_the_403(fake_issuer: FakeIssuer) -> None:
    app, _ = build(fake_issuer)
    document = app.openapi()
    validate(document)
    paths = document["paths"]
    profile = paths["/profile"]["get"]["responses"]["403"]
    assert "delegated token" in profile["description"]
    assert "no error code" in profile["headers"]["WWW-Authenticate"]["description"]
    password = paths["/password"]["post"]["responses"]["403"]["description"]
    assert password.startswith("The token lacks a required scope: `account`; or A delegated")
    assert "403" not in paths["/me"]["get"]["responses"]  # auth.principal, no scopes


def test_the_bridge_exposes_it_and_override_auth_swaps_it(fake_issuer: FakeIssuer) -> None:
    app, auth = build(fake_issuer)
    exposed = {n: v for n, v in vars(auth).items() if isinstance(v, SecurityBase)}
    assert exposed == auth.dependencies
    assert auth.dependencies["direct_principal"] is auth.direct_principal
    other = FakeIssuer(issuer="https://other.example.test", key=fake_issuer.key)
    test_auth = AuthBridge([other.provider("other")], transport=other.transport)
    with override_auth(app, auth, with_=test_auth), TestClient(app) as client:
        assert app.dependency_overrides[auth.direct_principal] is test_auth.direct_principal
        assert client.get("/profile", headers=bearer(other.token())).status_code == 200
        assert client.get("/profile", headers=bearer(other.token(act=ROBOT))).status_code == 403
        assert client.get("/profile", headers=bearer(fake_issuer.token())).status_code == 401
