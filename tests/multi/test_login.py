"""A login crosses instances: it starts on one, finishes on another, its code is redeemed on a
third, and every single-use step is single-use across all of them.

Each hop of a login goes to the instance the test names (the client carries the cookies
from one to the next, as a browser behind a load balancer does); the upstream provider is
the test kit's FakeIssuer on a loopback port, logged in at through its form.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from authbridge.testing import ServedFakeIssuer

from .flows import (
    LOCAL_PASSWORD,
    LOCAL_USER,
    SWAGGER,
    UPSTREAM_USER,
    Authorization,
    Forms,
    approve_upstream,
    bearer,
    jwt_claims,
    location,
    query_of,
    refresh_grant,
)
from .harness import Browser, Cluster, sql
from .support import pending_logins

NAMES = ("A", "B", "C")


def _chooser_link(browser: Browser, auth: Authorization, *, on: str) -> str:
    page = browser.get(auth.path, on=on)
    assert page.status_code == 200, page.text[:300]
    links = [link for link in Forms(page.text).links if "idp=fake" in link]
    assert len(links) == 1, links
    return links[0]


def _upstream_account(cluster: Cluster, fake_issuer: str) -> str:
    rows = sql(
        cluster.store_url,
        "SELECT user_id FROM authbridge_identities WHERE issuer = $1 AND subject = $2",
        fake_issuer,
        UPSTREAM_USER,
    )
    assert len(rows) == 1, rows
    return str(rows[0]["user_id"])


def test_a_provider_login_started_on_a_completes_on_b_and_its_code_is_redeemed_on_c(
    cluster: Cluster, browser: Browser, fake_issuer: ServedFakeIssuer
) -> None:
    auth = Authorization.new()
    link = _chooser_link(browser, auth, on="A")
    before = pending_logins(cluster)
    to_upstream = location(browser.get(link, on="A"))  # the transaction is stored by A
    assert to_upstream.startswith(fake_issuer.authorization_endpoint + "?")
    # ... where the configuration says: Redis (PostgreSQL + Redis) or the SQL TTL table.
    stored = (0, 1) if cluster.config.get("redis") else (1, 0)
    assert tuple(n - b for n, b in zip(pending_logins(cluster), before, strict=True)) == stored
    back = approve_upstream(browser, to_upstream)
    assert back.startswith(f"{cluster.origin}/oauth/callback?")
    code = auth.code_from(location(browser.get(back, on="B")))  # ... and finished by B
    assert pending_logins(cluster) == before

    answer = auth.redeem(browser, code, on="C")
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    claims = jwt_claims(tokens["access_token"])
    account = _upstream_account(cluster, fake_issuer.issuer)
    assert (claims["iss"], claims["sub"], claims["client_id"], claims["scope"]) == (
        cluster.origin,
        account,
        "spa",
        "items:read",
    )
    for name in NAMES:
        seen = browser.whoami(tokens["access_token"], on=name)
        assert seen.status_code == 200, seen.text
        assert (seen.json()["instance"], seen.json()["subject"]) == (name, account)

    # The callback is single-use on every instance, and so is the code.
    replayed_callback = browser.get(back, on="C")
    assert replayed_callback.status_code == 400
    assert "<code>state_unknown</code>" in replayed_callback.text
    replayed = auth.redeem(browser, code, on="A")
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")
    # The replay revoked what the first redemption got, whichever instance is asked.
    refused = refresh_grant(browser, tokens["refresh_token"], on="B", client_id="spa")
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    for name in NAMES:
        active = browser.get("/active", on=name, headers=bearer(tokens["access_token"]))
        assert active.status_code == 401, (name, active.text)


def test_the_password_form_served_by_a_is_accepted_by_b(cluster: Cluster, browser: Browser) -> None:
    auth = Authorization.new(scope="items:read items:write")
    page = browser.get(auth.path, on="A")
    action, fields = next(
        (action, fields) for action, fields in Forms(page.text).forms if "password" in fields
    )
    assert action == "/oauth/authorize"
    fields.update(username=LOCAL_USER, password=LOCAL_PASSWORD)
    code = auth.code_from(location(browser.post(action, on="B", data=fields)))
    answer = auth.redeem(browser, code, on="C")
    assert answer.status_code == 200, answer.text
    claims = jwt_claims(answer.json()["access_token"])
    assert (claims["sub"], claims["scope"]) == (f"user-{LOCAL_USER}", "items:read items:write")


def test_a_password_form_without_the_browser_cookie_is_refused_on_another_instance(
    cluster: Cluster, browser: Browser
) -> None:
    auth = Authorization.new()
    page = browser.get(auth.path, on="A")
    fields = next(fields for _, fields in Forms(page.text).forms if "password" in fields)
    fields.update(username=LOCAL_USER, password=LOCAL_PASSWORD)
    with Browser(cluster, NAMES) as other:  # the form's CSRF token, but not its cookie
        refused = other.post("/oauth/authorize", on="B", data=fields)
    assert refused.status_code == 400
    assert "<code>csrf_mismatch</code>" in refused.text
    assert "location" not in refused.headers


def test_swagger_ui_logs_in_through_the_app_across_instances(
    cluster: Cluster, browser: Browser
) -> None:
    redirect = f"{cluster.origin}/docs/oauth2-redirect"
    auth = Authorization.new(SWAGGER, redirect)
    docs = browser.get("/docs", on="A")
    assert docs.status_code == 200
    assert '"clientId":"swagger-ui"' in docs.text
    link = _chooser_link(browser, auth, on="B")
    to_upstream = location(browser.get(link, on="C"))
    back = approve_upstream(browser, to_upstream)
    landing = location(browser.get(back, on="A"))
    code = auth.code_from(landing)
    assert query_of(landing)["iss"] == cluster.origin
    page = browser.get(landing, on="B")  # the page whose script posts the code
    assert page.status_code == 200
    assert "oauth2-redirect.js" in page.text

    answer = auth.redeem(browser, code, on="C")
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert jwt_claims(tokens["access_token"])["client_id"] == SWAGGER
    assert browser.whoami(tokens["access_token"], on="A").status_code == 200
    renewed = refresh_grant(browser, tokens["refresh_token"], on="B", client_id=SWAGGER)
    assert renewed.status_code == 200, renewed.text
    assert browser.whoami(renewed.json()["access_token"], on="C").status_code == 200


def test_a_session_login_started_on_a_is_a_session_on_b_and_c_until_a_logs_out(
    cluster: Cluster, browser: Browser, fake_issuer: ServedFakeIssuer
) -> None:
    start = "/auth/login/fake?" + urlencode({"next": "/whoami"})
    to_upstream = location(browser.get(start, on="A"))
    back = approve_upstream(browser, to_upstream)
    assert location(browser.get(back, on="B")) == "/whoami"
    account = _upstream_account(cluster, fake_issuer.issuer)
    session = browser.get("/auth/session", on="C")
    assert session.status_code == 200, session.text
    assert [i["subject"] for i in session.json()["identities"]] == [UPSTREAM_USER]
    for name in NAMES:
        seen = browser.get("/whoami", on=name)  # the session cookie alone
        assert seen.status_code == 200, seen.text
        assert seen.json()["subject"] == account

    # Logging out on A ends it everywhere; A reads the ID token B kept (encrypted) for the
    # provider's logout.
    cookie = browser.http.cookies["authbridge_session"]
    out = browser.post("/auth/logout", on="A", data={"csrf_token": session.json()["csrf_token"]})
    to_upstream = location(out)
    assert to_upstream.startswith(fake_issuer.end_session_endpoint + "?")
    assert jwt_claims(query_of(to_upstream)["id_token_hint"])["sub"] == UPSTREAM_USER
    with Browser(cluster, NAMES) as kept:  # the old cookie, kept by someone after logout
        kept.http.cookies.set("authbridge_session", cookie)
        for name in NAMES:
            ended = kept.get("/whoami", on=name)
            assert ended.status_code == 401, (name, ended.text)


@pytest.mark.parametrize("finish_on", ["B", "C"])
def test_a_callback_in_another_browser_is_refused_and_issues_nothing(
    cluster: Cluster, browser: Browser, finish_on: str
) -> None:
    auth = Authorization.new()
    params = {**auth.params, "idp": "fake"}
    to_upstream = location(browser.get("/oauth/authorize?" + urlencode(params), on="A"))
    back = approve_upstream(browser, to_upstream)
    with Browser(cluster, NAMES) as thief:
        stolen = thief.get(back, on=finish_on)
    assert stolen.status_code == 400
    assert "<code>browser_mismatch</code>" in stolen.text
    assert "location" not in stolen.headers
    # Single use whatever the outcome: the login must start again, on any instance.
    after = browser.get(back, on="A" if finish_on == "B" else "B")
    assert after.status_code == 400
    assert "<code>state_unknown</code>" in after.text
