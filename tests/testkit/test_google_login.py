"""FakeGoogle's web server flow: chooser, token endpoint, signed ID tokens, userinfo."""

from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authbridge.testing import FakeGoogle

from .support import at_hash, callback, claims_of, header_of, hidden_fields, no_cors, pkce

REDIRECT = "https://app.example.test/oauth/callback"


@pytest.fixture
def fake(authbridge_signing_key: rsa.RSAPrivateKey) -> FakeGoogle:
    google = FakeGoogle(redirect_uris=[REDIRECT], key=authbridge_signing_key)
    google.add_user("alice@example.test", "110000000000000000001", name="Alice", hd="example.test")
    return google


@pytest.fixture
def client(fake: FakeGoogle) -> httpx.Client:
    return httpx.Client(transport=fake.transport)


def params(fake: FakeGoogle, **extra: str) -> dict[str, str]:
    base = {
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile",
        "state": "st",
        "nonce": "n-0S6",
    }
    return {**base, **extra}


def redeem(client: httpx.Client, fake: FakeGoogle, code: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **extra,
    }
    return client.post(fake.token_endpoint, data={k: v for k, v in data.items() if v})


def test_chooser_to_id_token(fake: FakeGoogle, client: httpx.Client) -> None:
    verifier, challenge = pkce()
    page = client.get(
        fake.authorization_endpoint,
        params=params(fake, code_challenge=challenge, code_challenge_method="S256"),
    )
    assert page.status_code == 200
    form = {**hidden_fields(page.text), "user": "alice@example.test"}
    back = callback(client.post(fake.authorization_endpoint, data=form))
    assert back["state"] == "st"
    assert "https://www.googleapis.com/auth/userinfo.email" in back["scope"]
    answer = redeem(client, fake, back["code"], code_verifier=verifier)
    assert answer.status_code == 200
    assert no_cors(answer)
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"].startswith("ya29.")
    claims = claims_of(tokens["id_token"])
    assert header_of(tokens["id_token"])["alg"] == "RS256"
    assert header_of(tokens["id_token"])["kid"] in {k["kid"] for k in fake.jwks()["keys"]}
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == claims["azp"] == fake.client_id
    assert claims["nonce"] == "n-0S6"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["email_verified"] is True
    assert claims["hd"] == "example.test"
    assert claims["sub"] == "110000000000000000001"
    keys = client.get(fake.jwks_uri).json()
    assert keys == fake.jwks()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = client.get(fake.userinfo_endpoint, headers=auth).json()
    assert (info["sub"], info["email"], info["name"]) == (claims["sub"], claims["email"], "Alice")
    assert client.get(fake.tokeninfo_url, headers=auth).json()["sub"] == claims["sub"]


def test_the_id_token_verifies_with_the_published_key(
    fake: FakeGoogle, client: httpx.Client
) -> None:
    import base64  # noqa: PLC0415

    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

    fake.approve_as("alice@example.test")
    code = callback(client.get(fake.authorization_endpoint, params=params(fake)))["code"]
    id_token = redeem(client, fake, code).json()["id_token"]
    jwk = client.get(fake.jwks_uri).json()["keys"][0]

    def number(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    public = rsa.RSAPublicNumbers(number(jwk["e"]), number(jwk["n"])).public_key()
    head, body, signature = id_token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public.verify(raw, f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_token_endpoint_refusals(fake: FakeGoogle, client: httpx.Client) -> None:
    def code(**extra: str) -> str:
        fake.approve_as("alice@example.test")
        return callback(client.get(fake.authorization_endpoint, params=params(fake, **extra)))[
            "code"
        ]

    no_secret = redeem(client, fake, code(), client_secret="")
    assert (no_secret.status_code, no_secret.json()["error"]) == (401, "invalid_client")
    wrong = redeem(client, fake, code(), client_secret="GOCSPX-wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    once = code()
    assert redeem(client, fake, once).status_code == 200
    assert redeem(client, fake, once).json() == {
        "error": "invalid_grant",
        "error_description": "Bad Request",
    }
    mismatch = redeem(client, fake, code(), redirect_uri="https://app.example.test/other")
    assert mismatch.json()["error"] == "redirect_uri_mismatch"
    _verifier, challenge = pkce()
    pkce_code = code(code_challenge=challenge, code_challenge_method="S256")
    assert redeem(client, fake, pkce_code).json()["error"] == "invalid_grant"
    other, _ = pkce()
    pkce_code = code(code_challenge=challenge, code_challenge_method="S256")
    assert redeem(client, fake, pkce_code, code_verifier=other).json()["error"] == "invalid_grant"
    grant = redeem(client, fake, code(), grant_type="password")
    assert grant.json()["error"] == "unsupported_grant_type"


def test_authorize_refusals_are_pages_or_redirects(fake: FakeGoogle, client: httpx.Client) -> None:
    unregistered = client.get(
        fake.authorization_endpoint, params=params(fake, redirect_uri="https://evil.test/cb")
    )
    assert unregistered.status_code == 400
    assert "location" not in unregistered.headers
    no_scope = callback(client.get(fake.authorization_endpoint, params=params(fake, scope="")))
    assert no_scope["error"] == "invalid_request"
    denied = client.post(fake.authorization_endpoint, data={**params(fake), "decision": "deny"})
    assert callback(denied)["error"] == "access_denied"


def test_unverified_email_and_tampered_id_tokens(fake: FakeGoogle, client: httpx.Client) -> None:
    fake.add_user("bob@example.test", email_verified=False)
    fake.approve_as("bob@example.test")
    code = callback(client.get(fake.authorization_endpoint, params=params(fake)))["code"]
    assert claims_of(redeem(client, fake, code).json()["id_token"])["email_verified"] is False
    fake.tamper_next_id_token(header={"alg": "none"}, nonce="other", at_hash=None)
    fake.approve_as("alice@example.test")
    code = callback(client.get(fake.authorization_endpoint, params=params(fake)))["code"]
    id_token = redeem(client, fake, code).json()["id_token"]
    assert header_of(id_token)["alg"] == "none"
    assert id_token.endswith(".")
    assert claims_of(id_token)["nonce"] == "other"
    assert "at_hash" not in claims_of(id_token)


def test_served_on_one_origin(fake: FakeGoogle) -> None:
    with fake.serve() as served, httpx.Client() as client:
        assert served.authorization_endpoint.startswith("http://127.0.0.1:")
        fake.approve_as("alice@example.test")
        back = callback(client.get(served.authorization_endpoint, params=params(fake)))
        tokens = redeem(client, fake, back["code"]).json()
        assert client.get(served.jwks_uri).json() == fake.jwks()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get(served.userinfo_endpoint, headers=auth).status_code == 200
