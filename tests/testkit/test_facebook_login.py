"""FakeFacebook's login dialog, code exchange (GET and POST) and /me."""

from __future__ import annotations

import httpx
import pytest

from authbridge.testing import FakeFacebook

from .support import callback, hidden_fields, no_cors, pkce

REDIRECT = "https://app.example.test/oauth/callback"


@pytest.fixture
def fake() -> FakeFacebook:
    facebook = FakeFacebook(redirect_uris=[REDIRECT])
    facebook.add_user("Alice Example", "10001", email="alice@example.test")
    return facebook


@pytest.fixture
def client(fake: FakeFacebook) -> httpx.Client:
    return httpx.Client(transport=fake.transport)


def dialog(fake: FakeFacebook, **extra: str) -> dict[str, str]:
    return {"client_id": fake.app_id, "redirect_uri": REDIRECT, "state": "st", "scope": "email"} | (
        extra
    )


def exchange(
    client: httpx.Client, fake: FakeFacebook, code: str, *, post: bool = False, **extra: str
) -> httpx.Response:
    query = {
        "client_id": fake.app_id,
        "redirect_uri": REDIRECT,
        "client_secret": fake.app_secret,
        "code": code,
        **extra,
    }
    query = {k: v for k, v in query.items() if v}
    if post:
        return client.post(fake.access_token_url, data=query)
    return client.get(fake.access_token_url, params=query)


def approved(fake: FakeFacebook, client: httpx.Client, **extra: str) -> str:
    fake.approve_as("10001")
    return callback(client.get(fake.dialog_url, params=dialog(fake, **extra)))["code"]


def test_dialog_exchange_and_me(fake: FakeFacebook, client: httpx.Client) -> None:
    verifier, challenge = pkce()
    page = client.get(
        fake.dialog_url, params=dialog(fake, code_challenge=challenge, code_challenge_method="S256")
    )
    assert page.status_code == 200
    assert "Alice Example" in page.text
    back = callback(
        client.post(fake.dialog_url, data={**hidden_fields(page.text), "user": "10001"})
    )
    assert back["state"] == "st"
    answer = exchange(client, fake, back["code"], code_verifier=verifier)
    assert answer.status_code == 200
    assert no_cors(answer)
    token = answer.json()["access_token"]
    assert answer.json()["token_type"] == "bearer"
    proof = fake.appsecret_proof(token)
    me = client.get(
        f"{fake.graph_base}/v19.0/me",
        params={"fields": "id,name,email", "appsecret_proof": proof},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert me.json() == {"id": "10001", "name": "Alice Example", "email": "alice@example.test"}


def test_post_exchange_and_single_use(fake: FakeFacebook, client: httpx.Client) -> None:
    code = approved(fake, client)
    assert exchange(client, fake, code, post=True).status_code == 200
    again = exchange(client, fake, code)
    assert again.status_code == 400
    assert again.json()["error"]["message"] == "This authorization code has been used."


def test_exchange_refusals(fake: FakeFacebook, client: httpx.Client) -> None:
    no_secret = exchange(client, fake, approved(fake, client), client_secret="")
    assert no_secret.json()["error"]["message"] == "Error validating client secret."
    wrong = exchange(client, fake, approved(fake, client), client_secret="0" * 32)
    assert wrong.json()["error"]["code"] == 1
    other_uri = exchange(client, fake, approved(fake, client), redirect_uri=REDIRECT + "/x")
    assert "redirect_uri" in other_uri.json()["error"]["message"]
    _, challenge = pkce()
    pkce_code = approved(fake, client, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(client, fake, pkce_code).status_code == 400
    assert fake.app_secret not in wrong.text


def test_me_checks_appsecret_proof_and_permissions(client: httpx.Client) -> None:
    fake = FakeFacebook(require_appsecret_proof=True)
    fake.add_user("Bob", "20002", email="bob@example.test")
    web = httpx.Client(transport=fake.transport)
    fake.approve_as("20002")
    back = callback(web.get(fake.dialog_url, params={**dialog(fake), "scope": "public_profile"}))
    token = exchange(web, fake, back["code"]).json()["access_token"]
    me = f"{fake.graph_base}/v19.0/me"
    missing = web.get(me, params={"access_token": token})
    assert "appsecret_proof" in missing.json()["error"]["message"]
    bad = web.get(me, params={"access_token": token, "appsecret_proof": "0" * 64})
    assert bad.json()["error"]["message"] == "Invalid appsecret_proof provided in the API argument"
    good = web.get(
        me,
        params={
            "access_token": token,
            "fields": "id,email",
            "appsecret_proof": fake.appsecret_proof(token),
        },
    )
    assert good.json() == {"id": "20002"}  # no email permission


def test_dialog_refusals(fake: FakeFacebook, client: httpx.Client) -> None:
    blocked = client.get(fake.dialog_url, params=dialog(fake, redirect_uri="https://evil.test/"))
    assert blocked.status_code == 400
    assert "location" not in blocked.headers
    denied = callback(client.post(fake.dialog_url, data={**dialog(fake), "decision": "deny"}))
    assert (denied["error"], denied["error_reason"]) == ("access_denied", "user_denied")
