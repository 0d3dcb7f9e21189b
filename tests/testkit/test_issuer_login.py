"""FakeIssuer's OpenID Connect code flow: login form, token, userinfo, logout, discovery."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authbridge.testing import FakeIssuer

from .support import at_hash, callback, claims_of, hidden_fields, no_cors, pkce

REDIRECT = "https://app.example.test/oauth/callback"


@pytest.fixture
def fake(authbridge_signing_key: rsa.RSAPrivateKey) -> FakeIssuer:
    issuer = FakeIssuer(key=authbridge_signing_key, redirect_uris=[REDIRECT])
    issuer.add_user("alice", "correct horse", email="alice@example.test", name="Alice")
    return issuer


@pytest.fixture
def client(fake: FakeIssuer) -> httpx.Client:
    return httpx.Client(transport=fake.transport)


def params(fake: FakeIssuer, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile items:read",
        "state": "st",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def redeem(
    client: httpx.Client, fake: FakeIssuer, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return client.post(fake.token_endpoint, data=data, auth=(fake.client_id, fake.client_secret))


def test_discovery_advertises_the_login_endpoints(fake: FakeIssuer, client: httpx.Client) -> None:
    doc = client.get(f"{fake.issuer}/.well-known/openid-configuration").json()
    assert doc["authorization_endpoint"] == fake.authorization_endpoint
    assert doc["token_endpoint"] == fake.token_endpoint
    assert doc["userinfo_endpoint"] == fake.userinfo_endpoint
    assert doc["end_session_endpoint"] == fake.end_session_endpoint
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_login_form_to_tokens_userinfo_and_logout(fake: FakeIssuer, client: httpx.Client) -> None:
    verifier, challenge = pkce()
    page = client.get(fake.authorization_endpoint, params=params(fake, challenge))
    assert 'type="password"' in page.text
    form = hidden_fields(page.text)
    wrong = client.post(
        fake.authorization_endpoint, data={**form, "username": "alice", "password": "nope"}
    )
    assert wrong.status_code == 200
    assert "Invalid username or password." in wrong.text
    good = client.post(
        fake.authorization_endpoint,
        data={**form, "username": "alice", "password": "correct horse"},
    )
    back = callback(good)
    assert back["iss"] == fake.issuer
    assert back["state"] == "st"
    answer = redeem(client, fake, back["code"], verifier)
    assert answer.status_code == 200
    assert no_cors(answer)
    assert answer.headers["cache-control"] == "no-store"
    tokens = answer.json()
    claims = claims_of(tokens["id_token"])
    assert claims["aud"] == fake.client_id
    assert claims["nonce"] == "n-1"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["email"] == "alice@example.test"
    assert claims_of(tokens["access_token"])["scope"] == "items:read"
    info = client.get(
        fake.userinfo_endpoint, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert info == {
        "sub": "alice",
        "email": "alice@example.test",
        "email_verified": True,
        "name": "Alice",
        "preferred_username": "alice",
    }
    logout = client.get(
        fake.end_session_endpoint,
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://app.example.test/",
            "state": "bye",
        },
    )
    assert logout.headers["location"] == "https://app.example.test/?state=bye"
    unknown = client.get(
        fake.end_session_endpoint,
        params={"client_id": "nobody", "post_logout_redirect_uri": "https://evil.test/"},
    )
    assert unknown.status_code == 400


def test_token_endpoint_refusals(fake: FakeIssuer, client: httpx.Client) -> None:
    verifier, challenge = pkce()

    def code(**extra: str) -> str:
        fake.approve_as("alice")
        return callback(
            client.get(fake.authorization_endpoint, params=params(fake, challenge, **extra))
        )["code"]

    once = code()
    assert redeem(client, fake, once, verifier).status_code == 200
    assert redeem(client, fake, once, verifier).json()["error"] == "invalid_grant"
    assert redeem(client, fake, code(), None).json()["error"] == "invalid_grant"
    other, _ = pkce()
    assert redeem(client, fake, code(), other).json()["error"] == "invalid_grant"
    no_secret = client.post(
        fake.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code(),
            "client_id": fake.client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert (no_secret.status_code, no_secret.json()["error"]) == (401, "invalid_client")
    wrong = client.post(
        fake.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code(),
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(fake.client_id, "wrong"),
    )
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
    posted = client.post(
        fake.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code(),
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
    )
    assert posted.status_code == 200  # client_secret_post
    both = client.post(
        fake.token_endpoint,
        data={"grant_type": "authorization_code", "code": code(), "client_secret": "x"},
        auth=(fake.client_id, fake.client_secret),
    )
    assert both.json()["error"] == "invalid_request"
    fake.approve_as("alice")
    no_pkce = {k: v for k, v in params(fake, challenge).items() if not k.startswith("code_")}
    plain_code = callback(client.get(fake.authorization_endpoint, params=no_pkce))["code"]
    assert redeem(client, fake, plain_code, verifier).json()["error"] == "invalid_grant"


def test_basic_credentials_are_form_decoded(client: httpx.Client, fake: FakeIssuer) -> None:
    secret = fake.add_client("app:1", "s+cr%t", redirect_uris=[REDIRECT])
    verifier, challenge = pkce()
    fake.approve_as("alice")
    query = params(fake, challenge, client_id="app:1")
    code = callback(client.get(fake.authorization_endpoint, params=query))["code"]
    basic = base64.b64encode(b"app%3A1:s%2Bcr%25t").decode()
    answer = client.post(
        fake.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    assert secret == "s+cr%t"
    assert answer.status_code == 200, answer.text


def test_authorize_refusals(fake: FakeIssuer, client: httpx.Client) -> None:
    _, challenge = pkce()
    bad_redirect = client.get(
        fake.authorization_endpoint,
        params=params(fake, challenge, redirect_uri="https://evil.test/"),
    )
    assert bad_redirect.status_code == 400
    assert "location" not in bad_redirect.headers
    plain = callback(
        client.get(
            fake.authorization_endpoint,
            params=params(fake, challenge, code_challenge_method="plain"),
        )
    )
    assert (plain["error"], plain["iss"], plain["state"]) == ("invalid_request", fake.issuer, "st")
    fake.approve_as("alice", iss="https://other.example.test")
    forged = callback(client.get(fake.authorization_endpoint, params=params(fake, challenge)))
    assert forged["iss"] == "https://other.example.test"
    fake.approve_as("alice", iss=None)
    assert "iss" not in callback(
        client.get(fake.authorization_endpoint, params=params(fake, challenge))
    )


def test_failures_and_records(fake: FakeIssuer, client: httpx.Client) -> None:
    fake.http.fail_next(500, body={"error": "server_error"})
    assert client.post(fake.token_endpoint, data={}).status_code == 500
    verifier, challenge = pkce()
    fake.approve_as("alice")
    code = callback(client.get(fake.authorization_endpoint, params=params(fake, challenge)))["code"]
    assert not any(r.path == "/token" and r.form.get("code") for r in fake.http.requests)
    redeem(client, fake, code, verifier)
    last = fake.http.requests[-1]
    assert (last.form["code"], last.form["code_verifier"]) == ("<redacted>", "<redacted>")
    assert last.headers["authorization"] == "Basic <redacted>"
    assert fake.requests[-1] == "/token"


def test_escaping_on_the_login_page(fake: FakeIssuer, client: httpx.Client) -> None:
    _, challenge = pkce()
    hostile = "<img src=x onerror=alert(1)>"
    page = client.get(
        fake.authorization_endpoint,
        params=params(fake, challenge, state=hostile, login_hint=hostile),
    )
    assert hostile not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_served_issuer_over_http(authbridge_signing_key: rsa.RSAPrivateKey) -> None:
    with FakeIssuer.serve(key=authbridge_signing_key) as fake, httpx.Client() as client:
        fake.add_user("bob", "pw")
        verifier, challenge = pkce()
        doc = client.get(f"{fake.issuer}/.well-known/openid-configuration")
        assert doc.headers["cache-control"] == "max-age=300"
        page = client.get(
            fake.authorization_endpoint,
            params=params(fake, challenge, redirect_uri="http://127.0.0.1:1/cb"),
        )
        form = {**hidden_fields(page.text), "username": "bob", "password": "pw"}
        back = callback(client.post(fake.authorization_endpoint, data=form))
        answer = client.post(
            fake.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": back["code"],
                "redirect_uri": "http://127.0.0.1:1/cb",
                "code_verifier": verifier,
            },
            auth=(fake.client_id, fake.client_secret),
        )
        assert answer.status_code == 200
        assert claims_of(answer.json()["id_token"])["iss"] == fake.issuer
