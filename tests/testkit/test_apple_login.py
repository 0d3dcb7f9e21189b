"""FakeApple: form_post sign-in, the client-secret JWT, ID tokens with string booleans."""

from __future__ import annotations

import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authbridge.testing import FakeApple

from .support import at_hash, claims_of, hidden_fields, no_cors

REDIRECT = "https://app.example.test/oauth/callback"


@pytest.fixture
def fake() -> FakeApple:
    apple = FakeApple(redirect_uris=[REDIRECT])
    apple.add_user("alice@example.test", "001234.abc.0001", first_name="Alice", last_name="Ex")
    return apple


@pytest.fixture
def client(fake: FakeApple) -> httpx.Client:
    return httpx.Client(transport=fake.transport)


def authorize(fake: FakeApple, **extra: str) -> dict[str, str]:
    return {
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "response_mode": "form_post",
        "scope": "name email",
        "state": "st",
        "nonce": "n-1",
        **extra,
    }


def sign_in(fake: FakeApple, client: httpx.Client) -> dict[str, str]:
    fake.approve_as("alice@example.test")
    page = client.get(fake.authorization_endpoint, params=authorize(fake))
    assert page.status_code == 200
    assert f'<form method="post" action="{REDIRECT}">' in page.text
    assert "<script" not in page.text
    return hidden_fields(page.text)


def redeem(client: httpx.Client, fake: FakeApple, code: str, secret: str) -> httpx.Response:
    data = {
        "client_id": fake.client_id,
        "client_secret": secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
    }
    return client.post(fake.token_endpoint, data=data)


def test_form_post_then_token(fake: FakeApple, client: httpx.Client) -> None:
    fields = sign_in(fake, client)
    assert fields["state"] == "st"
    assert json.loads(fields["user"]) == {
        "name": {"firstName": "Alice", "lastName": "Ex"},
        "email": "alice@example.test",
    }
    answer = redeem(client, fake, fields["code"], fake.client_secret())
    assert answer.status_code == 200
    assert no_cors(answer)
    tokens = answer.json()
    claims = claims_of(tokens["id_token"])
    assert claims["iss"] == "https://appleid.apple.com"
    assert claims["aud"] == fake.client_id
    assert claims["nonce"] == "n-1"
    assert claims["email_verified"] == "true"
    assert claims["is_private_email"] == "false"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert client.get(fake.jwks_uri).json()["keys"][0]["kty"] == "RSA"
    again = sign_in(fake, client)
    assert "user" not in again  # the name comes on the first authorization only


def test_the_client_secret_jwt_is_verified(fake: FakeApple, client: httpx.Client) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    bad_secrets = {
        "other key": fake.client_secret(key=other),
        "expired": fake.client_secret(expires_in=-10),
        "wrong team": fake.client_secret(iss="OTHERTEAM1"),
        "wrong audience": fake.client_secret(aud="https://example.test"),
        "wrong subject": fake.client_secret(sub="com.other.app"),
        "too long": fake.client_secret(expires_in=200 * 24 * 3600),
        "unknown kid": fake.client_secret(header={"kid": "NOPE"}),
        "not a JWT": "secret",
    }
    code = sign_in(fake, client)["code"]
    for name, secret in bad_secrets.items():
        answer = redeem(client, fake, code, secret)
        assert answer.json() == {"error": "invalid_client"}, name
    assert redeem(client, fake, code, fake.client_secret()).status_code == 200
    assert redeem(client, fake, code, fake.client_secret()).json() == {"error": "invalid_grant"}
    fake.register_key("KEY2", other.public_key())
    code = sign_in(fake, client)["code"]
    assert (
        redeem(
            client, fake, code, fake.client_secret(key=other, header={"kid": "KEY2"})
        ).status_code
        == 200
    )


def test_authorize_refusals_and_cancel(fake: FakeApple, client: httpx.Client) -> None:
    query_with_scope = client.get(
        fake.authorization_endpoint, params=authorize(fake, response_mode="query")
    )
    assert query_with_scope.status_code == 400
    cancelled = client.post(
        fake.authorization_endpoint, data={**authorize(fake), "decision": "deny"}
    )
    assert hidden_fields(cancelled.text)["error"] == "user_cancelled_authorize"
    no_scope = authorize(fake, response_mode="query", scope="")
    fake.approve_as("alice@example.test")
    redirected = client.get(fake.authorization_endpoint, params=no_scope)
    assert redirected.status_code == 302
    assert "code=" in redirected.headers["location"]
