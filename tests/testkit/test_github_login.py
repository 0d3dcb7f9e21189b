"""FakeGitHub's OAuth web flow follows GitHub's documented behaviour."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qsl

import httpx
import pytest

from authbridge.testing import FakeGitHub

from .support import callback, hidden_fields, no_cors, pkce

REDIRECT = "https://app.example.test/oauth/callback"


def authorize_params(fake: FakeGitHub, **extra: str) -> dict[str, str]:
    params = {"client_id": fake.client_id, "redirect_uri": REDIRECT, "state": "st-1"}
    params["scope"] = "read:user user:email"
    params.update(extra)
    return params


def redeem(client: httpx.Client, fake: FakeGitHub, code: str, **extra: str) -> httpx.Response:
    data = {"client_id": fake.client_id, "client_secret": fake.client_secret, "code": code}
    data["redirect_uri"] = REDIRECT
    data.update(extra)
    return client.post(fake.access_token_url, data=data, headers={"Accept": "application/json"})


def approved_code(fake: FakeGitHub, client: httpx.Client, login: str = "mona", **extra: str) -> str:
    fake.approve_as(login)
    return callback(client.get(fake.authorize_url, params=authorize_params(fake, **extra)))["code"]


@pytest.fixture
def fake() -> FakeGitHub:
    github = FakeGitHub()
    github.add_user(
        "mona",
        583231,
        name="Mona",
        emails=[
            {"email": "old@example.test", "primary": False, "verified": False},
            {"email": "mona@example.test", "primary": True, "verified": True},
        ],
    )
    return github


@pytest.fixture
def client(fake: FakeGitHub) -> httpx.Client:
    return httpx.Client(transport=fake.transport, headers={"User-Agent": "tests"})


def test_the_page_form_logs_in_with_pkce_and_the_apis_answer(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    verifier, challenge = pkce()
    params = authorize_params(fake, code_challenge=challenge, code_challenge_method="S256")
    page = client.get(fake.authorize_url, params=params)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script" not in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'action="https://github.com/login/oauth/authorize"' in page.text
    form = {**hidden_fields(page.text), "user": "mona", "decision": "approve"}
    assert form["code_challenge"] == challenge
    back = callback(client.post(fake.authorize_url, data=form))
    assert back["state"] == "st-1"
    assert len(back["code"]) == 20
    answer = redeem(client, fake, back["code"], code_verifier=verifier)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "read:user,user:email"
    assert body["access_token"].startswith("gho_")
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    user = client.get(f"{fake.api_base}/user", headers=auth).json()
    assert (user["login"], user["id"], user["name"], user["email"]) == (
        "mona",
        583231,
        "Mona",
        None,
    )
    emails = client.get(f"{fake.api_base}/user/emails", headers=auth).json()
    assert [(e["email"], e["primary"], e["verified"]) for e in emails] == [
        ("old@example.test", False, False),
        ("mona@example.test", True, True),
    ]
    assert fake.token_state(body["access_token"]) == "active"
    fake.assert_no_token_in_urls()


def test_form_encoded_answer_without_accept_json(fake: FakeGitHub, client: httpx.Client) -> None:
    code = approved_code(fake, client)
    data = {"client_id": fake.client_id, "client_secret": fake.client_secret, "code": code}
    answer = client.post(fake.access_token_url, data=data)
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = dict(parse_qsl(answer.text))
    assert fields["token_type"] == "bearer"
    assert fields["access_token"].startswith("gho_")


def test_a_code_works_once(fake: FakeGitHub, client: httpx.Client) -> None:
    code = approved_code(fake, client)
    assert "access_token" in redeem(client, fake, code).json()
    again = redeem(client, fake, code)
    assert again.status_code == 200  # GitHub reports token errors with 200
    assert again.json()["error"] == "bad_verification_code"
    assert "access_token" not in again.json()


def test_the_secret_is_required(fake: FakeGitHub, client: httpx.Client) -> None:
    code = approved_code(fake, client)
    missing = client.post(
        fake.access_token_url,
        data={"client_id": fake.client_id, "code": code},
        headers={"Accept": "application/json"},
    )
    wrong = redeem(client, fake, code, client_secret="not-the-secret")
    for answer in (missing, wrong):
        assert answer.json()["error"] == "incorrect_client_credentials"
        assert fake.client_secret not in answer.text
    basic = base64.b64encode(f"{fake.client_id}:{fake.client_secret}".encode()).decode()
    good = client.post(
        fake.access_token_url,
        data={"code": code},
        headers={"Accept": "application/json", "Authorization": f"Basic {basic}"},
    )
    assert good.json()["token_type"] == "bearer"  # a refused client did not use the code up


def test_pkce_is_checked_when_a_challenge_was_sent(fake: FakeGitHub, client: httpx.Client) -> None:
    verifier, challenge = pkce()
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"}
    assert redeem(client, fake, approved_code(fake, client, **extra)).json()["error"] == (
        "bad_verification_code"
    )
    other, _ = pkce()
    code = approved_code(fake, client, **extra)
    assert redeem(client, fake, code, code_verifier=other).json()["error"] == (
        "bad_verification_code"
    )
    code = approved_code(fake, client, **extra)
    assert "access_token" in redeem(client, fake, code, code_verifier=verifier).json()
    plain = client.get(
        fake.authorize_url,
        params=authorize_params(fake, code_challenge=challenge, code_challenge_method="plain"),
    )
    assert callback(plain)["error"] == "invalid_request"


def test_redirect_uri_is_checked(client: httpx.Client) -> None:
    fake = FakeGitHub(callback_url="https://app.example.test/oauth")
    fake.add_user("mona")
    web = httpx.Client(transport=fake.transport)
    fake.approve_as("mona")
    below = web.get(fake.authorize_url, params=authorize_params(fake))  # /oauth/callback
    code = callback(below)["code"]
    assert (
        redeem(web, fake, code, redirect_uri="https://app.example.test/other").json()["error"]
        == "redirect_uri_mismatch"
    )
    elsewhere = web.get(
        fake.authorize_url,
        params=authorize_params(fake, redirect_uri="https://evil.example.test/oauth"),
    )
    assert elsewhere.headers["location"].startswith("https://app.example.test/oauth?")
    assert callback(elsewhere)["error"] == "redirect_uri_mismatch"
    assert "code" not in callback(elsewhere)


def test_codes_expire_after_ten_minutes() -> None:
    now = [1_000_000.0]
    fake = FakeGitHub(clock=lambda: now[0])
    fake.add_user("mona")
    client = httpx.Client(transport=fake.transport)
    code = approved_code(fake, client)
    now[0] += 601
    assert redeem(client, fake, code).json()["error"] == "bad_verification_code"


def test_deny_unknown_client_and_unknown_user(fake: FakeGitHub, client: httpx.Client) -> None:
    denied = client.post(fake.authorize_url, data={**authorize_params(fake), "decision": "deny"})
    assert callback(denied)["error"] == "access_denied"
    assert callback(denied)["state"] == "st-1"
    unknown_client = client.get(fake.authorize_url, params=authorize_params(fake, client_id="x"))
    assert unknown_client.status_code == 404
    assert "location" not in unknown_client.headers
    nobody = client.post(fake.authorize_url, data={**authorize_params(fake), "user": "nobody"})
    assert nobody.status_code == 200
    assert "Incorrect username or password." in nobody.text
    with pytest.raises(KeyError):
        fake.approve_as("nobody")


def test_approve_as_redirects_at_once_and_records_show_no_token_call(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    fake.approve_as("mona", state="forged")
    back = callback(client.get(fake.authorize_url, params=authorize_params(fake)))
    assert back["state"] == "forged"
    assert [r.path for r in fake.requests] == ["/login/oauth/authorize"]
    assert not any(r.path == "/login/oauth/access_token" for r in fake.requests)
    redeem(client, fake, back["code"])
    token_call = fake.requests[-1]
    assert token_call.form["client_secret"] == "<redacted>"
    assert token_call.form["code"] == "<redacted>"


def test_emails_need_the_email_scope_and_email_may_be_null(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    code = approved_code(fake, client, scope="read:user")
    token = redeem(client, fake, code).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{fake.api_base}/user/emails", headers=auth).status_code == 404
    assert client.get(f"{fake.api_base}/user", headers=auth).json()["email"] is None


def test_failure_injection_reaches_the_token_endpoint(
    fake: FakeGitHub, client: httpx.Client
) -> None:
    code = approved_code(fake, client)
    fake.server_error_next()
    assert redeem(client, fake, code).status_code == 503
    assert "access_token" in redeem(client, fake, code).json()  # the failure did not use it


def test_no_cors_headers_and_escaping(fake: FakeGitHub, client: httpx.Client) -> None:
    hostile = '"><script>alert(1)</script>'
    page = client.get(
        fake.authorize_url, params=authorize_params(fake, state=hostile, login=hostile)
    )
    assert hostile not in page.text
    assert "&quot;&gt;&lt;script&gt;" in page.text
    origin = {"Origin": "https://evil.example.test", "Accept": "application/json"}
    answer = client.post(fake.access_token_url, data={"code": "x"}, headers=origin)
    assert no_cors(answer)
    assert no_cors(page)


async def test_served_flow_with_concurrent_redemptions(fake: FakeGitHub) -> None:
    with fake.serve() as served:
        assert served.web_base == served.api_base  # one origin on 127.0.0.1
        async with httpx.AsyncClient(headers={"User-Agent": "tests"}) as client:
            fake.approve_as("mona")
            start = await client.get(served.authorize_url, params=authorize_params(fake))
            code = callback(start)["code"]
            fake.slow_next(0.2, count=2)
            data = {"client_id": fake.client_id, "client_secret": fake.client_secret, "code": code}
            accept = {"Accept": "application/json"}
            answers = await asyncio.gather(
                *(client.post(served.access_token_url, data=data, headers=accept) for _ in "ab")
            )
            preflight = await client.request("OPTIONS", served.access_token_url)
    outcomes = sorted("access_token" in a.json() for a in answers)
    assert outcomes == [False, True]
    assert all(no_cors(a) for a in (*answers, preflight))
    assert {r.via for r in fake.requests} == {"http"}
